"""The dose section of a study's QA report, where a CT and a target are given.

``hmss-ray predict --ct`` gives the QA report a CT beside the sCT; with a target too, the report
adds a dose page: the DVHs (CT solid, sCT dashed), the dose difference on the target's central
axial slice, and per modality the gamma pass rates and the target's ΔD98. The QA code calls
:func:`dose_panel` and writes what it returns::

    from hmss_ray.dose.panel import dose_panel

    panel = dose_panel(ct, sct, target, title=study.name)  # Volumes; target: path or array
    paths = panel.save(folder)          # dose.png, dose.json in the study's folder
    qa_json["dose"] = panel.to_dict()   # the numbers, beside the flags
    pngs.append(paths[0])               # a page of qa_report.pdf

Without the dose extra :func:`dose_panel` raises :class:`~hmss_ray.config.UserError` with the
install line: the QA report goes on without its dose page and says why.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from hmss_ray.config import UserError
from hmss_ray.dose.check import DoseCheck, check_case
from hmss_ray.dose.engine import Modality, Structures, require_engine
from hmss_ray.dose.grid import DEFAULT_SPACING_MM
from hmss_ray.io import Volume

# what the QA report shows per modality: (row key, label, format)
HEADLINE = (
    ("gamma_2_2_pct", "γ 2%/2mm", "{:.1f} %"),
    ("gamma_3_2_pct", "γ 3%/2mm", "{:.1f} %"),
    ("ptv_d98_diff_pct", "ΔD98", "{:+.2f} %"),
    ("range_shift_mm", "range shift", "{:.1f} mm"),
)
DPI = 100


@dataclass
class DosePanel:
    """A study's dose check: the rows per modality, the figure and a one-line summary."""

    check: DoseCheck
    figure: Figure
    summary: str

    @property
    def rows(self) -> dict[str, dict[str, float]]:
        """Per modality (``"photon"``, ``"proton"``): every difference (metrics.compare)."""
        return {str(m): dict(row) for m, row in self.check.rows.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the rows, the summary line and the dose grid (mm)."""
        clean = {m: {k: (None if not np.isfinite(v) else float(v)) for k, v in row.items()}
                 for m, row in self.rows.items()}  # fmt: skip
        return {"summary": self.summary, "grid_mm": list(self.check.grid.spacing), **clean}

    def save(self, folder: str | Path) -> list[Path]:
        """``dose.png`` (the figure) and ``dose.json`` (:meth:`to_dict`) in ``folder``."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        png, data = out / "dose.png", out / "dose.json"
        self.figure.savefig(png, dpi=DPI, format="png")
        data.write_text(json.dumps(self.to_dict(), indent=2))
        return [png, data]


def summary_lines(check: DoseCheck) -> list[str]:
    """Per modality: ``photon: γ 2%/2mm 99.8 %, ... ΔD98 -0.41 %`` (what a physicist reads
    first)."""
    lines = []
    for modality, row in check.rows.items():
        # rounded first, and + 0.0: a difference of -1e-9 reads "+0.00", not "-0.00"
        shown = [f"{label} {spec.format(round(row[key], 2) + 0.0)}" for key, label, spec in HEADLINE
                 if key in row and np.isfinite(row[key])]  # fmt: skip
        lines.append(f"{modality}: " + ", ".join(shown))
    return lines


def dose_panel(
    ct: Volume,
    sct: Volume,
    target: str | Path | np.ndarray,
    oars: Mapping[str, str | Path | np.ndarray] | None = None,
    body: np.ndarray | None = None,
    modalities: Sequence[Modality] = (Modality.PHOTON, Modality.PROTON),
    grid_mm: float = DEFAULT_SPACING_MM,
    title: str = "",
) -> DosePanel:
    """Plan on ``ct``, recompute on ``sct`` (on the CT's grid up to axis order), and draw.

    Args:
        ct: the planning CT (HU).
        sct: the synthetic CT on the same voxels (any storage order of them).
        target: the target: a mask file (any supported format, on the CT's voxels) or a
            boolean array on the CT's grid.
        oars: organs at risk by name, the same way.
        body: the body mask on the CT's grid (default: the CT's largest region > -300 HU).
        modalities: photon, proton or both.
        grid_mm: the dose grid's voxel size.
        title: the figure's title (the study's name).
    """
    from hmss_ray.dose.figures import panel_figure
    from hmss_ray.dose.structures import body_from_ct, read_mask
    from hmss_ray.io.align import align_to

    require_engine()
    on_ct = align_to(sct, ct.affine, ct.shape, tolerance_mm=0.5).array

    def mask(value: str | Path | np.ndarray, name: str) -> np.ndarray:
        if isinstance(value, (str, Path)):
            return read_mask(value, ct, name)
        if np.shape(value) != ct.shape:
            raise UserError(f"{name} is {np.shape(value)}, the CT {ct.shape}")
        return np.asarray(value) > 0

    inside = body_from_ct(ct.array) if body is None else mask(body, "body")
    structures = Structures(
        body=inside,
        target=mask(target, "target") & inside,
        oars={n: mask(m, f"organ {n}") for n, m in (oars or {}).items()},
    )
    check = check_case(ct.array, on_ct, structures, ct.affine, modalities, grid_mm)
    lines = summary_lines(check)
    heading = f"{title}: dose check" if title else "dose check"
    figure = panel_figure(check, "\n".join([f"{heading} (research check, not clinical)", *lines]))
    return DosePanel(check, figure, "; ".join(lines))
