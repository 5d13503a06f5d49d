"""Config sections of the data: which cases, on which grid (the geometry contract), and their
augmentation. Each frozen dataclass checks its own ranges (see :mod:`hmss_ray.config.tree`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from hmss_ray.config.tree import Section


class Edition(StrEnum):
    """The SynthRAD release a region comes from: its layout, file format and challenge metrics."""

    SYNTHRAD2023 = "2023"  # Task1/{brain,pelvis}/1BA001/*.nii.gz; MAE, PSNR, SSIM
    SYNTHRAD2025 = "2025"  # Task1/{HN,TH,AB}/1HNA001/*.mha; MAE, PSNR, MS-SSIM, Dice, HD95


# A region is named as its release names its folder under Task1/: no table maps the names.
REGION_EDITIONS = {
    "brain": Edition.SYNTHRAD2023,
    "pelvis": Edition.SYNTHRAD2023,
    "HN": Edition.SYNTHRAD2025,  # head and neck
    "TH": Edition.SYNTHRAD2025,  # thorax
    "AB": Edition.SYNTHRAD2025,  # abdomen
}
REGIONS = tuple(REGION_EDITIONS)


class SegmentationMethod(StrEnum):
    """How SynthRAD2025's Dice and HD95 segment the CT and the sCT (``evaluate --segmentation``)."""

    AUTO = "auto"  # TotalSegmentator when installed with its weights, else thresholds
    TOTALSEGMENTATOR = "totalsegmentator"
    THRESHOLDS = "thresholds"


# The geometry contract: the voxel spacing (mm, x y z in data.orientation) each region's network
# works at. Adding a region's contract is one line here (README "The geometry contract").
REGION_SPACING: dict[str, tuple[float, float, float]] = {
    "brain": (1.0, 1.0, 1.0),  # SynthRAD2023's brain grid
    "pelvis": (2.0, 2.0, 2.5),  # a 500 mm wide body fits the 256 canvas (512 mm); z as SynthRAD
    # SynthRAD2025 (1x1x3 mm data): the pelvis rule in-plane (head-neck scans reach the shoulders,
    # thorax and abdomen bodies are 350-500 mm wide: 512 mm at 256 px), their slice spacing
    "HN": (2.0, 2.0, 3.0),
    "TH": (2.0, 2.0, 3.0),
    "AB": (2.0, 2.0, 3.0),
}


def _default_spacing() -> dict[str, tuple[float, float, float]]:
    return {region: REGION_SPACING[region] for region in REGIONS if region in REGION_SPACING}


def _axial_axcodes(codes: str) -> bool:
    """Three axis codes, one of each pair (L/R, P/A, I/S), the third I or S (axial slices)."""
    pairs = ("LR", "PA", "IS")
    used = sorted(i for c in codes for i, pair in enumerate(pairs) if c in pair)
    return len(codes) == 3 and used == [0, 1, 2] and codes[2] in "IS"


@dataclass(frozen=True)
class DataConfig(Section):
    """What a slice is and how cases are split.

    Intensities: CT HU is clipped to ``hu_range`` and mapped to [-1, 1]; MR is normalised per
    volume between the ``mr_percentiles`` inside the mask.

    Geometry (the contract, :mod:`hmss_ray.io.geometry`): every case is reoriented to
    ``orientation`` (axial slices along the third axis) and resampled to ``spacing[region]`` mm;
    the slices are ``image_size`` square around the body, and a case losing more than
    ``max_body_loss`` of its body voxels to that canvas is skipped.
    """

    SECTION = "data"
    # regions prepared and trained on, named as their release's folders under Task1/
    regions: tuple[str, ...] = REGIONS
    # CT HU clipped to this range and mapped linearly to [-1, 1] (SynthRAD's range)
    hu_range: tuple[float, float] = (-1024.0, 3000.0)
    # MR mapped to [-1, 1] between these percentiles inside the body mask
    mr_percentiles: tuple[float, float] = (0.5, 99.5)
    image_size: int = 256  # square slice canvas (px) cut around the body on the contract grid
    context_slices: int = 0  # 2.5D: k neighbouring MR slices on each side, 2k+1 MR channels
    # axial slices with less body than this share of the largest are dropped
    min_mask_fraction: float = 0.05
    # train, val, test shares of the patients (split by patient)
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_seed: int = 0  # seed of the patient split (stratified by region and centre)
    # cap on training slices, evenly spaced along each body (null: all)
    max_train_slices: int | None = None
    # keep as many training patients per centre as the smallest centre has
    balance_centres: bool = False
    slices_per_shard: int = 256  # slices per Parquet shard file
    max_ct_hu: float = 4000.0  # a CT above this HU is refused as implausible
    min_ct_hu: float = -2048.0  # a CT below this HU is refused as implausible
    orientation: str = "RAS"  # axis codes of the contract grid the network works in (axial slices)
    # voxel size (mm) of each region's contract grid, along data.orientation
    spacing: dict[str, tuple[float, float, float]] = field(default_factory=_default_spacing)
    max_body_loss: float = 0.0  # share of a case's body voxels that may fall outside the canvas

    def __post_init__(self) -> None:
        self.require("regions", len(self.regions) > 0, "needs at least one region")
        for region in self.regions:
            self.require("regions", region in REGIONS, f"items must be one of {list(REGIONS)}")
            self.require("spacing", region in self.spacing,
                         f"has no entry for region {region!r}: add data.spacing.{region}: "
                         "[x, y, z] (mm)")  # fmt: skip
        for region, mm in self.spacing.items():
            self.require("spacing", region in REGIONS, f"keys must be regions of {list(REGIONS)}")
            self.require("spacing", min(mm) > 0, f"region {region!r}: every spacing must be > 0 mm")
        self.require("orientation", _axial_axcodes(self.orientation),
                     "must be 3 axis codes, one of L/R, P/A and I/S each, the third I or S "
                     "(axial slices), e.g. RAS or LPS")  # fmt: skip
        self.require("max_body_loss", 0 <= self.max_body_loss < 1, "must be in [0, 1)")
        self.require(
            "hu_range", self.hu_range[0] < self.hu_range[1], "must be [low, high], low < high"
        )
        lo, hi = self.mr_percentiles
        self.require("mr_percentiles", 0 <= lo < hi <= 100, "must satisfy 0 <= low < high <= 100")
        self.at_least(16, "image_size")
        self.non_negative("context_slices")
        self.require("min_mask_fraction", 0 <= self.min_mask_fraction < 1, "must be in [0, 1)")
        fractions = self.split_fractions
        self.require(
            "split_fractions",
            abs(sum(fractions) - 1) < 1e-6 and min(fractions) >= 0,
            "must be three non-negative fractions (train, val, test) that sum to 1",
        )
        self.optional_at_least(1, "max_train_slices")
        self.at_least(1, "slices_per_shard")
        self.require("max_ct_hu", self.min_ct_hu < self.max_ct_hu, "must be > data.min_ct_hu")


@dataclass(frozen=True)
class AugmentConfig(Section):
    """Paired augmentation: geometry on MR, CT and mask alike; intensity on the MR only."""

    SECTION = "augment"
    enabled: bool = True  # paired augmentation of training slices (never of validation)
    flip_prob: float = 0.5  # left-right flip of MR, CT and mask together
    rotate_degrees: float = 10.0  # largest in-plane rotation, either way
    rotate_prob: float = 0.5  # probability of a rotation and scale draw
    scale_range: float = 0.05  # zoom by up to this fraction, either way
    bias_field_prob: float = 0.3  # smooth multiplicative bias field on the MR only
    gamma_prob: float = 0.3  # gamma contrast change on the MR only
    noise_prob: float = 0.3  # Gaussian noise on the MR only
    noise_std: float = 0.02  # standard deviation of that noise, on the [-1, 1] scale

    def __post_init__(self) -> None:
        self.probability("flip_prob", "rotate_prob", "bias_field_prob", "gamma_prob", "noise_prob")
        self.require("rotate_degrees", 0 <= self.rotate_degrees <= 180, "must be in [0, 180]")
        self.require("scale_range", 0 <= self.scale_range < 1, "must be in [0, 1)")
        self.non_negative("noise_std")
