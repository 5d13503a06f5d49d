"""The sections of ``ExperimentConfig``: frozen dataclasses, each checking its own ranges.

A value of the wrong type is refused while the tree is built (:mod:`.tree`); a value of the right
type outside its range is refused by the section's ``__post_init__``, with the dotted key, the
value and what is allowed. Choices are ``StrEnum`` members (their YAML form is the plain string).
"""

from __future__ import annotations

import re
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


# Ray's own resources: none of them stands for an accelerator
RAY_BUILTIN_RESOURCES = ("CPU", "memory", "object_store_memory")
RESOURCE_NAME = re.compile(r"[A-Za-z][\w.\-/]*")
MLFLOW_SCHEMES = ("file", "sqlite", "http", "https", "postgresql", "mysql", "databricks")


class Norm(StrEnum):
    """Normalisation after each convolution."""

    INSTANCE = "instance"
    BATCH = "batch"
    NONE = "none"


class AdversarialCriterion(StrEnum):
    """How the discriminator's logits are turned into losses."""

    LSGAN = "lsgan"  # least squares (pix2pixHD)
    HINGE = "hinge"
    BCE = "bce"  # binary cross-entropy on logits; real_label < 1 smooths the real target


class MixedPrecision(StrEnum):
    AUTO = "auto"  # bf16 autocast on CUDA, fp32 elsewhere
    BF16 = "bf16"
    OFF = "off"


class Precision(StrEnum):
    """The number format inference runs the generator in (``serve.precision``)."""

    FP32 = "fp32"
    BF16 = "bf16"  # bf16 autocast where the device has bf16 kernels; fp32 elsewhere (logged)


class GradCompression(StrEnum):
    """What DDP sends when it all-reduces gradients."""

    NONE = "none"  # fp32 gradients
    BF16 = "bf16"  # gradients cast to bf16 for the all-reduce, half the bytes (PyTorch's hook)


class TTA(StrEnum):
    """Test-time augmentation: the sCT is the mean, in HU, over flipped copies of the input."""

    NONE = "none"
    FLIP_LR = "flip_lr"  # the slice and its left-right mirror (2 passes)
    FLIPS = "flips"  # identity, left-right, anterior-posterior and both (4 passes)


class EnsembleSource(StrEnum):
    """Where the generators averaged at inference come from (the registry entry holds them)."""

    NONE = "none"  # the winner alone
    RUN = "run"  # the best ``ensemble_size`` checkpoints of the winner's training run
    SEARCH = "search"  # the best checkpoint of each of the top ``ensemble_size`` trials


class Sampler(StrEnum):
    TPE = "tpe"
    RANDOM = "random"


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
    regions: tuple[str, ...] = REGIONS
    hu_range: tuple[float, float] = (-1024.0, 3000.0)
    mr_percentiles: tuple[float, float] = (0.5, 99.5)
    image_size: int = 256
    context_slices: int = 0
    min_mask_fraction: float = 0.05
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_seed: int = 0
    max_train_slices: int | None = None
    balance_centres: bool = False
    slices_per_shard: int = 256
    max_ct_hu: float = 4000.0
    min_ct_hu: float = -2048.0
    orientation: str = "RAS"
    spacing: dict[str, tuple[float, float, float]] = field(default_factory=_default_spacing)
    max_body_loss: float = 0.0

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
    enabled: bool = True
    flip_prob: float = 0.5
    rotate_degrees: float = 10.0
    rotate_prob: float = 0.5
    scale_range: float = 0.05
    bias_field_prob: float = 0.3
    gamma_prob: float = 0.3
    noise_prob: float = 0.3
    noise_std: float = 0.02

    def __post_init__(self) -> None:
        self.probability("flip_prob", "rotate_prob", "bias_field_prob", "gamma_prob", "noise_prob")
        self.require("rotate_degrees", 0 <= self.rotate_degrees <= 180, "must be in [0, 180]")
        self.require("scale_range", 0 <= self.scale_range < 1, "must be in [0, 1)")
        self.non_negative("noise_std")


@dataclass(frozen=True)
class ModelConfig(Section):
    """Widths and depths of the cascade (pix2pixHD-style global generator + local enhancer)."""

    SECTION = "model"
    lrg_channels: int = 64
    lrg_downsamples: int = 3
    lrg_res_blocks: int = 9
    hrg_channels: int = 32
    hrg_res_blocks: int = 3
    norm: Norm = Norm.INSTANCE
    disc_channels: int = 64
    disc_layers: int = 3
    disc_scales: int = 2
    spectral_norm: bool = False

    def __post_init__(self) -> None:
        self.at_least(1, "lrg_channels", "hrg_channels", "disc_channels", "disc_layers")
        self.non_negative("lrg_downsamples", "lrg_res_blocks", "hrg_res_blocks")
        self.require("disc_scales", 1 <= self.disc_scales <= 3, "must be 1, 2 or 3")


@dataclass(frozen=True)
class LossConfig(Section):
    """Loss weights by name; a weight of 0 switches a term off."""

    SECTION = "loss"
    adversarial: AdversarialCriterion = AdversarialCriterion.LSGAN
    real_label: float = 1.0
    lambda_adv: float = 1.0
    lambda_l1: float = 10.0
    lambda_low: float = 5.0
    lambda_fm: float = 10.0
    lambda_perc: float = 1.0
    lambda_ssim: float = 1.0
    lambda_gp: float = 0.0
    masked_l1: bool = True
    vgg_weights: str | None = None  # VGG19 file for the perceptual loss; else the torch hub cache

    def __post_init__(self) -> None:
        self.require("real_label", 0 < self.real_label <= 1, "must be in (0, 1]")
        weights = ("lambda_adv", "lambda_l1", "lambda_low", "lambda_fm", "lambda_perc")
        self.non_negative(*weights, "lambda_ssim", "lambda_gp")
        generator = (self.lambda_adv, self.lambda_l1, self.lambda_fm, self.lambda_perc)
        self.require(
            "lambda_l1",
            max(*generator, self.lambda_ssim) > 0,
            "every generator loss weight (adv, l1, fm, perc, ssim) is 0: nothing to train",
        )


@dataclass(frozen=True)
class OptimConfig(Section):
    SECTION = "optim"
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    g_steps_per_d: int = 1
    # the last N epochs of the schedule decay both learning rates linearly towards 0 (pix2pixHD);
    # 0 keeps them constant
    lr_decay_epochs: int = 0

    def __post_init__(self) -> None:
        self.positive("lr_g", "lr_d")
        self.non_negative("lr_decay_epochs")
        for key in ("beta1", "beta2"):
            self.require(key, 0 <= getattr(self, key) < 1, "must be in [0, 1)")
        self.at_least(1, "g_steps_per_d")


@dataclass(frozen=True)
class TrainConfig(Section):
    """The staged schedule (LRG alone, HRG with LRG frozen, joint) and the Ray Train resources."""

    SECTION = "train"
    batch_size: int = 8
    stage_epochs: tuple[int, int, int] = (2, 2, 6)
    steps_per_epoch: int | None = None
    val_max_slices: int | None = None
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 1.0
    # the Ray resource a worker holds gpus_per_worker of when use_gpu is true: GPU on a real
    # cluster; a custom resource (the rehearsal's `accel`) stands in for it where there is no
    # CUDA, and the worker then computes on its CPU
    accelerator_resource: str = "GPU"
    mixed_precision: MixedPrecision = MixedPrecision.AUTO
    keep_checkpoints: int = 2
    max_failures: int = 1
    log_every: int = 10
    seed: int = 0
    init_from: str | None = None
    shuffle_buffer: int = 256
    val_every: int = 1  # validate every N epochs (and at stage ends, checkpoints, ASHA rungs)
    checkpoint_every: int = 1  # checkpoint every N epochs, and after the last
    grad_compression: GradCompression = GradCompression.NONE
    # GPU runs refuse to start without pretrained VGG/Inception weights unless this is true
    allow_random_features: bool = False

    def __post_init__(self) -> None:
        self.at_least(1, "batch_size", "num_workers", "keep_checkpoints", "log_every")
        self.at_least(1, "val_every", "checkpoint_every")
        self.require(
            "stage_epochs",
            min(self.stage_epochs) >= 0 and sum(self.stage_epochs) > 0,
            "must be three epoch counts >= 0 (lrg, hrg, joint), not all 0",
        )
        self.optional_at_least(1, "steps_per_epoch", "val_max_slices")
        self.positive("cpus_per_worker")
        self.non_negative("gpus_per_worker", "shuffle_buffer")
        self.require("gpus_per_worker", self.gpus_per_worker > 0 or not self.use_gpu,
                     "must be > 0 when train.use_gpu is true")  # fmt: skip
        self.at_least(-1, "max_failures")  # -1: retry forever (Ray's convention)
        name = self.accelerator_resource
        self.require(
            "accelerator_resource",
            bool(RESOURCE_NAME.fullmatch(name)) and name not in RAY_BUILTIN_RESOURCES,
            "must name a Ray resource such as GPU (a cloud GPU) or accel (the rehearsal's "
            f"stand-in), not one of {list(RAY_BUILTIN_RESOURCES)}",
        )

    def worker_resources(self) -> dict[str, float]:
        """What each Ray Train worker asks the scheduler (and so the autoscaler) for."""
        resources = {"CPU": self.cpus_per_worker}
        if self.use_gpu:
            resources[self.accelerator_resource] = self.gpus_per_worker
        return resources

    @property
    def cuda(self) -> bool:
        """Whether workers run on CUDA: a GPU is requested, not a stand-in for one."""
        return self.use_gpu and self.accelerator_resource == "GPU"


@dataclass(frozen=True)
class TuneConfig(Section):
    """Search settings: ``score = w_ssim * (1 - SSIM) + w_fid * FID / fid_ref``, minimised."""

    SECTION = "tune"
    num_samples: int = 8
    max_concurrent_trials: int = 1
    w_ssim: float = 1.0
    w_fid: float = 1.0
    fid_ref: float = 100.0
    multi_objective: bool = False
    sampler: Sampler = Sampler.TPE
    # epochs before ASHA's first cut; null: the end of the HRG stage (lrg + hrg epochs, at
    # least lrg + 1), so the first cut never judges an HRG that has not trained
    asha_grace_period: int | None = None
    asha_reduction_factor: int = 2
    # also stop a running trial that later arrivals push below a rung's cutoff, so that arrival
    # order does not decide the cut (hmss_ray/tune/scheduler.py); for a few concurrent trials
    asha_recheck: bool = False
    seed: int = 0
    registry: str = "outputs/registry"
    name: str = "hmss"
    # MLflow tracking (off when null): a run per trial, the winner as a model version. A
    # tracking server URI (http://...) on a cluster; sqlite:///abs/path.db or file:///abs/path
    # on one machine (the Tune driver writes it)
    mlflow_uri: str | None = None
    mlflow_experiment: str | None = None  # default: the search name

    def __post_init__(self) -> None:
        self.at_least(1, "num_samples", "max_concurrent_trials")
        self.optional_at_least(1, "asha_grace_period")
        self.at_least(2, "asha_reduction_factor")
        self.non_negative("w_ssim", "w_fid")
        self.require("w_fid", self.w_ssim + self.w_fid > 0, "w_ssim and w_fid cannot both be 0")
        self.positive("fid_ref")
        self.require("registry", bool(self.registry.strip()), "must name a path or s3:// URI")
        self.require("name", bool(self.name.strip()), "must not be empty")
        uri = self.mlflow_uri
        self.require(
            "mlflow_uri",
            uri is None or uri == "databricks" or uri.split(":", 1)[0] in MLFLOW_SCHEMES[:-1],
            f"must be null or an MLflow tracking URI with a scheme, one of {list(MLFLOW_SCHEMES)} "
            "(e.g. sqlite:////abs/mlflow.db, http://mlflow:5000)",
        )
        experiment = self.mlflow_experiment
        self.require("mlflow_experiment", experiment is None or bool(experiment.strip()),
                     "must be null (the search name) or a name")  # fmt: skip


@dataclass(frozen=True)
class MetricsConfig(Section):
    SECTION = "metrics"
    bone_threshold_hu: float = 250.0
    inception_weights: str | None = None
    vgg_weights: str | None = None  # VGG16 file for the VGG distance; else the torch hub cache
    fid_max_slices: int = 512

    def __post_init__(self) -> None:
        self.at_least(2, "fid_max_slices")  # a covariance needs two slices


@dataclass(frozen=True)
class InferenceConfig(Section):
    """Test-time augmentation and checkpoint ensembles, for the CLI, Serve and evaluation.

    Ensemble members are gathered when the search writes the registry entry (``members/``);
    every member runs every TTA pass, and the sCT is the mean in HU of all of them.
    """

    SECTION = "inference"
    tta: TTA = TTA.NONE
    ensemble: EnsembleSource = EnsembleSource.NONE
    ensemble_size: int = 3

    def __post_init__(self) -> None:
        self.require("ensemble_size", 1 <= self.ensemble_size <= 8, "must be in [1, 8]")


@dataclass(frozen=True)
class ServeConfig(Section):
    SECTION = "serve"
    host: str = "127.0.0.1"
    port: int = 8000
    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: float = 2.0
    max_ongoing_requests: int = 4
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_upload_mb: float = 512.0
    batch_slices: int = 16
    min_size: int = 8
    api_token_env: str = "HMSS_API_TOKEN"
    # the inference engine (README "Inference speed"): number format, torch.compile, and the
    # channels_last memory format for the convolutions (off by default: fp32 runs 0.87x with it
    # on a CPU and 0.79x on an H200; bf16 on a CPU gains 5 %, bench/inference_speed.py)
    precision: Precision = Precision.FP32
    compile: bool = False
    channels_last: bool = False

    def __post_init__(self) -> None:
        self.require("port", 0 <= self.port <= 65535, "must be a TCP port, 0 to 65535")
        self.non_negative("min_replicas", "num_cpus", "num_gpus")
        self.at_least(1, "max_replicas", "max_ongoing_requests", "batch_slices", "min_size")
        self.require("min_replicas", self.min_replicas <= self.max_replicas,
                     "must be <= serve.max_replicas")  # fmt: skip
        self.positive("target_ongoing_requests", "max_upload_mb")
        self.require("api_token_env", bool(self.api_token_env), "must name a variable")


@dataclass(frozen=True)
class IOConfig(Section):
    """Limits on what reading one input may cost, checked before the large allocations.

    Every reader (the commands and Serve) enforces them: a header's voxel count before its data
    is read, decompressed bytes while they are decompressed, the files of a zip or DICOM series
    before any is opened.
    """

    SECTION = "io"
    max_decompressed_mb: float = 2048.0  # gzip / zip / MetaImage data after decompression
    max_voxels: int = 2**28  # 512 x 512 x 1024; a replica needs ~40 bytes per voxel at peak
    max_files: int = 4096  # entries of a zip, files of a DICOM series
    max_file_mb: float = 64.0  # one zip entry or one DICOM file

    def __post_init__(self) -> None:
        self.positive("max_decompressed_mb", "max_file_mb")
        self.at_least(1, "max_voxels", "max_files")
        self.require("max_file_mb", self.max_file_mb <= self.max_decompressed_mb,
                     "must be <= io.max_decompressed_mb")  # fmt: skip

    @property
    def max_bytes(self) -> int:
        return int(self.max_decompressed_mb * 2**20)

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 2**20)
