"""What a physicist compares between the CT's dose and the sCT's: DVH points, dose differences
and gamma pass rates (pymedphys), all in % of the prescription.

Doses here are fractions of the prescription (the CT plan's target median is 1.0).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hmss_ray.dose.engine import PlanResult, Structures
from hmss_ray.dose.grid import DoseGrid

LOW_DOSE_CUTOFF = 0.10  # gamma and mean |difference| ignore voxels below 10 % (of max / of Rx)
GAMMA_CRITERIA = ((2.0, 2.0), (3.0, 2.0))  # (dose %, distance mm), global
DVH_BINS = np.linspace(0.0, 1.3, 261)  # 0-130 % of the prescription in 0.5 % steps


def dose_at_volume(dose: np.ndarray, mask: np.ndarray, percent: float) -> float:
    """D``percent``: the lowest dose received by the hottest ``percent`` % of the structure."""
    return float(np.percentile(dose[mask], 100.0 - percent)) if mask.any() else float("nan")


def dvh(dose: np.ndarray, mask: np.ndarray, bins: np.ndarray = DVH_BINS) -> np.ndarray:
    """Cumulative DVH: the fraction of the structure receiving at least each of ``bins``."""
    values = np.sort(dose[mask])
    if values.size == 0:
        return np.full(len(bins), np.nan)
    return 1.0 - np.searchsorted(values, bins, side="left") / values.size


def gamma_pass_rate(
    reference: np.ndarray, evaluated: np.ndarray, grid: DoseGrid, dose_pct: float, dta_mm: float
) -> float:
    """Global gamma pass rate (%) with pymedphys: ``dose_pct`` of the reference maximum,
    ``dta_mm`` distance to agreement, reference voxels below 10 % of its maximum left out."""
    import pymedphys

    axes = grid.axes_mm
    gamma = pymedphys.gamma(
        axes, reference, axes, evaluated,
        dose_percent_threshold=dose_pct, distance_mm_threshold=dta_mm,
        lower_percent_dose_cutoff=100 * LOW_DOSE_CUTOFF,
        global_normalisation=float(reference.max()), max_gamma=1.1, quiet=True,
    )  # fmt: skip
    valid = gamma[np.isfinite(gamma)]
    return float(100.0 * np.mean(valid <= 1.0)) if valid.size else float("nan")


def compare(result: PlanResult, structures: Structures, grid: DoseGrid) -> dict[str, float]:
    """One modality's differences, sCT minus CT, in % of the prescription (gamma in %)."""
    ct, sct = result.dose_ct, result.dose_sct
    row: dict[str, float] = {}
    for name in ("d98", "d50", "d2"):
        percent = float(name[1:])
        on_ct = dose_at_volume(ct, structures.target, percent)
        on_sct = dose_at_volume(sct, structures.target, percent)
        row[f"ptv_{name}_ct_pct"] = 100 * on_ct
        row[f"ptv_{name}_diff_pct"] = 100 * (on_sct - on_ct)
    row.update(organ_differences(ct, sct, structures.oars))
    inside = structures.body & (ct >= LOW_DOSE_CUTOFF)
    row["mean_abs_diff_pct"] = float(100 * np.abs(sct - ct)[inside].mean()) if inside.any() else 0.0
    for dose_pct, dta in GAMMA_CRITERIA:
        key = f"gamma_{dose_pct:g}_{dta:g}_pct"
        row[key] = gamma_pass_rate(ct, sct, grid, dose_pct, dta)
    if result.range_shift_mm is not None:
        shifts = np.asarray(result.range_shift_mm, dtype=float)
        row["range_shift_mm"] = float(np.nanmean(np.abs(shifts))) if shifts.size else float("nan")
        for n, shift in enumerate(shifts):
            row[f"range_shift_field{n + 1}_mm"] = float(shift)
    if result.range_shift_abs_mm:
        row["range_shift_abs_mm"] = float(np.nanmean(result.range_shift_abs_mm))
    row["seconds"] = result.seconds
    return row


def organ_differences(
    ct: np.ndarray, sct: np.ndarray, oars: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """``<organ>_dmean_diff_pct`` and ``<organ>_dmax_diff_pct`` for every organ at risk."""
    row = {}
    for name, mask in oars.items():
        if not mask.any():
            continue
        row[f"{name}_dmean_diff_pct"] = float(100 * (sct[mask].mean() - ct[mask].mean()))
        row[f"{name}_dmax_diff_pct"] = float(100 * (sct[mask].max() - ct[mask].max()))
    return row
