"""A volume put on another grid for comparison (a CT on the sCT's grid): exact when the grids
differ by storage order only, trilinear otherwise, NaN where the volume does not reach.

A field linear in world coordinates is interpolated exactly by trilinear sampling, so the
resampled values must equal the field evaluated at the target grid's voxel centres.
"""

from __future__ import annotations

import numpy as np
import pytest

from hmss_ray.config import UserError
from hmss_ray.io import Volume
from hmss_ray.io.align import onto_grid


def _field(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """3x + 2y - z + 7 (RAS mm) at every voxel centre of the grid."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    world = index @ affine[:3, :3].T + affine[:3, 3]
    return (world @ [3.0, 2.0, -1.0] + 7.0).astype(np.float32)


SOURCE = np.diag([2.0, 2.0, 3.0, 1.0])
SOURCE[:3, 3] = (-20.0, -24.0, -30.0)


@pytest.mark.parametrize(
    "linear",
    [np.diag([-1.0, 1.5, 2.0]), np.array([[0.0, 2.5, 0.0], [-2.5, 0.0, 0.0], [0.0, 0.0, 4.0]])],
    ids=["flipped-finer", "rotated-in-plane"],
)
def test_a_linear_field_resamples_exactly_and_is_nan_outside_its_field_of_view(linear) -> None:
    source = Volume(_field((20, 24, 20), SOURCE), SOURCE)
    target = np.eye(4)
    target[:3, :3] = linear
    target[:3, 3] = (0.0, -10.0, -20.0)
    shape = (24, 16, 20)
    out = onto_grid(source, target, shape)
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    at = (
        index @ (np.linalg.inv(SOURCE) @ target)[:3].T[:3] + (np.linalg.inv(SOURCE) @ target)[:3, 3]
    )
    within = np.all((at >= 0) & (at <= np.array(source.shape) - 1), axis=-1)  # between centres
    beyond = np.any((at < -0.5) | (at > np.array(source.shape) - 0.5), axis=-1)
    assert within.sum() > 500 and beyond.any()  # the target reaches past the source
    assert np.isfinite(out.array[within]).all() and np.isnan(out.array[beyond]).all()
    expected = _field(shape, target)
    assert np.abs(out.array[within] - expected[within]).max() < 1e-3
    assert np.allclose(out.affine, target)


def test_a_reordered_grid_is_exact_and_a_far_one_is_refused() -> None:
    array = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = 1.0
    out = onto_grid(Volume(array[::-1].copy(), flip), np.eye(4), (2, 3, 4))
    assert out.array.dtype == np.int16 and np.array_equal(out.array, array)
    far = np.eye(4)
    far[:3, 3] = 1e4
    with pytest.raises(UserError, match="does not overlap"):
        onto_grid(Volume(array.astype(np.float32), far), np.eye(4), (2, 3, 4))
