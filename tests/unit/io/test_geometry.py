"""The geometry contract: exact reorientation, resampling that lands on the right world points,
and inverses that come back on exactly the input grid."""

from __future__ import annotations

import numpy as np
import pytest

from hmss_ray.config import ConfigError, DataConfig, ExperimentConfig, UserError
from hmss_ray.io.geometry import Box, Contract, Grid, GridMap
from tests.geometry_cases import storage_variants

BRAIN = Contract("RAS", (1.0, 1.0, 1.0))


def _affine(linear: np.ndarray, origin=(3.0, -7.5, 11.25)) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = origin
    return affine


def _rotation(degrees: float, axis: int) -> np.ndarray:
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    i, j = [n for n in range(3) if n != axis]
    rot = np.eye(3)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    return rot


def _world(grid: Grid) -> np.ndarray:
    """World mm of every voxel centre: (3, X, Y, Z)."""
    idx = np.indices(grid.shape).reshape(3, -1).astype(float)
    return (grid.affine[:3, :3] @ idx + grid.affine[:3, 3:4]).reshape(3, *grid.shape)


def _linear_field(grid: Grid) -> np.ndarray:
    """A linear function of world position: trilinear interpolation reproduces it exactly."""
    x, y, z = _world(grid)
    return (0.7 * x - 1.3 * y + 2.1 * z + 50).astype(np.float32)


def test_all_48_storage_orders_give_the_same_contract_grid_and_voxels_exactly() -> None:
    rng = np.random.default_rng(0)
    array = rng.normal(size=(5, 6, 7)).astype(np.float32)
    affine = _affine(np.diag([-1.0, -1.0, 1.0]))
    reference = GridMap.plan(Grid((5, 6, 7), affine), BRAIN)
    ref_data = reference.forward(array, order=1)
    count = 0
    for data, aff in storage_variants(array, affine):
        gmap = GridMap.plan(Grid(data.shape, aff), BRAIN)
        assert gmap.exact and gmap.target.orientation == "RAS"
        np.testing.assert_allclose(gmap.target.affine, reference.target.affine, atol=1e-9)
        np.testing.assert_array_equal(gmap.forward(data, order=1), ref_data)  # bit-exact
        np.testing.assert_array_equal(gmap.inverse(ref_data, order=1), data)
        count += 1
    assert count == 48


@pytest.mark.parametrize(
    "linear",
    [
        np.diag([0.9, 0.9, 3.0]),  # anisotropic
        np.diag([-2.0, 2.0, -2.0]),  # coarser, flipped
        np.diag([0.9, 3.0, 0.9])[:, [0, 2, 1]],  # sagittal-like storage
        _rotation(12, 2) @ _rotation(-7, 0) @ np.diag([-0.9, 0.9, 3.0]),  # oblique
    ],
    ids=["0.9x0.9x3", "2mm-flipped", "permuted", "oblique"],
)
def test_resampling_puts_every_value_at_its_world_position(linear: np.ndarray) -> None:
    source = Grid((24, 22, 9), _affine(linear))
    gmap = GridMap.plan(source, BRAIN)
    assert not gmap.exact and gmap.target.orientation == "RAS"
    assert gmap.target.spacing == pytest.approx(BRAIN.spacing)
    field = _linear_field(source)
    out = gmap.forward(field, order=1, cval=-1e4)
    # points inside the source's voxel centres: trilinear interpolation of a linear field is exact
    inverse_affine = np.linalg.inv(source.affine)
    where = np.einsum("ij,j...->i...", inverse_affine[:3, :3], _world(gmap.target))
    where += inverse_affine[:3, 3].reshape(3, 1, 1, 1)
    inner = np.all(
        [(w >= 0) & (w <= n - 1) for w, n in zip(where, source.shape, strict=True)], axis=0
    )
    assert inner.sum() > 1000
    np.testing.assert_allclose(out[inner], _linear_field(gmap.target)[inner], atol=2e-3)
    # outside the field of view (beyond half a voxel, or the covering grid's rim of up to a
    # contract voxel past the outermost centres, where the edge voxels extend): the fill value
    rim = np.abs(inverse_affine[:3, :3] @ gmap.target.affine[:3, :3]).max(axis=1)
    reach = np.maximum(rim, 0.5)

    def beyond(by: float) -> np.ndarray:
        return np.any(
            [(w < -r - by) | (w > n - 1 + r + by)
             for w, n, r in zip(where, source.shape, reach, strict=True)], axis=0,
        )  # fmt: skip

    assert (out[beyond(0.01)] == -1e4).all() and (out[~beyond(-0.01)] != -1e4).all()
    # and back on exactly the source grid: the same linear field away from the edges
    back = gmap.inverse(out, order=1, cval=-1e4)
    assert back.shape == source.shape and back.dtype == np.float32
    core = (slice(2, -2), slice(2, -2), slice(1, -1))
    np.testing.assert_allclose(back[core], field[core], atol=5e-3)


def test_the_contract_grid_covers_the_input_on_the_world_lattice() -> None:
    source = Grid((64, 64, 24), _affine(np.diag([0.9, 0.9, 3.0])))
    target = GridMap.plan(source, BRAIN).target
    spacing = np.asarray(BRAIN.spacing)
    # voxel centres on the lattice through the world origin
    lattice = target.affine[:3, 3] / spacing
    np.testing.assert_allclose(lattice, np.round(lattice), atol=1e-9)
    # from the last lattice point at or before the input's first voxel centre to the first at
    # or after its last: every input voxel lies between grid points
    low = source.affine[:3, 3]
    high = low + np.array([63 * 0.9, 63 * 0.9, 23 * 3.0])
    first = target.affine[:3, 3]
    last = first + spacing * (np.asarray(target.shape) - 1)
    assert (first <= low).all() and (first + spacing > low).all()
    assert (last >= high).all() and (last - spacing < high).all()


def test_nearest_keeps_mask_labels_and_dtype() -> None:
    source = Grid((20, 20, 8), _affine(np.diag([1.0, 1.0, 2.5])))
    mask = np.zeros(source.shape, np.uint8)
    mask[5:15, 4:16, 2:6] = 1
    gmap = GridMap.plan(source, BRAIN)
    out = gmap.forward(mask, order=0)
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 1}
    assert out.sum() * 1.0 == pytest.approx(mask.sum() * 2.5, rel=0.05)  # same volume in mm^3
    back = gmap.inverse(out, order=0)
    np.testing.assert_array_equal(back, mask)  # 2.5 mm -> 1 mm -> 2.5 mm: nothing moves


def test_a_box_is_the_same_part_of_the_whole_and_the_inverse_of_a_box_fills_the_rest() -> None:
    source = Grid((30, 26, 10), _affine(np.diag([-0.9, 0.9, 2.0])))
    field = _linear_field(source)
    for gmap in (
        GridMap.plan(source, BRAIN),
        GridMap.plan(source, Contract("RAS", (0.9,) * 2 + (2.0,))),
    ):
        whole = gmap.forward(field, order=1)
        box = Box((3, -2, 4), (16, 12, 5))
        part = gmap.forward(field, order=1, box=box, cval=-7.0)
        np.testing.assert_array_equal(part[:, 2:], whole[3:19, 0:10, 4:9])
        assert (part[:, :2] == -7.0).all()  # before the grid's first row: outside the input
        back = gmap.inverse(part, order=1, box=box, cval=-99.0)
        assert back.shape == source.shape and (back == -99.0).any() and (back != -99.0).any()
        with pytest.raises(ValueError, match="its box"):
            gmap.inverse(part[:, :, :2], order=1, box=box)


def test_header_noise_keeps_the_exact_path_and_the_input_affine() -> None:
    linear = _rotation(1e-6, 2) @ np.diag([-0.999999, 1.0000004, 1.0])
    source = Grid((200, 200, 100), _affine(linear))
    gmap = GridMap.plan(source, BRAIN)
    assert gmap.exact
    np.testing.assert_array_equal(
        gmap.target.affine[:3, 3], source.affine[:3, 3] + linear[:3, 0] * 199
    )


def test_contract_of_a_region_comes_from_the_config_and_is_saved_with_it() -> None:
    cfg = ExperimentConfig().replace({"data.spacing.pelvis": [1.5, 1.5, 2.5]})
    assert Contract.of(cfg.data, "pelvis") == Contract("RAS", (1.5, 1.5, 2.5))
    rebuilt = ExperimentConfig.from_dict(cfg.to_dict())
    assert rebuilt.data.spacing["pelvis"] == (1.5, 1.5, 2.5)
    assert rebuilt.data.spacing["brain"] == (1.0, 1.0, 1.0)
    assert set(rebuilt.data.spacing) == set(rebuilt.data.regions)  # every region has a contract
    assert Contract.of(rebuilt.data, "pelvis").to_dict() == {
        "orientation": "RAS",
        "spacing": [1.5, 1.5, 2.5],
    }
    with pytest.raises(UserError, match=r"add data\.spacing\.pelvis"):
        Contract.of(DataConfig(regions=("brain",), spacing={"brain": (1.0, 1.0, 1.0)}), "pelvis")


@pytest.mark.parametrize(
    "override, message",
    [
        ({"data.orientation": "RSA"}, "data.orientation = 'RSA' is not allowed"),
        ({"data.orientation": "RAX"}, "one of L/R, P/A and I/S"),
        ({"data.spacing": {"brain": [1, 1, 1]}}, "add data.spacing.pelvis"),
        ({"data.spacing.brain": [1, 0, 1]}, "every spacing must be > 0"),
        ({"data.spacing.brain": [1, 1]}, "data.spacing.brain must have 3 items"),
        ({"data.spacing": [1, 1, 1]}, "data.spacing must be a mapping"),
        ({"data.max_body_loss": 1.0}, "data.max_body_loss = 1.0 is not allowed"),
    ],
)
def test_bad_contracts_name_the_key(override, message) -> None:
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig().replace(override)
