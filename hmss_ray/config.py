"""One typed experiment configuration for every stage.

``ExperimentConfig`` is a tree of frozen dataclasses. It is loaded from YAML, changed with dotted
overrides (``loss.lambda_l1=5``), validated (an unknown key or a bad value raises ``ConfigError``
naming the dotted key and what is allowed), turned into a plain dict for Ray workers, checkpoints
and the registry, and rebuilt from that dict. It imports nothing of the package.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names the dotted key."""


@dataclass(frozen=True)
class DataConfig:
    """What a slice is and how cases are split.

    Intensities: CT HU is clipped to ``hu_range`` and mapped to [-1, 1]; MR is normalised per
    volume between the ``mr_percentiles`` inside the mask.
    """

    regions: tuple[str, ...] = ("brain", "pelvis")
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


@dataclass(frozen=True)
class AugmentConfig:
    """Paired augmentation: geometry on MR, CT and mask alike; intensity on the MR only."""

    enabled: bool = True
    flip_prob: float = 0.5
    rotate_degrees: float = 10.0
    rotate_prob: float = 0.5
    scale_range: float = 0.05
    bias_field_prob: float = 0.3
    gamma_prob: float = 0.3
    noise_prob: float = 0.3
    noise_std: float = 0.02


@dataclass(frozen=True)
class ModelConfig:
    """Widths and depths of the cascade (pix2pixHD-style global generator + local enhancer)."""

    lrg_channels: int = 64
    lrg_downsamples: int = 3
    lrg_res_blocks: int = 9
    hrg_channels: int = 32
    hrg_res_blocks: int = 3
    norm: Literal["instance", "batch", "none"] = "instance"
    disc_channels: int = 64
    disc_layers: int = 3
    disc_scales: int = 2
    spectral_norm: bool = False


@dataclass(frozen=True)
class LossConfig:
    """Loss weights by name; a weight of 0 switches a term off."""

    adversarial: Literal["lsgan", "hinge", "bce"] = "lsgan"
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


@dataclass(frozen=True)
class OptimConfig:
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    g_steps_per_d: int = 1


@dataclass(frozen=True)
class TrainConfig:
    """The staged schedule (LRG alone, HRG with LRG frozen, joint) and the Ray Train resources."""

    batch_size: int = 8
    stage_epochs: tuple[int, int, int] = (2, 2, 6)
    steps_per_epoch: int | None = None
    val_max_slices: int | None = None
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 1.0
    mixed_precision: Literal["auto", "bf16", "off"] = "auto"
    keep_checkpoints: int = 2
    max_failures: int = 1
    log_every: int = 10
    seed: int = 0
    init_from: str | None = None
    shuffle_buffer: int = 256


@dataclass(frozen=True)
class TuneConfig:
    """Search settings: ``score = w_ssim * (1 - SSIM) + w_fid * FID / fid_ref``, minimised."""

    num_samples: int = 8
    max_concurrent_trials: int = 1
    w_ssim: float = 1.0
    w_fid: float = 1.0
    fid_ref: float = 100.0
    multi_objective: bool = False
    sampler: Literal["tpe", "random"] = "tpe"
    asha_grace_period: int = 1
    asha_reduction_factor: int = 2
    seed: int = 0
    registry: str = "outputs/registry"
    name: str = "hmss"


@dataclass(frozen=True)
class MetricsConfig:
    bone_threshold_hu: float = 250.0
    inception_weights: str | None = None
    vgg_weights: str | None = None  # VGG16 file for the VGG distance; else the torch hub cache
    fid_max_slices: int = 512


@dataclass(frozen=True)
class ServeConfig:
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


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "hmss"
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)

    def __post_init__(self) -> None:
        _check_ranges(self)

    @property
    def in_channels(self) -> int:
        """MR channels a slice carries: the slice plus ``context_slices`` on each side (2.5D)."""
        return 2 * self.data.context_slices + 1

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ExperimentConfig:
        return _build(cls, data or {}, "")

    def replace(self, overrides: dict[str, Any]) -> ExperimentConfig:
        """A copy with dotted overrides applied (``{"loss.lambda_l1": 5}``), validated."""
        tree = self.to_dict()
        for key, value in overrides.items():
            _set_dotted(tree, key, value)
        return ExperimentConfig.from_dict(tree)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())


def load_config(
    path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None
) -> ExperimentConfig:
    """Read YAML (or the defaults when ``path`` is None) and apply ``KEY=VALUE`` overrides."""
    tree: dict[str, Any] = {}
    if path is not None:
        text = Path(path).read_text()
        loaded = yaml.safe_load(text)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        tree = loaded or {}
    cfg = ExperimentConfig.from_dict(tree)
    return cfg.replace(parse_overrides(overrides)) if overrides else cfg


def parse_overrides(overrides: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    """``["loss.lambda_l1=5"]`` -> ``{"loss.lambda_l1": 5}``; values are parsed as YAML."""
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like section.key=value")
        parsed[key.strip()] = yaml.safe_load(raw)
    return parsed


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"section.key": value}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def config_diff(cfg: ExperimentConfig, base: ExperimentConfig | None = None) -> dict[str, Any]:
    """Dotted keys whose value differs from ``base`` (the defaults), with the new value."""
    ours, theirs = flatten(cfg.to_dict()), flatten((base or ExperimentConfig()).to_dict())
    return {k: v for k, v in ours.items() if theirs.get(k) != v}


def describe(cfg: ExperimentConfig) -> str:
    """Resolved config as YAML plus the keys that differ from the defaults, for logs."""
    diff = config_diff(cfg)
    lines = [f"  {k} = {v!r}" for k, v in sorted(diff.items())] or ["  (all defaults)"]
    return "Changed from defaults:\n" + "\n".join(lines)


def stable_hash(obj: Any) -> str:
    """Short sha256 of a JSON-able object in canonical form (used for data and config hashes)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def data_hash(cfg: ExperimentConfig) -> str:
    """Hash of everything that changes what the shards contain."""
    return stable_hash(cfg.to_dict()["data"])


# --- building and validating -------------------------------------------------------------


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise ConfigError(f"unknown config key {key!r}: {where!r} is not a section")
        node = child
    if parts[-1] not in node:
        sections = ".".join(parts[:-1]) or "the top level"
        raise ConfigError(f"unknown config key {key!r}; {sections} has: {', '.join(sorted(node))}")
    node[parts[-1]] = value


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = prefix.rstrip(".") or "the top level"
        raise ConfigError(
            f"unknown config key {prefix + unknown[0]!r}; {where} has: {', '.join(sorted(names))}"
        )
    kwargs = {name: _coerce(hints[name], value, prefix + name) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except TypeError as exc:  # pragma: no cover - dataclass signature mismatch
        raise ConfigError(f"{prefix}: {exc}") from exc


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key} = {value!r} is not allowed; choose one of: {list(args)}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key} must have {len(args)} items, got {list(value)!r}")
        pairs = enumerate(zip(args, value, strict=True))
        return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in pairs)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key} {message}")


def _check_ranges(cfg: ExperimentConfig) -> None:
    d, m, t = cfg.data, cfg.model, cfg.train
    _require(d.hu_range[0] < d.hu_range[1], "data.hu_range", "must be [low, high] with low < high")
    lo, hi = d.mr_percentiles
    _require(0 <= lo < hi <= 100, "data.mr_percentiles", "must satisfy 0 <= low < high <= 100")
    _require(d.image_size >= 16, "data.image_size", "must be at least 16")
    _require(d.context_slices >= 0, "data.context_slices", "must be >= 0")
    _require(0 <= d.min_mask_fraction < 1, "data.min_mask_fraction", "must be in [0, 1)")
    _require(
        abs(sum(d.split_fractions) - 1) < 1e-6 and min(d.split_fractions) >= 0,
        "data.split_fractions",
        "must be three non-negative fractions (train, val, test) that sum to 1",
    )
    for region in d.regions:
        _require(region in ("brain", "pelvis"), "data.regions", "items must be brain or pelvis")
    _require(d.slices_per_shard >= 1, "data.slices_per_shard", "must be >= 1")
    factor = 2 ** (m.lrg_downsamples + 1)
    _require(
        d.image_size % factor == 0,
        "data.image_size",
        f"must be divisible by {factor} (2 ** (model.lrg_downsamples + 1))",
    )
    for key in ("lrg_channels", "hrg_channels", "disc_channels", "disc_layers", "disc_scales"):
        _require(getattr(m, key) >= 1, f"model.{key}", "must be >= 1")
    _require(m.disc_scales <= 3, "model.disc_scales", "must be 1, 2 or 3")
    _require(t.batch_size >= 1, "train.batch_size", "must be >= 1")
    _require(
        min(t.stage_epochs) >= 0 and sum(t.stage_epochs) > 0,
        "train.stage_epochs",
        "must be three epoch counts >= 0, not all 0",
    )
    _require(t.num_workers >= 1, "train.num_workers", "must be >= 1")
    _require(t.cpus_per_worker > 0, "train.cpus_per_worker", "must be > 0")
    _require(cfg.optim.g_steps_per_d >= 1, "optim.g_steps_per_d", "must be >= 1")
    _require(cfg.tune.fid_ref > 0, "tune.fid_ref", "must be > 0")
    _require(
        cfg.serve.min_replicas <= cfg.serve.max_replicas,
        "serve.min_replicas",
        "must be <= serve.max_replicas",
    )
