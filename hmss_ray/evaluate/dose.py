"""The dose check inside an evaluation: per patient, the CT plan recomputed on the sCT.

Structures come from the case folder: ``target.<suffix>`` (and ``oar_<name>.<suffix>``) masks, an
RTSTRUCT ``rtstruct.dcm`` with an ROI named ``target`` (and ``oar_<name>``), or, for phantoms,
the ``labels`` volume (:mod:`hmss_ray.dose.phantom`). Figures: a DVH figure and a dose-difference
panel per patient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hmss_ray.config import UserError
from hmss_ray.data import synthrad
from hmss_ray.dose import Modality, Structures, check_case
from hmss_ray.dose.figures import difference_figure, dvh_figure
from hmss_ray.io import Volume
from hmss_ray.io.formats import find_volume


@dataclass(frozen=True)
class DoseJob:
    """Which modalities to plan, on what dose grid, and where the figures go."""

    modalities: tuple[Modality, ...]
    out: Path
    grid_mm: float = 4.0
    figures: list[tuple[str, str]] = field(default_factory=list)  # (file, caption), filled in


def case_structures(ref: synthrad.CaseRef, case: synthrad.Case) -> Structures:
    """The case's target and organs at risk, from its folder (see the module docstring)."""
    from hmss_ray.dose.phantom import phantom_structures
    from hmss_ray.dose.structures import read_mask, rtstruct_masks

    ct = Volume(np.asarray(case.ct), case.affine)
    body = np.asarray(case.mask) > 0
    target_file = find_volume(ref.path, "target")
    if target_file is not None:
        oars = {p.name.split(".")[0][4:]: p for p in sorted(ref.path.glob("oar_*"))}
        organs = {n: read_mask(p, ct, f"oar {n}") for n, p in oars.items()}
        return Structures(body, read_mask(target_file, ct, "target") & body, organs)
    if (ref.path / "rtstruct.dcm").is_file():
        found = rtstruct_masks(ref.path / "rtstruct.dcm", ct)
        if "target" not in found:
            raise UserError(f"{ref.id}: rtstruct.dcm has no ROI named 'target'")
        organs = {n[4:]: m for n, m in found.items() if n.startswith("oar_")}
        return Structures(body, found["target"] & body, organs)
    labels = ref.file("labels")
    if labels is None:
        raise UserError("no target: put target.nii.gz (or rtstruct.dcm) in the case folder")
    from hmss_ray.io import read_volume
    from hmss_ray.io.align import align_to

    aligned = align_to(read_volume(labels), case.affine, np.shape(case.ct), 0.5)
    spacing = ct.spacing
    return phantom_structures(aligned.array, body, case.id.region, spacing)


def dose_row(
    ref: synthrad.CaseRef, case: synthrad.Case, sct: np.ndarray, job: DoseJob
) -> tuple[dict[str, float], list[tuple[str, str]]]:
    """The patient's dose columns (``<modality>_<metric>``) and its figures (name, caption)."""
    structures = case_structures(ref, case)
    check = check_case(
        np.asarray(case.ct), sct, structures, case.affine, job.modalities, job.grid_mm
    )
    from hmss_ray.evaluate.figures import save

    written = []
    for kind, draw in (("dvh", dvh_figure), ("dose_diff", difference_figure)):
        name = f"{kind}_{case.id}.png"
        save(draw(check, f"{case.id}: {kind.replace('_', ' ')}"), job.out / name)
        caption = "DVH (CT solid, sCT dashed)" if kind == "dvh" else "dose difference sCT − CT"
        written.append((name, f"{case.id}: {caption}"))
    return check.flat(), written


def try_dose(
    ref: synthrad.CaseRef, case: synthrad.Case, sct: np.ndarray, job: DoseJob
) -> dict[str, float]:
    """:func:`dose_row`, its figures added to ``job.figures``; a case without structures (or
    whose plan fails) keeps its image metrics, with a line saying why it has no dose."""
    try:
        row, written = dose_row(ref, case, sct, job)
    except (UserError, ValueError) as exc:
        print(f"[hmss] {case.id}: no dose check: {exc}", flush=True)
        return {}
    job.figures.extend(written)
    print(f"[hmss] {case.id} dose: {dose_line(row, job.modalities)}", flush=True)
    return row


def dose_line(row: dict[str, float], modalities: Sequence[Modality]) -> str:
    """The progress line's dose part."""
    return "; ".join(
        f"{m} γ2/2 {row[f'{m}_gamma_2_2_pct']:.1f} % ΔD98 {row[f'{m}_ptv_d98_diff_pct']:+.2f} %"
        for m in modalities
    )
