"""The QA report's dose page (hmss_ray.dose.panel): a CT, an sCT stored in another axis order,
a target mask file -> dose.png and dose.json with the gamma pass rates and ΔD98.

Skipped, with the reason, where the optional ``dose`` extra is not installed (``make test-dose``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip(
    "pyRadPlan", reason="the dose extra is not installed (make test-dose)", exc_type=ImportError
)
pytest.importorskip(
    "pymedphys", reason="the dose extra is not installed (make test-dose)", exc_type=ImportError
)

from hmss_ray.config import UserError
from hmss_ray.dose import Modality
from hmss_ray.dose.panel import dose_panel
from hmss_ray.dose.structures import sphere
from hmss_ray.io import Volume, write_volume

SPACING = 4.0
SHAPE = (24, 24, 10)
LPS = np.diag([-SPACING, -SPACING, SPACING, 1.0])
RAS = np.diag([SPACING, SPACING, SPACING, 1.0])


def ct_and_target() -> tuple[Volume, np.ndarray]:
    x, y = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    body = np.repeat(((x - 12) ** 2 + (y - 12) ** 2 <= 10**2)[:, :, None], SHAPE[2], axis=2)
    hu = np.where(body, 20.0, -1000.0).astype(np.float32)
    hu[13:17, 3:6, :] = 900.0  # bone, anterior left
    return Volume(hu, LPS), sphere(SHAPE, (SPACING,) * 3, (12, 12, 5), 10.0)


def test_dose_page_of_an_sct_equal_to_the_ct_in_another_axis_order(tmp_path: Path) -> None:
    ct, target = ct_and_target()
    ras = RAS.copy()
    ras[:2, 3] = -SPACING * (np.array(SHAPE[:2]) - 1)  # LPS voxel (23, 23, 0) comes first
    sct = Volume(ct.array[::-1, ::-1, :].copy(), ras)  # the same voxels, stored RAS
    write_volume(Volume(target.astype(np.uint8), LPS), tmp_path / "target.nii.gz")
    panel = dose_panel(ct, sct, tmp_path / "target.nii.gz", modalities=(Modality.PHOTON,),
                       title="anna")  # fmt: skip
    png, data = panel.save(tmp_path / "anna")
    row = json.loads(data.read_text())["photon"]
    assert row["gamma_2_2_pct"] == 100.0 and row["gamma_3_2_pct"] == 100.0
    assert abs(row["ptv_d98_diff_pct"]) < 1e-6
    assert "γ 2%/2mm 100.0 %" in panel.summary and "ΔD98 +0.00 %" in panel.summary
    with Image.open(png) as image:  # DVH above, one row of dose panels below
        assert image.size == (900, 820)


def test_dose_page_names_a_target_on_another_grid() -> None:
    ct, target = ct_and_target()
    with pytest.raises(UserError, match=r"target is \(24, 24, 9\), the CT \(24, 24, 10\)"):
        dose_panel(ct, ct, target[:, :, :9], modalities=(Modality.PHOTON,))
