"""Normalisation round trips, crop/pad exactness, 2.5D context and prepare_volume."""

from __future__ import annotations

import numpy as np
import pytest

from hmss_ray.config import DataConfig
from hmss_ray.data.preprocess import (
    CropBox,
    MRNorm,
    crop_box_for,
    crop_pad,
    ct_to_unit,
    mr_denormalise,
    mr_normalise,
    prepare_volume,
    slices_with_context,
    uncrop,
    unit_to_ct,
)

HU_RANGE = (-1024.0, 3000.0)


def test_ct_maps_range_ends_to_minus_one_and_one_and_clips() -> None:
    hu = np.array([-3000, -1024, 988, 3000, 9000], dtype=np.int16)
    unit = ct_to_unit(hu, HU_RANGE)
    assert unit.dtype == np.float32
    np.testing.assert_allclose(unit, [-1, -1, 0, 1, 1], atol=1e-6)


def test_ct_round_trip_is_exact_to_float32_inside_the_range() -> None:
    hu = np.random.default_rng(0).uniform(-1024, 3000, (16, 16, 4)).astype(np.float32)
    back = unit_to_ct(ct_to_unit(hu, HU_RANGE), HU_RANGE)
    np.testing.assert_allclose(back, hu, atol=1e-3)


def test_mr_normalise_maps_mask_percentiles_and_round_trips() -> None:
    rng = np.random.default_rng(1)
    mr = rng.gamma(2.0, 200.0, (24, 24, 6)).astype(np.float32)
    mask = np.zeros(mr.shape, bool)
    mask[4:20, 4:20] = True
    x, params = mr_normalise(mr, mask, (0.5, 99.5))
    assert x.dtype == np.float32 and x.min() >= -1 and x.max() <= 1
    core = np.zeros(mr.shape, bool)  # the mask without its in-plane rim (intensity.norm_region)
    core[5:19, 5:19] = True
    assert params.low == pytest.approx(np.percentile(mr[core], 0.5))
    assert params.high == pytest.approx(np.percentile(mr[core], 99.5))
    inside = (mr >= params.low) & (mr <= params.high)
    np.testing.assert_allclose(mr_denormalise(x, params)[inside], mr[inside], rtol=1e-5, atol=1e-2)
    assert MRNorm.from_dict(params.to_dict()) == params


def test_mr_normalise_constant_image_stays_finite() -> None:
    x, params = mr_normalise(np.full((4, 4, 2), 7.0), None, (1, 99))
    assert np.isfinite(x).all() and params.high > params.low


def test_crop_box_is_centred_on_the_mask_bounding_box() -> None:
    mask = np.zeros((40, 50, 3), np.uint8)
    mask[10:20, 30:34, 1] = 1  # rows 10..19, cols 30..33
    box = crop_box_for(mask, 16)
    assert box == CropBox(start=(7, 24), size=16)
    assert CropBox.from_dict(box.to_dict()) == box
    with pytest.raises(ValueError, match="mask is empty"):
        crop_box_for(np.zeros((8, 8, 2)), 16)


@pytest.mark.parametrize(
    "shape",
    [(20, 24, 3), (50, 40, 3), (40, 20, 2), (32, 32, 1)],
    ids=["pad", "crop", "crop-and-pad", "same"],
)
def test_crop_pad_then_uncrop_restores_the_grid_exactly(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(2)
    volume = rng.integers(-1000, 2000, shape).astype(np.int16)
    mask = np.zeros(shape, np.uint8)
    mask[shape[0] // 2 - 3 : shape[0] // 2 + 3, shape[1] // 2 - 3 : shape[1] // 2 + 3] = 1
    box = crop_box_for(mask, 32)
    cropped = crop_pad(volume, box, fill=-1000)
    assert cropped.shape == (32, 32, shape[2]) and cropped.dtype == np.int16
    restored = uncrop(cropped, box, shape, fill=-1024)
    assert restored.shape == shape
    covered = uncrop(np.ones((32, 32, shape[2]), bool), box, shape, fill=False)
    np.testing.assert_array_equal(restored[covered], volume[covered])  # bit-exact
    assert (restored[~covered] == -1024).all()
    if shape[0] <= 32 and shape[1] <= 32:
        np.testing.assert_array_equal(restored, volume)


def test_uncrop_rejects_a_volume_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match=r"expected \(16, 16, ...\)"):
        uncrop(np.zeros((8, 8, 2)), CropBox((0, 0), 16), (20, 20, 2), fill=0)


def test_slices_with_context_repeats_edges() -> None:
    volume = np.arange(4, dtype=np.float32)[None, None, :] * np.ones((3, 5, 1), np.float32)
    stacked = slices_with_context(volume, 1)  # (Z, 3, H, W)
    assert stacked.shape == (4, 3, 3, 5)
    assert stacked[:, :, 0, 0].tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]]
    picked = slices_with_context(volume, 2, indices=[3])
    assert picked.shape == (1, 5, 3, 5) and picked[0, :, 0, 0].tolist() == [1, 2, 3, 3, 3]
    assert slices_with_context(volume, 0).shape == (4, 1, 3, 5)


def _case(shape=(30, 26, 5)):
    rng = np.random.default_rng(3)
    mask = np.zeros(shape, np.uint8)
    mask[5:25, 4:22, 1:] = 1
    mask[12:16, 10:14, 0] = 1  # a slice with very little body
    mr = rng.uniform(100, 900, shape).astype(np.float32)
    ct = rng.uniform(-1000, 1500, shape).astype(np.float32)
    return mr, ct, mask


def test_prepare_volume_crops_normalises_and_masks() -> None:
    mr, ct, mask = _case()
    cfg = DataConfig(image_size=32, min_mask_fraction=0.05)
    out = prepare_volume(mr, ct, mask, cfg)
    assert out.mr.shape == out.ct.shape == out.mask.shape == (32, 32, 5)
    assert out.grid_shape == (30, 26, 5)
    assert out.keep.tolist() == [1, 2, 3, 4]  # slice 0: 16 px of body, 4 % of the 360 px slices
    assert (out.mr[out.mask == 0] == -1).all() and (out.ct[out.mask == 0] == -1).all()
    assert out.mr.min() >= -1 and out.mr.max() <= 1
    ct_back = unit_to_ct(uncrop(out.ct, out.box, mr.shape, fill=-1), cfg.hu_range)
    np.testing.assert_allclose(ct_back[mask > 0], np.clip(ct, *cfg.hu_range)[mask > 0], atol=1e-3)


def test_prepare_volume_without_ct_for_inference() -> None:
    mr, _, mask = _case()
    out = prepare_volume(mr, None, mask, DataConfig(image_size=32, min_mask_fraction=0.0))
    assert out.ct is None and out.keep.tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="shapes differ"):
        prepare_volume(mr, None, mask[:, :, :2], DataConfig(image_size=32))
