"""The dose check end to end with pyRadPlan and pymedphys on small water phantoms (4 mm grid).

Skipped, with the reason, where the optional ``dose`` extra is not installed
(``make test-dose`` installs it and runs these).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "pyRadPlan", reason="the dose extra is not installed (make test-dose)", exc_type=ImportError
)
pytest.importorskip(
    "pymedphys", reason="the dose extra is not installed (make test-dose)", exc_type=ImportError
)

from hmss_ray.dose.__main__ import main
from hmss_ray.dose.engine import Modality, Structures, plan_and_recompute
from hmss_ray.dose.grid import dose_grid
from hmss_ray.dose.metrics import compare
from hmss_ray.dose.structures import sphere
from hmss_ray.io import Volume, write_volume

SPACING = 4.0
SHAPE = (30, 30, 16)
CENTRE = (15, 15, 8)
SLAB = slice(5, 10)  # 5 voxels = 20 mm along axis 0, upstream of the target for gantry 270
SLAB_HU = 200.0
# the engine's HU -> stopping power table (pyRadPlan default_hlut): 0 HU -> 1.000,
# 100 HU -> 1.095, 350 HU -> 1.199; linear between
RSP_200 = 1.095 + (1.199 - 1.095) * (200 - 100) / 250
RANGE_TOLERANCE_MM = 0.5  # ray tracing through a 4 mm grid: the slab's edges are voxel faces


def water_phantom() -> tuple[np.ndarray, Structures]:
    """A water cylinder (radius 48 mm, along axis 2) with a 12 mm spherical target at its centre."""
    x, y = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    body = np.repeat(((x - 15) ** 2 + (y - 15) ** 2 <= 12**2)[:, :, None], SHAPE[2], axis=2)
    target = sphere(SHAPE, (SPACING,) * 3, CENTRE, 12.0)
    organ = sphere(SHAPE, (SPACING,) * 3, (15, 21, 8), 8.0)
    return np.where(body, 0.0, -1000.0), Structures(body, target, {"organ": organ})


def test_water_sct_equal_to_the_ct_gives_full_gamma_and_no_difference(tmp_path: Path) -> None:
    hu, structures = water_phantom()
    affine = np.diag([SPACING, SPACING, SPACING, 1.0])
    organ = structures.oars["organ"]
    files = {"ct": hu, "sct": hu.copy(), "target": structures.target, "organ": organ,
             "body": structures.body}  # fmt: skip
    for name, array in files.items():
        write_volume(Volume(array.astype(np.float32), affine), tmp_path / f"{name}.nii.gz")
    out = tmp_path / "dose.json"
    at = {name: str(tmp_path / f"{name}.nii.gz") for name in files}
    argv = ["--ct", at["ct"], "--sct", at["sct"], "--target", at["target"], "--body", at["body"],
            "--oar", f"organ={at['organ']}", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    rows = json.loads(out.read_text())
    assert set(rows) == {"photon", "proton"}
    for row in rows.values():
        assert row["gamma_2_2_pct"] == 100.0 and row["gamma_3_2_pct"] == 100.0
        for key in ("ptv_d98_diff_pct", "ptv_d50_diff_pct", "ptv_d2_diff_pct", "mean_abs_diff_pct",
                    "organ_dmean_diff_pct", "organ_dmax_diff_pct"):  # fmt: skip
            assert abs(row[key]) < 1e-6, key
        assert 95.0 < row["ptv_d98_ct_pct"] <= 100.0  # the plan covers the target
    assert rows["proton"]["range_shift_mm"] == 0.0


def test_denser_slab_upstream_shortens_the_proton_range_as_its_stopping_power_predicts() -> None:
    hu, structures = water_phantom()
    sct = hu.copy()
    sct[SLAB][structures.body[SLAB]] = SLAB_HU
    grid = dose_grid(SHAPE, (SPACING,) * 3, SPACING)
    result = plan_and_recompute(hu, sct, structures, grid, Modality.PROTON, angles=(270.0,))
    predicted = (SLAB.stop - SLAB.start) * SPACING * (RSP_200 - 1.0)  # 20 mm x 0.137 = 2.7 mm
    assert result.range_shift_mm is not None
    assert abs(result.range_shift_mm[0] - predicted) <= RANGE_TOLERANCE_MM
    assert result.range_shift_abs_mm is not None  # a uniform slab: every voxel shifts alike
    assert abs(result.range_shift_abs_mm[0] - predicted) <= RANGE_TOLERANCE_MM
    # the dose: the distal 80 % fall-off on the central axis moves upstream by about as much
    shift = distal_r80(result.dose_ct) - distal_r80(result.dose_sct)
    assert abs(shift - predicted) <= SPACING / 2, (shift, predicted)
    row = compare(result, structures, grid)
    assert row["ptv_d98_diff_pct"] < -1.0 and row["gamma_2_2_pct"] < 99.0


def distal_r80(dose: np.ndarray) -> float:
    """Depth (mm along axis 0) where the central-axis dose falls to 80 % past the target."""
    profile = dose[:, CENTRE[1], CENTRE[2]]
    last = int(np.flatnonzero(profile >= 0.8)[-1])
    a, b = profile[last], profile[last + 1]
    return (last + (a - 0.8) / (a - b)) * SPACING
