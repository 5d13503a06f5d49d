"""What batch prediction writes for one study: the sCT and its spread in the output format, the
QA values, figure and page, and, when a CT is given, the CT and the difference beside them.

The spread follows the sCT's format: ``spread.nii.gz``, ``spread.mha`` or ``spread.nrrd``; with a
DICOM sCT series, ``spread.dcm``, a Parametric Map on the series' grid that references it and
the MR (:mod:`hmss_ray.io.dicom_spread`), and ``spread.nii.gz`` for tools that read no
Parametric Map. A CT (``--ct``) is read, put on the MR's grid
(exactly when it differs only in storage order, else trilinear; :func:`~hmss_ray.io.align.
onto_grid`) and compared with the sCT inside the body where the CT covers it. With a target
too and ``--dose``, a plan optimised on that CT is recomputed on the sCT
(:func:`hmss_ray.dose.panel.dose_panel`): ``dose.png`` (a page of the batch's PDF) and
``dose.json``, and its numbers in ``qa.json``'s ``dose``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hmss_ray.config import IOConfig, UserError
from hmss_ray.io import Format, Volume, read_volume, write_volume
from hmss_ray.io.dicom_write import SeriesInfo
from hmss_ray.qa import figure, flags, web

SCT_NAME = {Format.NIFTI: "sct.nii.gz", Format.MHA: "sct.mha", Format.NRRD: "sct.nrrd"}
SPREAD_NAME = {
    Format.NIFTI: "spread.nii.gz",
    Format.MHA: "spread.mha",
    Format.NRRD: "spread.nrrd",
    Format.DICOM: "spread.dcm",
}


def read_ct(path: Path | None, mr: Volume, limits: IOConfig) -> np.ndarray | None:
    """The CT at ``path`` on the MR's grid (float32 HU, NaN outside the CT's field of view)."""
    if path is None:
        return None
    from hmss_ray.io.align import onto_grid

    try:
        ct = read_volume(path, limits)
        return np.asarray(onto_grid(ct, mr.affine, mr.shape).array, dtype=np.float32)
    except UserError as exc:
        raise UserError(f"the CT {path.name}: {exc}") from None


def write_volumes(
    sct: Volume, spread: Volume | None, mr: Volume, folder: Path, fmt: Format, info: SeriesInfo
) -> list[str]:
    """The sCT and its spread (when there is one) into ``folder``; their names."""
    name = "sct" if fmt is Format.DICOM else SCT_NAME[fmt]
    write_volume(sct, folder / name, series=info)
    if spread is None:
        return [name]
    if fmt is Format.DICOM:
        from hmss_ray.io.dicom_spread import series_source, write_spread_map

        source = mr.meta.get("dicom")
        write_spread_map(spread, folder / SPREAD_NAME[fmt], series_source(folder / name), source,
                         info.uid_root)  # fmt: skip
        # and as NIfTI: GDCM (ITK, SimpleITK) and many planning systems read no Parametric Map
        write_volume(spread, folder / SPREAD_NAME[Format.NIFTI])
        return [name, SPREAD_NAME[fmt], SPREAD_NAME[Format.NIFTI]]
    write_volume(spread, folder / SPREAD_NAME[fmt])
    return [name, SPREAD_NAME[fmt]]


def write_qa(
    folder: Path,
    title: str,
    arrays: dict[str, Any],
    mr: Volume,
    hu_range: tuple[float, float],
    caption: str,
    series: str,
    pictures: bool = True,
) -> tuple[dict[str, Any], list[str]]:
    """``qa.json`` (always), and with ``pictures`` ``qa.png`` and the page; (the QA dict, the
    names written). ``arrays``: ``sct``, ``body``, ``spread`` and ``ct`` (None when absent), on
    the MR's grid."""
    sct, body, spread, ct = (arrays.get(k) for k in ("sct", "body", "spread", "ct"))
    ras = {k: None if v is None else figure.canonical(v, mr.affine) for k, v in arrays.items()}
    qa = flags.check(ras["sct"], ras["body"], hu_range, ras.get("spread"), ct=ras.get("ct"))
    (folder / "qa.json").write_text(json.dumps({"series": series, **qa.to_dict()}, indent=2))
    if not pictures:
        return qa.to_dict(), ["qa.json"]
    images = figure.StudyImages(title, mr.affine, mr.array, sct, body, spread, ct, qa, caption)
    figure.write_png(images, folder / "qa.png")
    page = web.StudyPage(title, mr.affine, mr.array, sct, spread, ct, qa.to_dict(), caption)
    web.write_study_page(folder, page)
    return qa.to_dict(), ["qa.json", "qa.png", "qa.html", "qa-data.js"]


def write_dose(
    folder: Path,
    title: str,
    ct: np.ndarray,
    sct: Volume,
    target: Path,
    modalities: tuple[str, ...],
    limits: IOConfig | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The dose check of one study, both CTs on the MR's grid, added to its ``qa.json``: (its
    numbers, the names written).

    ``ct``: float32 HU, NaN outside the CT's field of view (air there). ``target``: a mask file
    or DICOM folder on any grid of the same frame of reference, put on the MR's grid, read
    within ``limits`` (the model's ``io`` section, as the MR and the CT). A check
    that cannot run (no target voxel, no dose extra) is the study's ``{"error": ...}``, not a
    failed study: its sCT and QA stand.
    """
    from hmss_ray.dose import parse_modalities
    from hmss_ray.dose.panel import dose_panel
    from hmss_ray.io.align import onto_grid

    try:
        mask = onto_grid(read_volume(target, limits), sct.affine, sct.shape).array
        inside = np.nan_to_num(np.asarray(mask, np.float32), nan=0.0) > 0.5
        if not inside.any():
            raise UserError(f"the target {target.name} has no voxel inside the MR's field of view")
        planning = Volume(np.where(np.isfinite(ct), ct, -1000.0).astype(np.float32), sct.affine)
        panel = dose_panel(planning, sct, inside, modalities=parse_modalities(modalities),
                           title=title)  # fmt: skip
        result, names = panel.to_dict(), [path.name for path in panel.save(folder)]
    except UserError as exc:
        result, names = {"error": f"dose check: {exc}"}, []
    record = folder / "qa.json"  # written by write_qa: the dose joins the flags there
    record.write_text(json.dumps({**json.loads(record.read_text()), "dose": result}, indent=2))
    return result, names
