"""Paired augmentation of 2D slices in NumPy/SciPy (no Ray, no torch here).

Geometry (flips, rotation, small scale) is drawn once per sample and applied identically to the MR,
the CT and the mask, so the pair stays registered. Intensity changes (bias field, gamma, noise)
touch the MR only: the CT is the target in Hounsfield units and must not be distorted.

The transforms are those of MONAI's ``RandFlipd``, ``RandAffined``, ``RandBiasFieldd``,
``RandAdjustContrastd`` and ``RandGaussianNoised`` (same parameters and distributions: MONAI's
default bias coefficient range (0, 0.1), gamma (0.7, 1.5) as configured here; the noise is added
inside the body mask only, since the background is exactly -1 at inference), written here
because Ray Data runs them in short-lived worker processes: ``import monai.transforms`` costs
8-12 s of CPU in each (it imports torch, torchvision and its networks), longer than augmenting
a whole demo epoch, and it is paid again by every new worker of every trial.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.polynomial import legendre
from scipy import ndimage

from hmss_ray.config import AugmentConfig

PAIRED_KEYS = ("mr", "ct", "mask")
BIAS_DEGREE = 3  # MONAI RandBiasField's default: a smooth field, a few bumps across the slice
BIAS_COEFF_RANGE = (0.0, 0.1)  # MONAI RandBiasField's default coeff_range
GAMMA_RANGE = (0.7, 1.5)


class Augmentation:
    """Random paired transforms of one (C, H, W) sample, drawn from one seeded generator."""

    def __init__(self, cfg: AugmentConfig, seed: int | Sequence[int] | None = None) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)

    def __call__(self, sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._flip(sample)
        out = self._affine(out)
        mr = out["mr"]
        if self.rng.random() < self.cfg.bias_field_prob:
            mr = mr * self._bias_field(mr.shape[-2:])
        if self.rng.random() < self.cfg.gamma_prob:
            mr = adjust_contrast(mr, self.rng.uniform(*GAMMA_RANGE))
        if self.rng.random() < self.cfg.noise_prob:
            std = self.rng.uniform(0.0, self.cfg.noise_std)  # as MONAI's sample_std=True
            body = out["mask"] > 0.5  # (1, H, W): the background stays as inference sees it
            noise = self.rng.normal(0.0, std, mr.shape).astype(np.float32)
            mr = mr + noise * body
        return {**out, "mr": mr.astype(np.float32, copy=False)}

    def _flip(self, sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for axis in (1, 2):  # the slice's rows, then its columns
            if self.rng.random() < self.cfg.flip_prob:
                sample = {k: np.flip(v, axis) for k, v in sample.items()}
        return sample

    def _affine(self, sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Rotation about the centre and a scale per axis; MR and CT bilinear, the mask nearest;
        outside the slice, the border value (air), not 0, which is ~1000 HU in [-1, 1]."""
        if self.rng.random() >= self.cfg.rotate_prob:
            return sample
        radians = math.radians(self.cfg.rotate_degrees)
        angle = self.rng.uniform(-radians, radians)
        scale = 1.0 + self.rng.uniform(-self.cfg.scale_range, self.cfg.scale_range, 2)
        cos, sin = math.cos(angle), math.sin(angle)
        # scipy maps each output voxel o to the input voxel matrix @ o + offset
        matrix = np.array([[cos, -sin], [sin, cos]]) / scale[None, :]
        centre = (np.array(sample["mr"].shape[-2:]) - 1) / 2.0
        offset = centre - matrix @ centre
        out = {}
        for key, value in sample.items():
            order = 0 if key == "mask" else 1  # nearest for the labels
            out[key] = np.stack([
                ndimage.affine_transform(c, matrix, offset, order=order, mode="nearest")
                for c in value
            ])  # fmt: skip
        return out

    def _bias_field(self, shape: tuple[int, int]) -> np.ndarray:
        count = len(np.tril_indices(BIAS_DEGREE + 1)[0])
        return bias_field(shape, self.rng.uniform(*BIAS_COEFF_RANGE, count))


def bias_field(shape: tuple[int, int], coefficients: np.ndarray) -> np.ndarray:
    """MONAI's RandBiasField for 2D: exp of a Legendre series over [-1, 1]^2, the products
    P_i(row) P_j(col) with j <= i <= 3 (its lower-triangular coefficient matrix)."""
    matrix = np.zeros((BIAS_DEGREE + 1, BIAS_DEGREE + 1))
    matrix[np.tril_indices(BIAS_DEGREE + 1)] = coefficients
    rows, cols = (np.linspace(-1.0, 1.0, n) for n in shape)
    return np.exp(legendre.leggrid2d(rows, cols, matrix)).astype(np.float32)


def adjust_contrast(image: np.ndarray, gamma: float) -> np.ndarray:
    """MONAI's AdjustContrast: a gamma curve over the image's own range."""
    low, span = float(image.min()), float(image.max() - image.min())
    return ((image - low) / (span + 1e-7)) ** gamma * span + low


def build_augmentation(cfg: AugmentConfig, seed: int | Sequence[int] | None = None) -> Augmentation:
    """The paired transforms of ``cfg`` over dicts of (C, H, W) arrays with keys mr, ct, mask."""
    return Augmentation(cfg, seed)


def augment_sample(sample: dict[str, np.ndarray], transform: Augmentation) -> dict[str, np.ndarray]:
    """Augment one (C, H, W) sample; returns float32 arrays, MR and CT clipped to [-1, 1]."""
    data = {
        # [-1, 1] -> [0, 2] for the intensity ops: a bias field multiplies, and a multiplicative
        # field on values around 0 would flip contrast
        "mr": sample["mr"].astype(np.float32) + 1.0,
        "ct": sample["ct"].astype(np.float32),
        "mask": sample["mask"].astype(np.float32),
    }
    out = transform(data)
    return {
        "mr": np.clip(out["mr"] - 1.0, -1.0, 1.0),
        "ct": np.clip(out["ct"], -1.0, 1.0).astype(np.float32, copy=False),
        "mask": (out["mask"] > 0.5).astype(np.float32),
    }


def augment_batch(batch: dict[str, np.ndarray], transform: Augmentation) -> dict[str, np.ndarray]:
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

    def __init__(self, cfg: AugmentConfig, seed: int | Sequence[int] | None = None) -> None:
        self.transform = build_augmentation(cfg, seed)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return augment_batch(batch, self.transform)
