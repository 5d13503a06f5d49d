"""Image metrics: SynthRAD2023 and SynthRAD2025 (per patient, 3D, in HU), the 2025 geometric
metrics, slice metrics, FID and feature extractors.

``from hmss_ray.metrics import synthrad_metrics`` (2023) and ``synthrad2025_metrics`` are the
challenges' own definitions; every other module scores through this package, so report numbers
and validation numbers agree.
"""

from hmss_ray.metrics.fid import FeatureStats, fid, frechet_distance
from hmss_ray.metrics.kid import KidTerm, kid
from hmss_ray.metrics.objective import objective, objective_text
from hmss_ray.metrics.patients import PatientMetrics
from hmss_ray.metrics.segmentation import (
    CLASSES_2025,
    SegmentationMethod,
    Segmenter,
    ThresholdSegmenter,
    make_segmenter,
    overlap_metrics,
)
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
from hmss_ray.metrics.synthrad2025 import masked_ms_ssim, synthrad2025_metrics

__all__ = [
    "CLASSES_2025",
    "DATA_RANGE",
    "HU_MAX",
    "HU_MIN",
    "SSIM_CROP",
    "SSIM_WIN",
    "FeatureStats",
    "KidTerm",
    "PatientMetrics",
    "SegmentationMethod",
    "Segmenter",
    "SliceMetrics",
    "ThresholdSegmenter",
    "bone_dice",
    "fid",
    "frechet_distance",
    "kid",
    "make_segmenter",
    "masked_ms_ssim",
    "objective",
    "objective_text",
    "overlap_metrics",
    "psnr_from_mse",
    "slice_ssim",
    "ssim_map",
    "synthrad2025_metrics",
    "synthrad_metrics",
    "to_hu",
]
