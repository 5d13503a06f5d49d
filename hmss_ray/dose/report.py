"""Tables of a dose check: one case for the command line, per patient and per centre for the
evaluation report."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hmss_ray.cli import markdown_table
from hmss_ray.dose.check import DoseCheck

# (metric, header, format): what a physicist reads first; the organs follow
METRICS = (
    ("ptv_d98_diff_pct", "PTV ΔD98 (%)", "{:+.2f}"),
    ("ptv_d50_diff_pct", "PTV ΔD50 (%)", "{:+.2f}"),
    ("ptv_d2_diff_pct", "PTV ΔD2 (%)", "{:+.2f}"),
    ("mean_abs_diff_pct", "mean |ΔD| > 10 % (%)", "{:.2f}"),
    ("gamma_2_2_pct", "γ 2%/2mm (%)", "{:.1f}"),
    ("gamma_3_2_pct", "γ 3%/2mm (%)", "{:.1f}"),
    ("range_shift_mm", "range shift (mm)", "{:.2f}"),
)
DEFINITIONS = """\
Dose: a plan optimised on the CT (photons: 5 coplanar beams; protons: 3 pencil-beam scanning
fields, left, right and anterior; pyRadPlan; gantry angles in patient coordinates, IEC 61217),
recomputed unchanged on the sCT, on a 4 mm dose grid. Δ = sCT − CT in % of the
prescription (the CT plan's target median); mean |ΔD| over body voxels above 10 % of the
prescription; global gamma (pymedphys) with a 10 % low-dose cutoff; range shift: median over the
target of the water-equivalent path length change, mean |·| over the proton fields. A research
check, not a commissioned clinical dose calculation (docs/dose.md)."""


def _fmt(value: float, spec: str) -> str:
    return "–" if value is None or not np.isfinite(value) else spec.format(value)


def summary_table(check: DoseCheck) -> str:
    """One row per modality, then each organ's ΔDmean / ΔDmax."""
    rows = []
    for modality, row in check.rows.items():
        rows.append([str(modality), *[_fmt(row.get(k, np.nan), f) for k, _, f in METRICS],
                     f"{row['seconds']:.0f}"])  # fmt: skip
    lines = [markdown_table(["", *[h for _, h, _ in METRICS], "s"], rows)]
    organs = sorted({k[: -len("_dmean_diff_pct")] for r in check.rows.values() for k in r
                     if k.endswith("_dmean_diff_pct")})  # fmt: skip
    if organs:
        rows = [[f"{m} {o}", _fmt(r.get(f"{o}_dmean_diff_pct", np.nan), "{:+.2f}"),
                 _fmt(r.get(f"{o}_dmax_diff_pct", np.nan), "{:+.2f}")]
                for m, r in check.rows.items() for o in organs]  # fmt: skip
        lines += ["", markdown_table(["organ", "ΔDmean (%)", "ΔDmax (%)"], rows)]
    return "\n".join(lines)


def columns(table: pd.DataFrame) -> list[tuple[str, str, str]]:
    """``(column, header, format)`` of the dose columns ``table`` holds, modality first."""
    out = []
    for modality in ("photon", "proton"):
        for key, header, spec in METRICS:
            if f"{modality}_{key}" in table:
                out.append((f"{modality}_{key}", f"{modality} {header}", spec))
    return out


def dose_tables(per_patient: pd.DataFrame) -> list[str]:
    """Markdown lines: the dose table per centre (mean ± std) and per patient."""
    cols = columns(per_patient)
    if not cols:
        return []
    lines = [
        "",
        "## Dose (CT plan recomputed on the sCT)",
        "",
        DEFINITIONS,
        "",
        "### Per centre",
        "",
    ]
    rows = []
    for group, df in [*per_patient.groupby("group", sort=True), ("all", per_patient)]:
        rows.append([str(group), str(len(df)), *[
            f"{_fmt(df[c].mean(), f)} ± {_fmt(df[c].std(), f)}" for c, _, f in cols]])  # fmt: skip
    lines += markdown_table(["group", "patients", *[h for _, h, _ in cols]], rows).split("\n")
    lines += ["", "### Per patient", ""]
    rows = [[str(p["case_id"]), str(p["group"]), *[_fmt(p[c], f) for c, _, f in cols]]
            for _, p in per_patient.iterrows()]  # fmt: skip
    lines += markdown_table(["case", "centre", *[h for _, h, _ in cols]], rows).split("\n")
    return lines
