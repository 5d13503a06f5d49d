"""Config sections of using a trained model: metrics, inference (TTA, ensembles), Serve and file
I/O. Each frozen dataclass checks its own ranges (see :mod:`hmss_ray.config.tree`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from hmss_ray.config.tree import Section


class Precision(StrEnum):
    """The number format inference runs the generator in (``serve.precision``)."""

    FP32 = "fp32"
    BF16 = "bf16"  # bf16 autocast where the device has bf16 kernels; fp32 elsewhere (logged)


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


@dataclass(frozen=True)
class MetricsConfig(Section):
    SECTION = "metrics"
    bone_threshold_hu: float = 250.0  # HU at and above which a voxel is bone (bone Dice)
    # InceptionV3 file for KID (validation) and FID (evaluation); else the torch hub cache
    inception_weights: str | None = None
    vgg_weights: str | None = None  # VGG16 file for the VGG distance; else the torch hub cache
    # KID (validation) over at most this many of the split's first slices
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
    tta: TTA = TTA.NONE  # test-time flips averaged in HU
    # generators averaged at inference: none, the run's best, the search's best
    ensemble: EnsembleSource = EnsembleSource.NONE
    ensemble_size: int = 3  # ensemble members, the winner first

    def __post_init__(self) -> None:
        self.require("ensemble_size", 1 <= self.ensemble_size <= 8, "must be in [1, 8]")


@dataclass(frozen=True)
class ServeConfig(Section):
    SECTION = "serve"
    host: str = "127.0.0.1"  # address the endpoint binds (127.0.0.1: this machine only)
    port: int = 8000  # HTTP port
    min_replicas: int = 1  # autoscaling: fewest replicas
    max_replicas: int = 1  # autoscaling: most replicas
    target_ongoing_requests: float = 2.0  # autoscaling: requests per replica it aims at
    max_ongoing_requests: int = 4  # requests a replica holds at once; more wait in a queue
    num_cpus: float = 1.0  # CPUs per replica (torch threads)
    num_gpus: float = 0.0  # GPUs per replica
    max_upload_mb: float = 512.0  # largest HTTP body (413 above it)
    batch_slices: int = 16  # slices per generator batch (peak memory is one batch)
    min_size: int = 8  # smallest MR side in voxels (422 below it)
    # variable holding the bearer token; unset on the replica: no token
    api_token_env: str = "HMSS_API_TOKEN"
    # the inference engine (README "Inference speed"): number format, torch.compile, and the
    # channels_last memory format for the convolutions (off by default: fp32 runs 0.87x with it
    # on a CPU and 0.79x on an H200; bf16 on a CPU gains 5 %, bench/inference_speed.py)
    precision: Precision = Precision.FP32
    compile: bool = False  # torch.compile the generator (falls back to eager, logged)
    channels_last: bool = False  # channels_last memory format for the convolutions

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
    # data elements pydicom may parse in one DICOM file, nested sequences included (a real MR
    # slice has a few hundred to ~2,000; pydicom spends ~15 us and ~200 bytes on each, so a file
    # of 524k empty elements would cost 8 s and 100 MiB); refused at this count
    max_dicom_elements: int = 10000

    def __post_init__(self) -> None:
        self.positive("max_decompressed_mb", "max_file_mb")
        self.at_least(1, "max_voxels", "max_files", "max_dicom_elements")
        self.require("max_file_mb", self.max_file_mb <= self.max_decompressed_mb,
                     "must be <= io.max_decompressed_mb")  # fmt: skip

    @property
    def max_bytes(self) -> int:
        return int(self.max_decompressed_mb * 2**20)

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 2**20)
