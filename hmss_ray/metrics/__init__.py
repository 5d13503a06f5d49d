"""Image metrics: SynthRAD2023 (per patient, 3D, in HU), slice metrics, FID and feature extractors.

``from hmss_ray.metrics import synthrad_metrics`` is the challenge's own definition; every other
module scores through this package, so report numbers and validation numbers agree.
"""

from hmss_ray.metrics.fid import FeatureStats, fid, frechet_distance
from hmss_ray.metrics.slices import SliceMetrics, bone_dice, slice_ssim, ssim_map, to_hu
from hmss_ray.metrics.synthrad2023 import (
    DATA_RANGE,
    HU_MAX,
    HU_MIN,
    SSIM_CROP,
    SSIM_WIN,
    psnr_from_mse,
    synthrad_metrics,
)

__all__ = [
    "DATA_RANGE",
    "HU_MAX",
    "HU_MIN",
    "SSIM_CROP",
    "SSIM_WIN",
    "FeatureStats",
    "SliceMetrics",
    "bone_dice",
    "fid",
    "frechet_distance",
    "psnr_from_mse",
    "slice_ssim",
    "ssim_map",
    "synthrad_metrics",
    "to_hu",
]
