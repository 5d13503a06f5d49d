"""Beams are placed in patient coordinates: gantry 0 from anterior (IEC 61217, supine head first)
whatever the storage order of the CT. The same patient stored LPS, RAS and with permuted and
flipped axes gets the same dose once each is brought back to one frame.

Skipped, with the reason, where the optional ``dose`` extra is not installed (``make test-dose``).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip(
    "pyRadPlan", reason="the dose extra is not installed (make test-dose)", exc_type=ImportError
)
pytest.importorskip(
    "pymedphys", reason="the dose extra is not installed (make test-dose)", exc_type=ImportError
)

from hmss_ray.dose import DoseCheck, Modality, Structures, check_case
from hmss_ray.dose.structures import sphere

SPACING = 4.0
SHAPE = (24, 24, 10)  # LPS: axis 0 to the patient's left, axis 1 posterior, axis 2 superior
CENTRE = (12, 12, 5)
LPS = np.diag([-SPACING, -SPACING, SPACING, 1.0])  # voxel -> RAS mm of arrays stored LPS


def patient() -> tuple[np.ndarray, Structures]:
    """LPS arrays: a water cylinder (radius 40 mm), a 10 mm target at its centre and a bone
    block on the anterior left, so that no mirror image of the patient looks the same."""
    x, y = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    body = np.repeat(((x - 12) ** 2 + (y - 12) ** 2 <= 10**2)[:, :, None], SHAPE[2], axis=2)
    hu = np.where(body, 0.0, -1000.0)
    hu[13:17, 3:6, :] = 1000.0  # left of the midline, anterior of the target
    return hu, Structures(body, sphere(SHAPE, (SPACING,) * 3, CENTRE, 10.0))


def stored(array: np.ndarray, order: str) -> np.ndarray:
    """The LPS array as another storage order would hold it."""
    if order == "RAS":
        return array[::-1, ::-1, :]
    if order == "permuted":  # axes (R, S, P): see AFFINES
        return np.transpose(array[::-1, :, :], (0, 2, 1))
    return array


AFFINES = {
    "LPS": LPS,
    "RAS": np.diag([SPACING, SPACING, SPACING, 1.0]),
    # axis 0 to the patient's right, axis 1 superior, axis 2 posterior (a coronal stack)
    "permuted": np.array(
        [[SPACING, 0, 0, 0], [0, 0, -SPACING, 0], [0, SPACING, 0, 0], [0, 0, 0, 1.0]]
    ),
}


@pytest.fixture(scope="module")
def checks() -> dict[str, DoseCheck]:
    """The proton check of the same patient in each storage order (about 10 s each)."""
    return {order: check(order) for order in AFFINES}


def check(order: str) -> DoseCheck:
    hu, structures = patient()
    sct = hu + 40.0 * structures.body  # a biased sCT: the recomputed dose differs too
    masks = Structures(stored(structures.body, order), stored(structures.target, order))
    return check_case(stored(hu, order), stored(sct, order), masks, AFFINES[order],
                      modalities=(Modality.PROTON,))  # fmt: skip


def test_same_patient_in_any_storage_order_gets_the_same_dose(checks: dict[str, DoseCheck]) -> None:
    reference = checks["LPS"]
    plan = reference.plans[Modality.PROTON]
    for order in ("RAS", "permuted"):
        other = checks[order]
        got = other.plans[Modality.PROTON]
        # in the patient frame (both checks work there) and back in the other's storage order
        np.testing.assert_allclose(got.dose_ct, plan.dose_ct, atol=1e-6, err_msg=order)
        np.testing.assert_allclose(got.dose_sct, plan.dose_sct, atol=1e-6, err_msg=order)
        back = other.frame.inverse(got.dose_ct)
        assert np.array_equal(back > 0.5, stored(plan.dose_ct > 0.5, order)), order
        assert other.rows[Modality.PROTON]["range_shift_mm"] == pytest.approx(
            reference.rows[Modality.PROTON]["range_shift_mm"], abs=1e-6
        )


def test_proton_fields_enter_from_the_front_and_the_sides_never_the_back(
    checks: dict[str, DoseCheck],
) -> None:
    """The default proton fields are gantry 90, 270 and 0: left, right and anterior. Behind the
    target (posterior) no field passes, in front of it the anterior field's entrance channel."""
    result = checks["RAS"]  # RAS storage: storage-order angles would put a field at the back
    dose = result.plans[Modality.PROTON].dose_ct  # patient frame: axis 1 runs posterior
    midline = dose[11:14, :, 3:8].mean(axis=(0, 2))  # body: y 2..22, target: y 10..14
    anterior, posterior = midline[3:7].mean(), midline[19:23].mean()
    assert anterior > 0.2, midline
    assert posterior < 0.05, midline
