"""``report.md`` of an evaluation: context, per-centre and per-patient tables, the notebooks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from hmss_ray.cli import markdown_table
from hmss_ray.dose.report import dose_tables

PATIENT_METRICS = (
    "mae", "psnr", "ssim", "ms_ssim", "dice", "hd95", "bone_dice", "slice_mse", "slice_ssim", "vgg"
)  # fmt: skip
# (column, header, format); the VGG header is filled in with the extractor's label. A release's
# columns are shown only when the report holds cases of it (ssim: 2023; ms_ssim, dice, hd95: 2025)
_TABLE = (
    ("mae", "MAE (HU)", "{:.1f}"),
    ("psnr", "PSNR (dB)", "{:.2f}"),
    ("ssim", "SSIM", "{:.4f}"),
    ("ms_ssim", "MS-SSIM", "{:.4f}"),
    ("dice", "Dice", "{:.3f}"),
    ("hd95", "HD95 (mm)", "{:.2f}"),
    ("bone_dice", "bone Dice", "{:.3f}"),
    ("slice_mse", "slice MSE", "{:.6f}"),
    ("slice_ssim", "slice SSIM", "{:.4f}"),
    ("vgg", "{vgg}", "{:.4f}"),
)
DEFINITIONS = """\
MAE, PSNR, SSIM: SynthRAD2023 definitions, per patient, 3D, in HU inside the body mask (PSNR and
SSIM on [-1024, 3000] HU, data range 4024)."""
COMMON_DEFINITIONS = """\
Bone Dice: HU >= metrics.bone_threshold_hu inside the mask. Slice metrics, on the slices the shards
hold for each patient: MSE on [-1, 1], mean per-slice SSIM, VGG distance; FID over all of a group's
slices. Definitions: README.md, "Evaluation" and "SynthRAD2025"."""
NOTEBOOK_MK630 = {"mse": 0.013473, "ssim": 0.866290, "fid": 97.26, "vgg": 1.324}
PROTOCOL_NOTE = """\
The two rows are not measured the same way. The notebooks' numbers come from a validation set split
from training at the slice level (slices of the same patients on both sides: leaky), scored in 2D
per slice with CT clipped to [-1000, 1000] HU, and with random flips and rotations still applied at
evaluation time. Ours come from held-out patients (split by patient before any training), the slices
the shards hold for them (cropped around the body, background set to -1 outside the mask), CT mapped
from data.hu_range (a wider HU range divides the same error's MSE by the square of the range ratio),
no augmentation; the SynthRAD2023 columns above are 3D, in HU, inside the body mask. FID and VGG
distance depend on the feature extractor: values from random features compare only with runs that
used the same random features, never with the notebooks."""


def _fmt(value: float, spec: str) -> str:
    # NaN (a std of one patient, FID of one slice) is shown as a dash; inf (identical) as inf
    return "–" if value is None or np.isnan(value) else spec.format(value)


def _md(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return markdown_table(header, rows).split("\n")


def present(per_patient: pd.DataFrame) -> list[str]:
    """The :data:`PATIENT_METRICS` the per-patient table holds (a release's own columns)."""
    return [c for c in PATIENT_METRICS if c in per_patient]


def markdown_report(
    context: Mapping[str, str],
    per_patient: pd.DataFrame,
    summary: pd.DataFrame,
    skipped: Sequence[tuple[str, str]],
    figures: Sequence[tuple[str, str]],
    vgg_label: str,
    fid_label: str,
    definitions: str = DEFINITIONS,
) -> str:
    """``report.md``: context, per-centre and per-patient tables, notebook comparison, figures.

    ``definitions`` describes the challenge metrics of the releases present; the tables show the
    columns of those releases only.
    """
    table = [(c, h.format(vgg=vgg_label), f) for c, h, f in _TABLE if c in per_patient]
    headers = [h for _, h, _ in table]
    lines = ["# hmss-ray evaluation", ""]
    lines += [f"- **{key}**: {value}" for key, value in context.items()]
    lines += [f"- **feature extractors**: {vgg_label}; {fid_label}", ""]
    lines += [definitions, COMMON_DEFINITIONS, ""]
    lines += ["## Per centre (mean ± std over patients)", ""]
    rows = []
    for _, s in summary.iterrows():
        cells = [f"{_fmt(s[f'{c}_mean'], f)} ± {_fmt(s[f'{c}_std'], f)}" for c, _, f in table]
        rows.append([str(s["group"]), str(s["patients"]), *cells, _fmt(s["fid"], "{:.4g}")])
    lines += _md(["group", "patients", *headers, f"{fid_label}, all slices"], rows)
    lines += ["", "## Per patient", ""]
    rows = [
        [str(p["case_id"]), str(p["group"]), *[_fmt(p[c], f) for c, _, f in table],
         str(int(p["slices"]))]
        for _, p in per_patient.iterrows()
    ]  # fmt: skip
    lines += _md(["case", "centre", *headers, "slices"], rows)
    lines += dose_tables(per_patient)  # nothing unless evaluate ran with --dose
    if "ssim" in per_patient:  # the notebooks scored SynthRAD2023 brains: no 2025 counterpart
        lines += _notebooks(summary, fid_label, vgg_label)
    lines += ["", "## Figures", ""]
    lines += [f"![{caption}]({name})\n\n*{caption}*\n" for name, caption in figures]
    lines += ["## Cases left out", ""]
    if skipped:
        lines += _md(["case", "reason"], [[c, r] for c, r in skipped])
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"


def _notebooks(summary: pd.DataFrame, fid_label: str, vgg_label: str) -> list[str]:
    lines = ["", "## Beside the notebooks (MK6.3.0)", ""]
    overall = summary.iloc[-1]  # the last summary row is the overall one
    nb = NOTEBOOK_MK630
    rows = [
        ["notebooks MK6.3.0 (as reported)", f"{nb['mse']:.6f}", f"{nb['ssim']:.6f}",
         f"{nb['fid']:.2f}", f"{nb['vgg']:.3f}"],
        ["this evaluation (all slices pooled)", _fmt(overall["slice_mse_pooled"], "{:.6f}"),
         _fmt(overall["slice_ssim_pooled"], "{:.6f}"), _fmt(overall["fid"], "{:.4g}"),
         _fmt(overall["vgg_pooled"], "{:.4g}")],
    ]  # fmt: skip
    lines += _md(["", "MSE ([-1, 1])", "SSIM (per slice)", fid_label, vgg_label], rows)
    return [*lines, "", PROTOCOL_NOTE]
