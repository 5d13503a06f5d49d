"""Paired augmentation with MONAI dictionary transforms (no Ray here).

Geometry (flips, rotation, small scale) is drawn once per sample and applied identically to the MR,
the CT and the mask, so the pair stays registered. Intensity changes (bias field, gamma, noise)
touch the MR only: the CT is the target in Hounsfield units and must not be distorted.
"""

from __future__ import annotations

import math

import numpy as np
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandAffined,
    RandBiasFieldd,
    RandFlipd,
    RandGaussianNoised,
)

from hmss_ray.config import AugmentConfig

PAIRED_KEYS = ("mr", "ct", "mask")


def build_augmentation(cfg: AugmentConfig, seed: int | None = None) -> Compose:
    """A MONAI ``Compose`` over dicts of (C, H, W) arrays with keys mr, ct, mask."""
    keys = list(PAIRED_KEYS)
    radians = math.radians(cfg.rotate_degrees)
    transforms = [
        RandFlipd(keys=keys, prob=cfg.flip_prob, spatial_axis=0),
        RandFlipd(keys=keys, prob=cfg.flip_prob, spatial_axis=1),
        RandAffined(
            keys=keys,
            prob=cfg.rotate_prob,
            rotate_range=(radians,),
            scale_range=(cfg.scale_range, cfg.scale_range),
            mode=("bilinear", "bilinear", "nearest"),
            # border, not zeros: 0 in [-1, 1] space is ~1000 HU, while the crop edge is air
            padding_mode="border",
        ),
        # intensity transforms see the MR shifted to [0, 2] (see augment_sample): a bias field
        # multiplies, and a multiplicative field on values around 0 would flip contrast
        RandBiasFieldd(keys=["mr"], prob=cfg.bias_field_prob, coeff_range=(0.0, 0.3)),
        RandAdjustContrastd(keys=["mr"], prob=cfg.gamma_prob, gamma=(0.7, 1.5)),
        RandGaussianNoised(keys=["mr"], prob=cfg.noise_prob, std=cfg.noise_std),
    ]
    compose = Compose(transforms)
    if seed is not None:
        compose.set_random_state(seed=seed)
    return compose


def augment_sample(sample: dict[str, np.ndarray], transform: Compose) -> dict[str, np.ndarray]:
    """Augment one (C, H, W) sample; returns float32 arrays, MR and CT clipped to [-1, 1]."""
    data = {
        "mr": sample["mr"].astype(np.float32) + 1.0,  # [-1, 1] -> [0, 2] for the intensity ops
        "ct": sample["ct"].astype(np.float32),
        "mask": sample["mask"].astype(np.float32),
    }
    out = transform(data)
    mr = np.asarray(out["mr"], dtype=np.float32) - 1.0
    return {
        "mr": np.clip(mr, -1.0, 1.0),
        "ct": np.clip(np.asarray(out["ct"], dtype=np.float32), -1.0, 1.0),
        "mask": (np.asarray(out["mask"], dtype=np.float32) > 0.5).astype(np.float32),
    }


def augment_batch(batch: dict[str, np.ndarray], transform: Compose) -> dict[str, np.ndarray]:
    """Augment every sample of a batch of (N, C, H, W) arrays; other keys pass through."""
    samples = [
        augment_sample({k: batch[k][i] for k in PAIRED_KEYS}, transform)
        for i in range(len(batch["mr"]))
    ]
    out = dict(batch)
    for key in PAIRED_KEYS:
        out[key] = np.stack([s[key] for s in samples]) if samples else batch[key]
    return out


class BatchAugmenter:
    """Callable for ``Dataset.map_batches`` (a class so each Ray actor/task builds it once)."""

    def __init__(self, cfg: AugmentConfig, seed: int | None = None) -> None:
        self.transform = build_augmentation(cfg, seed)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return augment_batch(batch, self.transform)
