"""The SynthRAD2025 image metrics, per patient, 3D, exactly as the organisers define them.

From the organisers' evaluation (``image_metrics.py`` of SynthRAD2025/evaluation): HU range
[-1024, 3071], data range 4095, both volumes set to -1024 outside the mask first.

- MAE: mean ``|ct - sct|`` over the mask voxels, unclipped.
- PSNR: both clipped to the range, mask voxels only, ``10 log10(4095^2 / MSE)``.
- masked MS-SSIM: both clipped, -1024 outside the mask, shifted by +1024; every axis padded to at
  least 97 voxels with edge values (``(97 - d) // 2`` before, the rest after; the mask too); then 5
  levels weighted (0.0448, 0.2856, 0.3001, 0.2363, 0.1333). At a level with weight ``w`` the SSIM
  map is ``L^w C^w S^w`` from 7-voxel uniform-window statistics (scipy ``uniform_filter``, reflect),
  sample covariance (N/(N-1)), K1 0.01, K2 0.03, C3 = C2/2, with luminance ``L``, contrast
  ``C = (2 sx sy + C2) / (vx + vy + C2)`` and structure ``S = (vxy + C3) / (sx sy + C3)`` each
  clipped at 0 (``sx = sqrt(max(vx, 0))``); the level's value is the map's mean over the mask after
  cropping 3 voxels from every border of both. Between levels both images are filtered with a
  2x2x2 box (zero beyond the low border: a 'same' convolution) and every second voxel is kept, the
  mask subsampled likewise. The result is the product of the 5 level values, each clipped to
  [0, 1]; NaN when the cropped mask of a level holds no voxel, as in the organisers' code.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

from hmss_ray.metrics.synthrad2023 import psnr_from_mse

HU_MIN, HU_MAX = -1024.0, 3071.0
DATA_RANGE = HU_MAX - HU_MIN  # 4095
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MIN_SIZE = 97  # every axis padded to this: five levels of halving still leave a 7-voxel window
WIN = 7
CROP = WIN // 2
K1, K2 = 0.01, 0.03


def synthrad2025_metrics(
    ct_hu: np.ndarray, sct_hu: np.ndarray, mask: np.ndarray
) -> dict[str, float]:
    """``{"mae", "psnr", "ms_ssim"}`` of one patient's volumes, SynthRAD2025 definitions.

    Args:
        ct_hu: reference CT in HU, 3D.
        sct_hu: synthetic CT in HU on the same grid.
        mask: body mask on the same grid (voxels > 0 are scored).

    PSNR is ``inf`` when the clipped volumes agree exactly inside the mask.
    """
    ct = np.asarray(ct_hu, dtype=np.float64)
    sct = np.asarray(sct_hu, dtype=np.float64)
    inside = np.asarray(mask) > 0
    if ct.shape != sct.shape or ct.shape != inside.shape:
        raise ValueError(f"shapes differ: ct {ct.shape}, sct {sct.shape}, mask {inside.shape}")
    if ct.ndim != 3:
        raise ValueError(f"volumes must be 3D, got shape {ct.shape}")
    if not inside.any():
        raise ValueError("the mask is empty: no voxel to score")
    mae = float(np.abs(ct[inside] - sct[inside]).mean())
    ct_c, sct_c = np.clip(ct, HU_MIN, HU_MAX), np.clip(sct, HU_MIN, HU_MAX)
    mse = float(np.mean((ct_c[inside] - sct_c[inside]) ** 2))
    return {
        "mae": mae,
        "psnr": psnr_from_mse(mse, DATA_RANGE),
        "ms_ssim": masked_ms_ssim(ct_c, sct_c, inside),
    }


def masked_ms_ssim(
    ct: np.ndarray,
    sct: np.ndarray,
    inside: np.ndarray,
    weights: tuple[float, ...] = MS_SSIM_WEIGHTS,
) -> float:
    """The organisers' masked MS-SSIM of two HU volumes already clipped to [-1024, 3071]."""
    x = np.where(inside, ct, HU_MIN) - HU_MIN  # non-negative, background exactly 0
    y = np.where(inside, sct, HU_MIN) - HU_MIN
    pads = [((MIN_SIZE - n) // 2, MIN_SIZE - n - (MIN_SIZE - n) // 2) if n < MIN_SIZE else (0, 0)
            for n in x.shape]  # fmt: skip
    m = inside
    if any(sum(p) for p in pads):  # np.pad copies even when there is nothing to add
        x, y = np.pad(x, pads, mode="edge"), np.pad(y, pads, mode="edge")
        m = np.pad(inside, pads, mode="edge")
    values = []
    for level, weight in enumerate(weights):
        ssim = ssim_level_map(x, y, weight)
        crop = (slice(CROP, -CROP),) * x.ndim
        kept = m[crop]
        values.append(float(ssim[crop][kept].mean(dtype=np.float64)) if kept.any() else np.nan)
        if level < len(weights) - 1:
            x, y, m = halve(x), halve(y), m[::2, ::2, ::2]
    return float(np.prod(np.clip(values, 0.0, 1.0)))


def ssim_level_map(
    x: np.ndarray, y: np.ndarray, weight: float, data_range: float = DATA_RANGE
) -> np.ndarray:
    """``L^w C^w S^w`` per voxel (7-voxel uniform window, sample covariance), full size.

    With ``weight=1`` and non-negative structure this is skimage's SSIM map (C3 = C2/2 folds
    ``C * S`` into ``(2 vxy + C2) / (vx + vy + C2)``).
    """
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    c3 = c2 / 2
    norm = WIN**x.ndim / (WIN**x.ndim - 1)  # sample covariance

    def mean(image: np.ndarray) -> np.ndarray:
        return uniform_filter(image, size=WIN)  # mode "reflect", as the organisers' call

    ux, uy = mean(x), mean(y)
    vx = norm * (mean(x * x) - ux * ux)
    vy = norm * (mean(y * y) - uy * uy)
    vxy = norm * (mean(x * y) - ux * uy)
    sx, sy = np.sqrt(np.clip(vx, 0, None)), np.sqrt(np.clip(vy, 0, None))
    luminance = np.clip((2 * ux * uy + c1) / (ux * ux + uy * uy + c1), 0, None)
    contrast = np.clip((2 * sx * sy + c2) / (vx + vy + c2), 0, None)
    structure = np.clip((vxy + c3) / (sx * sy + c3), 0, None)
    # L^w C^w S^w = (L C S)^w for non-negative factors: one power instead of three
    return (luminance * contrast * structure) ** weight


def halve(image: np.ndarray) -> np.ndarray:
    """2x2x2 box mean, then every second voxel: ``out[i] = (v[2i - 1] + v[2i]) / 2`` per axis
    with ``v[-1] = 0`` (what a 'same' convolution with an even kernel gives), computed directly
    at the kept voxels rather than by FFT over all of them."""
    out = image
    for axis in range(image.ndim):
        padded = np.concatenate(
            [np.zeros_like(np.take(out, [0], axis=axis)), out], axis=axis
        )  # v[-1] = 0 in front
        n = padded.shape[axis]
        odd = np.take(padded, np.arange(1, n, 2), axis=axis)  # v[2i]
        even = np.take(padded, np.arange(0, n - 1, 2), axis=axis)  # v[2i - 1]
        out = (odd + even) / 2
    return out
