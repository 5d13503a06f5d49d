"""Slice metrics of [-1, 1] images (torch): the notebooks' validation metrics and bone Dice.

``SliceMetrics`` accumulates over batches: MSE on the [-1, 1] scale, per-slice SSIM (skimage 2D
defaults on [0, 1] images), PSNR and MAE in HU inside the mask, bone Dice, and optionally the VGG
feature distance and FID.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from hmss_ray.metrics.features import fid_features
from hmss_ray.metrics.fid import FeatureStats, fid
from hmss_ray.metrics.synthrad2023 import SSIM_WIN, psnr_from_mse


def to_hu(x: torch.Tensor, hu_range: Sequence[float]) -> torch.Tensor:
    """[-1, 1] -> HU; the inverse of the data layer's ``ct_to_unit`` (same linear map)."""
    lo, hi = float(hu_range[0]), float(hu_range[1])
    return (x + 1) * ((hi - lo) / 2) + lo


def ssim_map(
    x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, win_size: int = SSIM_WIN
) -> torch.Tensor:
    """SSIM map of (B, C, H, W) images, skimage semantics, valid region only.

    Uniform ``win_size`` window, K1 0.01, K2 0.03, sample covariance; returns
    (B, C, H - win_size + 1, W - win_size + 1): exactly the part skimage averages. Differentiable.
    """
    if min(x.shape[-2:]) < win_size:
        raise ValueError(f"images of {tuple(x.shape[-2:])} are smaller than the SSIM window")
    mean = lambda t: F.avg_pool2d(t, win_size, stride=1)  # noqa: E731
    ux, uy = mean(x), mean(y)
    n = win_size * win_size
    cov_norm = n / (n - 1)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def slice_ssim(ct: torch.Tensor, sct: torch.Tensor) -> torch.Tensor:
    """Per-slice SSIM (B,) of [-1, 1] images mapped to [0, 1] (data range 1), float64."""
    a, b = ((ct.double() + 1) / 2), ((sct.double() + 1) / 2)
    return ssim_map(a, b, 1.0).mean(dim=(1, 2, 3))


def bone_dice(
    ct_hu: torch.Tensor, sct_hu: torch.Tensor, mask: torch.Tensor, threshold_hu: float = 250.0
) -> float:
    """Dice of ``HU >= threshold`` inside the mask; 1.0 when neither image has bone."""
    inter, total = _bone_counts(ct_hu, sct_hu, mask, threshold_hu)
    return 1.0 if total == 0 else 2.0 * inter / total


def _bone_counts(ct_hu, sct_hu, mask, threshold_hu) -> tuple[float, float]:
    inside = mask > 0.5
    a, b = (ct_hu >= threshold_hu) & inside, (sct_hu >= threshold_hu) & inside
    return float((a & b).sum()), float(a.sum() + b.sum())


class SliceMetrics:
    """Validation metrics pooled over batches of (B, 1, H, W) slices in [-1, 1].

    ``mse`` on the [-1, 1] scale over all pixels; ``mae_hu`` and ``psnr`` (HU, data range = width
    of ``hu_range``) over pixels inside the mask; ``ssim`` the mean per-slice SSIM; ``bone_dice``
    pooled over all slices; ``perceptual`` the mean per-slice MSE of the last VGG feature map;
    ``fid`` over at most ``fid_max_slices`` slices. The optional parts are off when None.
    """

    def __init__(
        self,
        hu_range: Sequence[float],
        bone_threshold_hu: float | None = None,
        vgg: nn.Module | None = None,
        inception: nn.Module | None = None,
        fid_max_slices: int = 512,
    ) -> None:
        self.hu_scale = (float(hu_range[1]) - float(hu_range[0])) / 2  # HU per unit
        self.hu_width = 2 * self.hu_scale
        self.hu_range = hu_range
        self.bone_threshold_hu, self.vgg, self.inception = bone_threshold_hu, vgg, inception
        self.fid_max_slices = fid_max_slices
        keys = "slices pixels sq_unit inside abs_hu sq_hu ssim vgg bone_inter bone_total"
        self.sums: dict[str, float] = dict.fromkeys(keys.split(), 0.0)
        self.fid_real, self.fid_fake = FeatureStats(), FeatureStats()

    @torch.no_grad()
    def update(
        self,
        ct: torch.Tensor,
        sct: torch.Tensor,
        mask: torch.Tensor,
        fid_slices: int | None = None,
    ) -> None:
        """Add a batch; ``fid_slices``: how many of its leading slices go into FID (default: as
        many as ``fid_max_slices`` leaves room for on this accumulator)."""
        ct, sct, inside = ct.double(), sct.double(), (mask > 0.5).double()
        diff = sct - ct
        s = self.sums
        s["slices"] += ct.shape[0]
        s["pixels"] += diff.numel()
        s["sq_unit"] += float(diff.square().sum())
        s["inside"] += float(inside.sum())
        s["abs_hu"] += float((diff.abs() * inside).sum()) * self.hu_scale
        s["sq_hu"] += float((diff.square() * inside).sum()) * self.hu_scale**2
        s["ssim"] += float(slice_ssim(ct, sct).sum())
        if self.bone_threshold_hu is not None:
            counts = _bone_counts(
                to_hu(ct, self.hu_range), to_hu(sct, self.hu_range), mask, self.bone_threshold_hu
            )
            s["bone_inter"] += counts[0]
            s["bone_total"] += counts[1]
        if self.vgg is not None:
            f_ct, f_sct = self.vgg(ct.float())[-1], self.vgg(sct.float())[-1]
            s["vgg"] += float((f_ct - f_sct).double().square().mean(dim=(1, 2, 3)).sum())
        room = self.fid_max_slices - self.fid_real.n if fid_slices is None else fid_slices
        if self.inception is not None and room > 0:
            self.fid_real.update(fid_features(self.inception, ct[:room].float()))
            self.fid_fake.update(fid_features(self.inception, sct[:room].float()))

    def packed(self) -> torch.Tensor:
        """Every accumulator as one float64 vector of sums (FID statistics included): the
        accumulators of several workers merge by adding these vectors (an all-reduce)."""
        parts = [torch.tensor(list(self.sums.values()), dtype=torch.float64)]
        if self.inception is not None:
            dim = self.inception.num_features
            parts += [self.fid_real.packed(dim), self.fid_fake.packed(dim)]
        return torch.cat(parts)

    def load_packed(self, vector: torch.Tensor) -> None:
        """Replace the accumulators with those a (summed) :meth:`packed` vector holds."""
        vector = vector.detach().double().cpu()
        count = len(self.sums)
        self.sums = dict(zip(self.sums, vector[:count].tolist(), strict=True))
        if self.inception is not None:
            dim = self.inception.num_features
            size = 1 + dim + dim * dim
            self.fid_real = FeatureStats.unpacked(vector[count : count + size], dim)
            self.fid_fake = FeatureStats.unpacked(vector[count + size :], dim)

    def compute(self, prefix: str = "") -> dict[str, float]:
        s = self.sums
        if not s["slices"]:
            raise ValueError("no validation slices were seen")
        inside = s["inside"] or math.nan  # an all-background set has no HU error to report
        out = {
            "mae_hu": s["abs_hu"] / inside,
            "mse": s["sq_unit"] / s["pixels"],
            "ssim": s["ssim"] / s["slices"],
            "psnr": psnr_from_mse(s["sq_hu"] / inside, self.hu_width),
        }
        if self.bone_threshold_hu is not None:
            total = s["bone_total"]
            out["bone_dice"] = 1.0 if total == 0 else 2 * s["bone_inter"] / total
        if self.vgg is not None:
            out["perceptual"] = s["vgg"] / s["slices"]
        if self.inception is not None:
            # fewer than 2 slices leave the covariance undefined: report NaN, not a number
            enough = min(self.fid_real.n, self.fid_fake.n) >= 2
            out["fid"] = fid(self.fid_real, self.fid_fake) if enough else math.nan
        return {prefix + k: float(v) for k, v in out.items()}
