"""One typed experiment configuration for every stage.

``ExperimentConfig`` is a tree of frozen dataclasses, one per section, in three modules: the
data's (:mod:`.data`), learning's (:mod:`.training`) and a trained model's use (:mod:`.inference`).
It is loaded from YAML, changed with dotted overrides (``loss.lambda_l1=5``), validated (an unknown
key or a value of the wrong type is refused while the tree is built, :mod:`.tree`; a value out of
range by the section's ``__post_init__``; either raises ``ConfigError`` naming the dotted key and
what is allowed), turned into a plain dict for Ray workers, checkpoints and the registry, and
rebuilt from that dict. It imports nothing of the package outside this folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hmss_ray.config.data import (
    REGION_EDITIONS,
    REGIONS,
    AugmentConfig,
    DataConfig,
    Edition,
    SegmentationMethod,
)
from hmss_ray.config.inference import (
    TTA,
    EnsembleSource,
    InferenceConfig,
    IOConfig,
    MetricsConfig,
    Precision,
    ServeConfig,
)
from hmss_ray.config.training import (
    AdversarialCriterion,
    GradCompression,
    LossConfig,
    MixedPrecision,
    ModelConfig,
    Norm,
    OptimConfig,
    Sampler,
    TrainConfig,
    TuneConfig,
    TuneMetric,
)
from hmss_ray.config.tree import (
    ConfigError,
    UserError,
    build,
    flatten,
    parse_choice,
    parse_overrides,
    set_dotted,
    stable_hash,
    to_plain,
)

__all__ = [
    "REGIONS",
    "REGION_EDITIONS",
    "TTA",
    "AdversarialCriterion",
    "AugmentConfig",
    "ConfigError",
    "DataConfig",
    "Edition",
    "EnsembleSource",
    "ExperimentConfig",
    "GradCompression",
    "IOConfig",
    "InferenceConfig",
    "LossConfig",
    "MetricsConfig",
    "MixedPrecision",
    "ModelConfig",
    "Norm",
    "OptimConfig",
    "Precision",
    "Sampler",
    "SegmentationMethod",
    "ServeConfig",
    "TrainConfig",
    "TuneConfig",
    "TuneMetric",
    "UserError",
    "config_diff",
    "data_hash",
    "describe",
    "flatten",
    "load_config",
    "parse_choice",
    "parse_overrides",
    "stable_hash",
]


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
    io: IOConfig = field(default_factory=IOConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ConfigError("name must not be empty")
        factor = 2 ** (self.model.lrg_downsamples + 1)
        if self.data.image_size % factor:
            raise ConfigError(
                f"data.image_size = {self.data.image_size} is not allowed: must be divisible by "
                f"{factor} (2 ** (model.lrg_downsamples + 1))"
            )

    @property
    def in_channels(self) -> int:
        """MR channels a slice carries: the slice plus ``context_slices`` on each side (2.5D)."""
        return 2 * self.data.context_slices + 1

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ExperimentConfig:
        return build(cls, data or {})

    def replace(self, overrides: dict[str, Any]) -> ExperimentConfig:
        """A copy with dotted overrides applied (``{"loss.lambda_l1": 5}``), validated."""
        tree = self.to_dict()
        for key, value in overrides.items():
            set_dotted(tree, key, value)
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
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        tree = loaded or {}
    cfg = ExperimentConfig.from_dict(tree)
    return cfg.replace(parse_overrides(overrides)) if overrides else cfg


def config_diff(cfg: ExperimentConfig, base: ExperimentConfig | None = None) -> dict[str, Any]:
    """Dotted keys whose value differs from ``base`` (the defaults), with the new value."""
    ours, theirs = flatten(cfg.to_dict()), flatten((base or ExperimentConfig()).to_dict())
    return {k: v for k, v in ours.items() if theirs.get(k) != v}


def describe(cfg: ExperimentConfig) -> str:
    """The keys that differ from the defaults, for logs."""
    diff = config_diff(cfg)
    lines = [f"  {k} = {v!r}" for k, v in sorted(diff.items())] or ["  (all defaults)"]
    return "Changed from defaults:\n" + "\n".join(lines)


def data_hash(cfg: ExperimentConfig) -> str:
    """Hash of everything that changes what the shards contain."""
    return stable_hash(cfg.to_dict()["data"])
