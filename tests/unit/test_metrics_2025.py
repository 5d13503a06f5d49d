"""SynthRAD2025 image metrics against an independent implementation of the organisers' definitions
(REFERENCE.md section 6), known values, and the geometric metrics (Dice, HD95, segmenters).

The reference below shares no code with :mod:`hmss_ray.metrics.synthrad2025`: its window means are
summed-area tables over a symmetric pad (what scipy's ``reflect`` mode means), its 2x2x2 box is
scipy's FFT convolution as the organisers call it, and its padding and cropping are spelled out.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.signal import fftconvolve
from skimage.metrics import structural_similarity

from hmss_ray import metrics
from hmss_ray.config import UserError
from hmss_ray.data.phantom import case_ids, make_case
from hmss_ray.metrics import segmentation
from hmss_ray.metrics.synthrad2025 import ssim_level_map

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def box_mean(image: np.ndarray, size: int = 7) -> np.ndarray:
    """Mean over a ``size``^3 window centred on each voxel, borders mirrored (d c b a | a b c d)."""
    r = size // 2
    padded = np.pad(image, r, mode="symmetric")
    for axis in range(3):
        csum = np.cumsum(padded, axis=axis)
        csum = np.concatenate([np.zeros_like(np.take(csum, [0], axis=axis)), csum], axis=axis)
        n = image.shape[axis]
        upper = np.take(csum, np.arange(size, size + n), axis=axis)
        lower = np.take(csum, np.arange(0, n), axis=axis)
        padded = (upper - lower) / size
        # the other axes still carry their padding; this one is now the image's length
    return padded


def reference_level(x: np.ndarray, y: np.ndarray, w: float, data_range: float) -> np.ndarray:
    n = 7**3
    ux, uy = box_mean(x), box_mean(y)
    vx = (box_mean(x**2) - ux**2) * n / (n - 1)
    vy = (box_mean(y**2) - uy**2) * n / (n - 1)
    vxy = (box_mean(x * y) - ux * uy) * n / (n - 1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    sx, sy = np.sqrt(np.maximum(vx, 0)), np.sqrt(np.maximum(vy, 0))
    lum = np.maximum((2 * ux * uy + c1) / (ux**2 + uy**2 + c1), 0)
    con = np.maximum((2 * sx * sy + c2) / (vx + vy + c2), 0)
    struct = np.maximum((vxy + c2 / 2) / (sx * sy + c2 / 2), 0)
    return lum**w * con**w * struct**w


def reference_2025(ct: np.ndarray, sct: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    lo, hi = -1024.0, 3071.0
    inside = mask > 0
    ct, sct = np.where(inside, ct, lo), np.where(inside, sct, lo)
    mae = float(np.sum(np.abs(ct - sct) * inside) / inside.sum())
    a, b = np.clip(ct, lo, hi), np.clip(sct, lo, hi)
    psnr = 10 * math.log10((hi - lo) ** 2 / np.mean((a[inside] - b[inside]) ** 2))
    x, y, m = a - lo, b - lo, inside.astype(np.float64)
    widths = []
    for d in x.shape:
        missing = max(97 - d, 0)
        widths.append((missing // 2, missing - missing // 2))
    x, y, m = (np.pad(v, widths, mode="edge") for v in (x, y, m))
    levels = []
    for w in WEIGHTS:
        smap = reference_level(x, y, w, hi - lo)[3:-3, 3:-3, 3:-3]
        levels.append(smap[m[3:-3, 3:-3, 3:-3] == 1].mean())
        x, y = (fftconvolve(v, np.ones((2, 2, 2)) / 8, mode="same")[::2, ::2, ::2] for v in (x, y))
        m = m[::2, ::2, ::2]
    return {"mae": mae, "psnr": psnr, "ms_ssim": float(np.prod(np.clip(levels, 0, 1)))}


def phantom_sct(region: str, shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, ...]:
    """A phantom CT and a plausible sCT: blurred, noisy, biased, a few voxels far out of range."""
    case = make_case(case_ids(region, 1)[0], seed=seed, shape=shape)
    rng = np.random.default_rng(seed)
    ct = case.ct.astype(np.float64)
    sct = ndimage.gaussian_filter(ct, 1.2) + rng.normal(0, 40, ct.shape) + 15
    sct[case.mask == 0] = rng.normal(-300, 400, int((case.mask == 0).sum()))  # never scored
    body = np.argwhere(case.mask > 0)
    for x, y, z in body[rng.choice(len(body), 40)]:
        sct[x, y, z] = 3600.0  # clipped for PSNR and MS-SSIM, not for MAE
    return ct, sct, case.mask


@pytest.mark.parametrize(
    ("region", "shape"),
    [("brain", (150, 140, 40)), ("pelvis", (104, 100, 98))],  # padded in z; no padding at all
)
def test_synthrad2025_metrics_match_an_independent_implementation(region, shape):
    ct, sct, mask = phantom_sct(region, shape, seed=3)
    ours = metrics.synthrad2025_metrics(ct, sct, mask)
    ref = reference_2025(ct, sct, mask)
    assert set(ours) == {"mae", "psnr", "ms_ssim"}
    for key in ours:
        assert ours[key] == pytest.approx(ref[key], abs=1e-4), key
    assert 0.5 < ours["ms_ssim"] < 1 and 15 < ours["psnr"] < 45 and ours["mae"] > 15


def test_one_level_with_weight_one_is_skimage_ssim():
    rng = np.random.default_rng(0)
    x = ndimage.gaussian_filter(rng.uniform(0, 4095, (30, 28, 26)), 2)
    y = x + rng.normal(0, 30, x.shape)  # positively correlated everywhere: no clipping bites
    _, expected = structural_similarity(x, y, data_range=4095.0, full=True)
    assert np.allclose(ssim_level_map(x, y, 1.0), expected, atol=1e-9)


def test_identical_volumes_and_known_offsets():
    ct, _, mask = phantom_sct("brain", (48, 48, 16), seed=1)
    same = metrics.synthrad2025_metrics(ct, ct, mask)
    assert same["mae"] == 0 and same["psnr"] == math.inf
    assert same["ms_ssim"] == pytest.approx(1.0, abs=1e-12)
    shifted = metrics.synthrad2025_metrics(ct, ct + 100.0, mask)
    assert shifted["mae"] == pytest.approx(100.0)
    assert shifted["psnr"] == pytest.approx(20 * math.log10(4095 / 100), rel=1e-6)
    assert shifted["ms_ssim"] < 1


def test_mae_is_unclipped_psnr_clipped_at_3071():
    ct = np.full((20, 20, 20), 3000.0)
    out = metrics.synthrad2025_metrics(ct, ct + 150.0, np.ones_like(ct))
    assert out["mae"] == pytest.approx(150.0)
    assert out["psnr"] == pytest.approx(20 * math.log10(4095 / 71))  # 3150 clipped to 3071


def test_outside_the_mask_is_never_scored():
    ct, sct, mask = phantom_sct("pelvis", (40, 36, 12), seed=2)
    other = sct.copy()
    other[mask == 0] = 2000.0
    assert metrics.synthrad2025_metrics(ct, sct, mask) == metrics.synthrad2025_metrics(
        ct, other, mask
    )


@pytest.mark.parametrize(
    ("shapes", "message"),
    [(((8, 8, 8), (8, 8, 9), (8, 8, 8)), "shapes differ"), (((8, 8), (8, 8), (8, 8)), "3D")],
)
def test_bad_inputs_are_refused(shapes, message):
    ct, sct, mask = (np.ones(s) for s in shapes)
    with pytest.raises(ValueError, match=message):
        metrics.synthrad2025_metrics(ct, sct, mask)
    with pytest.raises(ValueError, match="mask is empty"):
        metrics.synthrad2025_metrics(np.ones((8, 8, 8)), np.ones((8, 8, 8)), np.zeros((8, 8, 8)))


def _labels() -> np.ndarray:
    ref = np.zeros((24, 24, 12), np.uint8)
    ref[4:12, 4:12, 3:8] = 1
    ref[14:20, 14:20, 2:10] = 2
    return ref


def test_overlap_metrics_follow_monai_and_the_organisers_mean_without_background():
    ref = _labels()
    names = {0: "background", 1: "bone", 2: "air"}
    perfect = metrics.overlap_metrics(ref, ref, (1.0, 1.0, 3.0), names)
    assert perfect["dice"] == 1.0 and perfect["hd95"] == 0.0
    moved = np.roll(ref, 2, axis=0)  # 2 voxels along x: 2 mm at 1 mm spacing
    out = metrics.overlap_metrics(ref, moved, (1.0, 1.0, 3.0), names)
    assert out["dice_bone"] == pytest.approx(6 / 8)  # 8-voxel side, 6 shared
    assert out["hd95_bone"] == pytest.approx(2.0)
    per_label = [out[f"dice_{n}"] for n in ("bone", "air")]  # background never in the mean
    assert out["dice"] == pytest.approx(np.mean(per_label))
    assert out["dice_background"] > 0.9
    twice = metrics.overlap_metrics(ref, moved, (2.0, 1.0, 3.0), names)
    assert twice["hd95_bone"] == pytest.approx(4.0)  # spacing is in mm
    no_air = np.where(ref == 2, 0, ref).astype(np.uint8)
    missing = metrics.overlap_metrics(ref, no_air, (1.0, 1.0, 3.0), names)
    assert missing["dice_air"] == 0 and np.isnan(missing["hd95_air"])  # MONAI: nothing to measure
    assert missing["hd95"] == pytest.approx(0.0)  # bone only: the missing class's NaN skipped


def test_threshold_segmenter_labels_bone_and_air_inside_the_body_only():
    hu = np.array([[[-1000.0, -600.0, 40.0, 300.0, 1200.0]]])
    mask = np.array([[[0, 1, 1, 1, 0]]])
    seg = metrics.ThresholdSegmenter(bone_hu=250.0)
    assert seg(hu, mask, np.eye(4)).tolist() == [[[0, 2, 0, 1, 0]]]
    assert "bone >= 250 HU" in seg.description


def test_segmenter_choice_never_downloads(monkeypatch, tmp_path):
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "no-weights"))
    usable, why = segmentation.totalsegmentator_status()
    assert not usable and ("not installed" in why or "would be downloaded" in why)
    auto = metrics.make_segmenter("auto", bone_hu=300.0)
    assert isinstance(auto, metrics.ThresholdSegmenter) and auto.bone_hu == 300.0
    assert why in auto.description  # the report says why it fell back
    with pytest.raises(UserError, match="--segmentation totalsegmentator: "):
        metrics.make_segmenter("totalsegmentator")
    with pytest.raises(ValueError):
        metrics.make_segmenter("atlas")


def _organisers_score(gt_seg: np.ndarray, pred_seg: np.ndarray, anatomy: str, spacing) -> dict:
    """A copy of the logic of SynthRAD2025/evaluation segmentation_metrics.py (score_patient,
    after segmentation): per class of the region's list, one-hot MONAI metrics, absent skipped."""
    import torch
    from monai.metrics import DiceMetric, HausdorffDistanceMetric

    classes_to_use = {
        "AB": [2, 3, 5, 6, *range(10, 14 + 1), *range(26, 50 + 1), 51, 79,
               *range(92, 115 + 1), 116],
        "HN": [15, 16, 17, *range(26, 50 + 1), 79, 90, 91],
        "TH": [2, 3, 5, 6, *range(10, 14 + 1), *range(26, 50 + 1), 51, 79,
               *range(92, 115 + 1), 116],
    }  # fmt: skip
    gt, pred = torch.from_numpy(gt_seg), torch.from_numpy(pred_seg)
    fs = [
        ("DICE", DiceMetric(include_background=True, reduction="mean", get_not_nans=False), {}),
        ("HD95", HausdorffDistanceMetric(include_background=True, reduction="mean",
                                         percentile=95, get_not_nans=False),
         {"spacing": spacing}),
    ]  # fmt: skip
    if not any((gt == c).sum() > 0 for c in classes_to_use[anatomy]):
        return {"DICE": 0, "HD95": 0}
    for c in classes_to_use[anatomy]:
        gt_tensor = (gt == c).view(1, 1, *gt.shape)
        if gt_tensor.sum() == 0:
            continue
        est_tensor = (pred == c).view(1, 1, *pred.shape)
        for _, f, kwargs in fs:
            f(est_tensor, gt_tensor, **kwargs)
    return {name: f.aggregate().item() for name, f, _ in fs}


def _ts_labels(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """TotalSegmentator-like label maps: boxes of listed and unlisted classes, and a shifted,
    eroded copy with one class missing and one class only in the prediction."""
    rng = np.random.default_rng(seed)
    gt = np.zeros((40, 40, 20), np.uint8)
    for label in (5, 15, 16, 30, 51, 79, 90, 91, 100, 7):  # 7: in no list
        x, y, z = rng.integers(0, 30), rng.integers(0, 30), rng.integers(0, 14)
        gt[x : x + rng.integers(4, 10), y : y + rng.integers(4, 10), z : z + 6] = label
    pred = np.roll(gt, (1, -2, 1), axis=(0, 1, 2))
    pred[pred == 16] = 0  # a class the sCT misses: Dice 0, HD95 NaN
    pred[0:4, 0:4, 0:4] = 17  # a class only the sCT has: absent from the CT, skipped
    return gt, pred


@pytest.mark.parametrize("region", ["HN", "TH", "AB"])
def test_2025_dice_and_hd95_equal_the_organisers_logic(region):
    spacing = (1.0, 1.2, 2.5)
    for seed in range(3):
        gt, pred = _ts_labels(seed)
        ours = metrics.overlap_metrics(gt, pred, spacing, classes=segmentation.CLASSES_2025[region])
        theirs = _organisers_score(gt, pred, region, spacing)
        assert ours["dice"] == pytest.approx(theirs["DICE"], rel=1e-6)
        assert ours["hd95"] == pytest.approx(theirs["HD95"], rel=1e-6)
    none = np.full((12, 12, 12), 7, np.uint8)  # none of the region's classes: 0 and 0
    empty = metrics.overlap_metrics(none, none, spacing, classes=segmentation.CLASSES_2025[region])
    assert empty == {"dice": 0.0, "hd95": 0.0}


def test_2025_class_lists_are_the_organisers():
    hn = segmentation.CLASSES_2025["HN"]
    assert hn == (15, 16, 17, *range(26, 51), 79, 90, 91)
    trunk = (2, 3, 5, 6, 10, 11, 12, 13, 14, *range(26, 51), 51, 79, *range(92, 116), 116)
    assert segmentation.CLASSES_2025["TH"] == segmentation.CLASSES_2025["AB"] == trunk
    assert 0 not in hn + trunk  # never background
