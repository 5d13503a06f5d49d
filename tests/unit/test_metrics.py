"""SynthRAD2023 metrics against hand-computed values and an independent implementation; the slice
metrics, FID and the feature extractors."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy import ndimage
from skimage.metrics import structural_similarity

from hmss_ray import metrics
from hmss_ray.metrics import features


def reference_synthrad(ct: np.ndarray, sct: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The SynthRAD2023 definitions written out with scipy only (no skimage)."""
    inside = mask > 0
    mae = np.abs(ct - sct)[inside].mean()
    a, b = np.clip(ct, -1024, 3000), np.clip(sct, -1024, 3000)
    psnr = 10 * np.log10(4024.0**2 / np.mean((a[inside] - b[inside]) ** 2))
    a = np.where(inside, a, -1024) + 1024
    b = np.where(inside, b, -1024) + 1024
    mean = lambda x: ndimage.uniform_filter(x, size=7)  # noqa: E731
    ua, ub = mean(a), mean(b)
    n = 7**3 / (7**3 - 1)
    va, vb, vab = n * (mean(a * a) - ua**2), n * (mean(b * b) - ub**2), n * (mean(a * b) - ua * ub)
    c1, c2 = (0.01 * 4024) ** 2, (0.03 * 4024) ** 2
    smap = (2 * ua * ub + c1) * (2 * vab + c2) / ((ua**2 + ub**2 + c1) * (va + vb + c2))
    crop = (slice(3, -3),) * 3
    return {"mae": mae, "psnr": psnr, "ssim": smap[crop][inside[crop]].mean()}


def phantom_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:16, :24, :20]
    mask = ((y - 12) ** 2 / 90 + (x - 10) ** 2 / 70 + (z - 8) ** 2 / 60) < 1
    ct = np.where(
        mask, 40 + 900 * (ndimage.gaussian_filter(rng.random(mask.shape), 2) > 0.5), -1000
    )
    ct = ct + rng.normal(0, 20, mask.shape)
    sct = ct + rng.normal(0, 80, mask.shape) + 30
    sct[mask & (x < 5)] = 3500  # out of range: clipped for PSNR and SSIM, not for MAE
    return ct.astype(np.float32), sct.astype(np.float32), mask.astype(np.uint8)


def test_synthrad_metrics_match_an_independent_implementation():
    ct, sct, mask = phantom_pair()
    ours = metrics.synthrad_metrics(ct, sct, mask)
    ref = reference_synthrad(ct.astype(np.float64), sct.astype(np.float64), mask)
    for key in ("mae", "psnr", "ssim"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-4), key
    assert 0 < ours["ssim"] < 1


def test_identical_volumes():
    ct, _, mask = phantom_pair()
    out = metrics.synthrad_metrics(ct, ct, mask)
    assert out["mae"] == 0.0 and out["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert out["psnr"] == math.inf


def test_known_offset_gives_known_mae_and_psnr():
    ct, _, mask = phantom_pair()
    out = metrics.synthrad_metrics(ct, ct + 100.0, mask)
    assert out["mae"] == pytest.approx(100.0, rel=1e-5)
    assert out["psnr"] == pytest.approx(20 * math.log10(4024 / 100), rel=1e-5)


def test_mae_is_unclipped_but_psnr_is_clipped():
    ct = np.full((8, 8, 8), 2950.0)
    out = metrics.synthrad_metrics(ct, ct + 150.0, np.ones_like(ct))
    assert out["mae"] == pytest.approx(150.0)
    assert out["psnr"] == pytest.approx(20 * math.log10(4024 / 50))


def test_bad_inputs_are_rejected():
    ct, _, mask = phantom_pair()
    with pytest.raises(ValueError, match="mask is empty"):
        metrics.synthrad_metrics(ct, ct, np.zeros_like(mask))
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.synthrad_metrics(ct, ct[:-1], mask)


def test_slice_ssim_is_skimage_2d_with_defaults():
    rng = np.random.default_rng(1)
    a = ndimage.gaussian_filter(rng.random((3, 32, 32)), 1.5)
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    ours = metrics.slice_ssim(torch.tensor(a * 2 - 1)[:, None], torch.tensor(b * 2 - 1)[:, None])
    ref = [structural_similarity(x, y, data_range=1.0) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-10)


def test_bone_dice_by_hand():
    ct = torch.tensor([[[[300.0, 300.0, 0.0, 0.0]]]])
    sct = torch.tensor([[[[300.0, 0.0, 300.0, 900.0]]]])
    mask = torch.tensor([[[[1.0, 1.0, 1.0, 0.0]]]])  # the last pixel is outside the body
    assert metrics.bone_dice(ct, sct, mask, 250.0) == pytest.approx(2 * 1 / (2 + 2))
    assert metrics.bone_dice(ct * 0, sct * 0, mask) == 1.0


def test_frechet_distance_matches_the_sqrtm_formula():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(200, 6)), rng.normal(0.5, 1.3, size=(150, 6))
    mu1, mu2, s1, s2 = x.mean(0), y.mean(0), np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    real, fake = metrics.FeatureStats(), metrics.FeatureStats()
    (
        real.update(torch.tensor(x[:90])),
        real.update(torch.tensor(x[90:])),
        fake.update(torch.tensor(y)),
    )
    assert metrics.fid(real, fake) == pytest.approx(expected, rel=1e-6)
    assert metrics.fid(real, real) == pytest.approx(0.0, abs=1e-6)


def test_fid_with_random_features_is_zero_for_a_set_with_itself_and_grows_with_a_shift():
    net = features.RandomFeatures()
    images = torch.rand(24, 1, 32, 32) * 2 - 1
    stats = {}
    for name, batch in {"a": images, "b": images, "shifted": (images + 0.5).clamp(-1, 1)}.items():
        stats[name] = metrics.FeatureStats()
        stats[name].update(features.fid_features(net, batch))
    assert metrics.fid(stats["a"], stats["b"]) == pytest.approx(0.0, abs=1e-6)
    assert metrics.fid(stats["a"], stats["shifted"]) > 1e-3


def test_slice_metrics_identical_and_offset():
    ct = torch.rand(4, 1, 32, 32) * 2 - 1
    mask = torch.ones_like(ct)
    same = metrics.SliceMetrics((-1024, 3000), 250.0, features.RandomFeatures(), None)
    same.update(ct, ct, mask)
    out = same.compute()
    assert out["mae_hu"] == 0 and out["mse"] == 0 and out["psnr"] == math.inf
    assert out["ssim"] == pytest.approx(1.0) and out["bone_dice"] == 1.0 and out["perceptual"] == 0
    shifted = metrics.SliceMetrics((-1024, 3000))
    mask[:, :, :16] = 0  # the error outside the mask does not count in HU
    shifted.update(ct, ct + 0.1 * mask, mask)
    out = shifted.compute("low_")
    assert out["low_mae_hu"] == pytest.approx(0.1 * 2012)
    assert out["low_psnr"] == pytest.approx(20 * math.log10(4024 / 201.2))
    assert out["low_mse"] == pytest.approx(0.01 / 2)


def test_configured_weights_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="do not exist"):
        features.find_weights(features.Kind.VGG_DISTANCE, str(tmp_path / "vgg16.pth"))


def fake_vgg16_state() -> dict[str, torch.Tensor]:
    state, channels, index = {}, 3, 0
    for item in (64, 64, "M", 128, 128, "M", 256, 256, 256):
        if item == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = torch.randn(item, channels, 3, 3) * 0.05
        state[f"features.{index}.bias"] = torch.zeros(item)
        channels, index = item, index + 2
    return state


def test_pretrained_vgg_is_loaded_from_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    state = fake_vgg16_state()
    torch.save(state, checkpoints / features.WEIGHT_FILES[features.Kind.VGG_DISTANCE])
    features.load_extractor.cache_clear()
    try:
        vgg = features.load_extractor(features.Kind.VGG_DISTANCE)
        assert vgg.pretrained and features.describe(vgg, "VGG distance") == "VGG distance"
        assert torch.equal(vgg.features[14].weight, state["features.14.weight"])
        assert vgg(torch.zeros(1, 1, 32, 32))[-1].shape == (1, 256, 56, 56)  # resized to 224
    finally:
        features.load_extractor.cache_clear()


def test_missing_weights_fall_back_to_seeded_random_features_with_one_warning(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("HMSS_RANDOM_FEATURES_OK", raising=False)
    monkeypatch.setattr(features, "_warned", set())
    features.load_extractor.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="hmss_ray.metrics.features"):
            first = features.load_extractor(features.Kind.INCEPTION)
            features.load_extractor.cache_clear()
            second = features.load_extractor(features.Kind.INCEPTION)
        assert len([r for r in caplog.records if "random-feature" in r.message]) == 1
        assert features.describe(first, "FID") == "FID (random features)"
        x = torch.rand(2, 1, 32, 32)
        assert torch.equal(first.pooled(x), second.pooled(x))  # same seed, same features
    finally:
        features.load_extractor.cache_clear()
