"""Config sections of learning: the networks, losses, optimiser, the training run and the search.
Each frozen dataclass checks its own ranges (see :mod:`hmss_ray.config.tree`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from hmss_ray.config.tree import Section

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


class TuneMetric(StrEnum):
    """What the search minimises as ``score`` (``tune.metric``)."""

    COMBINED = "combined"  # w_mae * MAE / mae_ref + w_ssim * (1 - SSIM) + w_kid * KID / kid_ref
    MAE = "mae_hu"  # the challenges' MAE alone (body, HU, mean over patients)


class MixedPrecision(StrEnum):
    AUTO = "auto"  # bf16 autocast on CUDA, fp32 elsewhere
    BF16 = "bf16"
    OFF = "off"


class GradCompression(StrEnum):
    """What DDP sends when it all-reduces gradients."""

    NONE = "none"  # fp32 gradients
    BF16 = "bf16"  # gradients cast to bf16 for the all-reduce, half the bytes (PyTorch's hook)


class Sampler(StrEnum):
    TPE = "tpe"
    RANDOM = "random"


@dataclass(frozen=True)
class ModelConfig(Section):
    """Widths and depths of the cascade (pix2pixHD-style global generator + local enhancer)."""

    SECTION = "model"
    lrg_channels: int = 64  # width of the LRG's first convolution (doubles at each downsampling)
    lrg_downsamples: int = 3  # stride-2 convolutions of the LRG
    lrg_res_blocks: int = 9  # residual blocks of the LRG
    hrg_channels: int = 32  # width of the HRG's stem (2x this at half resolution)
    hrg_res_blocks: int = 3  # residual blocks of the HRG
    norm: Norm = Norm.INSTANCE  # normalisation after each convolution
    disc_channels: int = 64  # width of each PatchGAN's first layer (doubles up to 8x)
    disc_layers: int = 3  # stride-2 4x4 convolutions per PatchGAN
    disc_scales: int = 2  # PatchGANs, each on the pair downsampled once more
    spectral_norm: bool = False  # spectral norm on the discriminator's convolutions

    def __post_init__(self) -> None:
        self.at_least(1, "lrg_channels", "hrg_channels", "disc_channels", "disc_layers")
        self.non_negative("lrg_downsamples", "lrg_res_blocks", "hrg_res_blocks")
        self.require("disc_scales", 1 <= self.disc_scales <= 3, "must be 1, 2 or 3")


@dataclass(frozen=True)
class LossConfig(Section):
    """Loss weights by name; a weight of 0 switches a term off."""

    SECTION = "loss"
    adversarial: AdversarialCriterion = AdversarialCriterion.LSGAN  # how D's logits become losses
    real_label: float = 1.0  # D's target for real pairs (< 1: label smoothing)
    lambda_adv: float = 1.0  # weight of the adversarial term
    lambda_l1: float = 10.0  # weight of L1 to the CT (inside the mask when masked_l1)
    lambda_low: float = 5.0  # joint stage: weight of L1 of the LRG output to the downsampled CT
    lambda_fm: float = 10.0  # weight of discriminator feature matching
    lambda_perc: float = 1.0  # weight of the VGG19 perceptual loss (needs VGG19 weights on a GPU)
    lambda_ssim: float = 1.0  # weight of 1 - SSIM inside the mask
    lambda_gp: float = 0.0  # weight of a WGAN-GP gradient penalty in D's loss
    masked_l1: bool = True  # L1 inside the body mask only
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
    lr_g: float = 2e-4  # Adam learning rate of the generator
    lr_d: float = 2e-4  # Adam learning rate of the discriminator
    beta1: float = 0.5  # Adam beta1 of both
    beta2: float = 0.999  # Adam beta2 of both
    g_steps_per_d: int = 1  # generator steps per discriminator step (the notebooks used 3)
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
    batch_size: int = 8  # slices per step per worker
    # epochs of the stages: LRG alone, HRG with the LRG frozen, both
    stage_epochs: tuple[int, int, int] = (2, 2, 6)
    # cap on steps per epoch (null: the worker's share of the train split)
    steps_per_epoch: int | None = None
    val_max_slices: int | None = None  # validate on the first N validation slices (null: all)
    num_workers: int = 1  # Ray Train workers (DDP ranks)
    use_gpu: bool = False  # each worker holds gpus_per_worker of accelerator_resource
    cpus_per_worker: float = 1.0  # CPUs each worker holds (leave some to Ray Data)
    gpus_per_worker: float = 1.0  # accelerators each worker holds when use_gpu is true
    # the Ray resource a worker holds gpus_per_worker of when use_gpu is true: GPU on a real
    # cluster; a custom resource (the rehearsal's `accel`) stands in for it where there is no
    # CUDA, and the worker then computes on its CPU
    accelerator_resource: str = "GPU"
    # bf16 autocast: auto (on CUDA), bf16 or off
    mixed_precision: MixedPrecision = MixedPrecision.AUTO
    keep_checkpoints: int = 2  # best checkpoints kept, by validation score
    max_failures: int = 1  # restarts after a worker dies (-1: forever)
    log_every: int = 10  # rank 0 prints a progress line every N steps
    seed: int = 0  # seed of weights, data order and augmentation
    init_from: str | None = None  # warm start from a checkpoint or registry entry (path or s3://)
    shuffle_buffer: int = 256  # local shuffle buffer (rows), capped at one epoch
    val_every: int = 1  # validate every N epochs (and at stage ends, checkpoints, ASHA rungs)
    checkpoint_every: int = 1  # checkpoint every N epochs, and after the last
    # what DDP all-reduces: fp32 gradients or bf16
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
    """Search settings. ``score`` (minimised) is ``tune.metric``: ``combined`` is
    ``w_mae * MAE / mae_ref + w_ssim * (1 - SSIM) + w_kid * KID / kid_ref`` of the body-masked,
    per-patient validation metrics (docs/selection.md); ``mae_hu`` the challenge MAE alone."""

    SECTION = "tune"
    num_samples: int = 8  # trials of the search
    max_concurrent_trials: int = 1  # trials (Train runs) in flight at once
    # what score is: combined (the weighted terms below) or mae_hu (the challenge MAE alone)
    metric: TuneMetric = TuneMetric.COMBINED
    # weights and scales of the combined objective (docs/selection.md measures them); the KID
    # weight is small because its sampling noise at validation sizes (kid_std) is of the order
    # of the differences between trials
    w_mae: float = 1.0  # weight of MAE / mae_ref (body, HU, mean over patients) in the score
    mae_ref: float = 100.0  # MAE scale (HU) of the search score
    w_ssim: float = 1.0  # weight of 1 - SSIM (body-masked, per patient) in the search score
    w_kid: float = 0.1  # weight of KID / kid_ref (body-masked slices) in the search score
    kid_ref: float = 0.1  # KID scale of the search score
    multi_objective: bool = False  # Optuna gets (mae_hu, kid), both minimised; ASHA keeps score
    sampler: Sampler = Sampler.TPE  # Optuna sampler
    # epochs before ASHA's first cut; null: the end of the HRG stage (lrg + hrg epochs, at
    # least lrg + 1), so the first cut never judges an HRG that has not trained
    asha_grace_period: int | None = None
    asha_reduction_factor: int = 2  # ASHA keeps 1/this of the trials at each rung
    # also stop a running trial that later arrivals push below a rung's cutoff, so that arrival
    # order does not decide the cut (hmss_ray/tune/scheduler.py); for a few concurrent trials
    asha_recheck: bool = False
    seed: int = 0  # seed of the sampler
    # where the winner is written: <registry>/<entry>/ (path or s3:// you can write)
    registry: str = "outputs/registry"
    name: str = "hmss"  # search name (its state is <storage>/<name>)
    # the first version of a new registry entry also becomes its `production` alias, so that a
    # fresh entry serves at once (the demo); false: every version waits for a promotion
    # (python -m hmss_ray.registry promote), as a clinic should run it (docs/registry.md)
    registry_auto_promote: bool = True
    # MLflow tracking (off when null): a run per trial, the winner as a model version. A
    # tracking server URI (http://...) on a cluster; sqlite:///abs/path.db or file:///abs/path
    # on one machine (the Tune driver writes it)
    mlflow_uri: str | None = None
    mlflow_experiment: str | None = None  # default: the search name

    def __post_init__(self) -> None:
        self.at_least(1, "num_samples", "max_concurrent_trials")
        self.optional_at_least(1, "asha_grace_period")
        self.at_least(2, "asha_reduction_factor")
        self.non_negative("w_mae", "w_ssim", "w_kid")
        weights = self.w_mae + self.w_ssim + self.w_kid
        self.require("w_mae", weights > 0, "w_mae, w_ssim and w_kid cannot all be 0")
        self.positive("mae_ref", "kid_ref")
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
