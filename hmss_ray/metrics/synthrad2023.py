"""The SynthRAD2023 image metrics, per patient, 3D, exactly as the challenge defines them.

HU range [-1024, 3000], data range 4024; MAE unclipped inside the mask; PSNR on clipped voxels
inside the mask; SSIM on the clipped volume with the outside of the mask set to -1024, shifted
by +1024, 3D skimage SSIM with its defaults, the 3-voxel border cropped from map and mask,
averaged inside the mask.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

HU_MIN, HU_MAX = -1024.0, 3000.0
DATA_RANGE = HU_MAX - HU_MIN  # 4024
SSIM_WIN = 7
SSIM_CROP = SSIM_WIN // 2  # 3 voxels: where the 7-voxel window leaves the volume


def synthrad_metrics(ct_hu: np.ndarray, sct_hu: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """``{"mae", "psnr", "ssim"}`` of one patient's volumes, SynthRAD2023 definitions.

    PSNR is ``inf`` when the clipped volumes agree exactly inside the mask.
    """
    ct = np.asarray(ct_hu, dtype=np.float64)
    sct = np.asarray(sct_hu, dtype=np.float64)
    inside = np.asarray(mask) > 0
    if ct.shape != sct.shape or ct.shape != inside.shape:
        raise ValueError(f"shapes differ: ct {ct.shape}, sct {sct.shape}, mask {inside.shape}")
    if not inside.any():
        raise ValueError("the mask is empty: no voxel to score")
    mae = float(np.abs(ct[inside] - sct[inside]).mean())  # no clipping, as the challenge does
    ct_c, sct_c = np.clip(ct, HU_MIN, HU_MAX), np.clip(sct, HU_MIN, HU_MAX)
    mse = float(np.mean((ct_c[inside] - sct_c[inside]) ** 2))
    return {
        "mae": mae,
        "psnr": psnr_from_mse(mse, DATA_RANGE),
        "ssim": _synthrad_ssim(ct_c, sct_c, inside),
    }


def _synthrad_ssim(ct: np.ndarray, sct: np.ndarray, inside: np.ndarray) -> float:
    ct = np.where(inside, ct, HU_MIN) - HU_MIN  # non-negative, background exactly 0
    sct = np.where(inside, sct, HU_MIN) - HU_MIN
    if min(ct.shape) <= 2 * SSIM_CROP:
        raise ValueError(f"volume {ct.shape} is too small for the {SSIM_WIN}-voxel SSIM window")
    _, ssim_full = structural_similarity(ct, sct, data_range=DATA_RANGE, full=True)
    crop = (slice(SSIM_CROP, -SSIM_CROP),) * ct.ndim
    kept = inside[crop]
    if not kept.any():
        raise ValueError("the mask lies entirely within 3 voxels of the border: SSIM undefined")
    return float(ssim_full[crop][kept].mean(dtype=np.float64))


def psnr_from_mse(mse: float, data_range: float) -> float:
    """skimage semantics, ``10 log10(range^2 / mse)``; ``inf`` for identical images."""
    return math.inf if mse <= 0 else 10.0 * math.log10(data_range**2 / mse)
