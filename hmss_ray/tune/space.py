"""Search spaces in YAML, keyed by the config's dotted paths (no Ray here).

```yaml
description: the loss weights and learning rates the notebooks tuned by hand
params:
  loss.lambda_l1: {loguniform: [3, 12]}
  optim.lr_g: {loguniform: [1.0e-4, 3.0e-4]}
  optim.g_steps_per_d: {choice: [1, 2, 3]}
  model.lrg_res_blocks: {int: [2, 9]}
  loss.lambda_ssim: {uniform: [0, 2]}
```

Every key must be a config key (an unknown one is an error that names it), and every value the
space can produce must pass config validation, checked here against the space's bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hmss_ray.config import ConfigError, ExperimentConfig, flatten

KINDS = ("uniform", "loguniform", "int", "choice")


@dataclass(frozen=True)
class Param:
    key: str
    kind: str
    values: tuple[Any, ...]

    def corners(self) -> list[Any]:
        """Values to validate the space with: every choice, every integer of a range of at most
        256, else both ends (ranges are checked by their ends: config ranges are intervals)."""
        if self.kind == "choice":
            return list(self.values)
        low, high = self.values
        if self.kind == "int" and high - low <= 256:
            return list(range(low, high + 1))
        return [low, high]


@dataclass(frozen=True)
class SearchSpace:
    name: str
    description: str
    params: tuple[Param, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "params": {p.key: {p.kind: list(p.values)} for p in self.params},
        }


def parse_space(data: dict[str, Any], name: str = "space") -> SearchSpace:
    if not isinstance(data, dict) or not isinstance(data.get("params"), dict):
        raise ConfigError(f"search space {name!r} needs a 'params' mapping of dotted keys")
    known = flatten(ExperimentConfig().to_dict())
    params = []
    for key, spec in data["params"].items():
        if key not in known:
            raise ConfigError(f"search space {name!r}: unknown config key {key!r}")
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
            raise ConfigError(
                f"search space {name!r}: {key} must be one of {{uniform|loguniform|int|choice: "
                f"[...]}}, got {spec!r}"
            )
        kind, values = next(iter(spec.items()))
        params.append(_param(name, key, kind, values))
    space = SearchSpace(name, str(data.get("description", "")), tuple(params))
    validate_space(space)
    return space


def _param(space: str, key: str, kind: str, values: Any) -> Param:
    if not isinstance(values, list) or not values:
        raise ConfigError(f"search space {space!r}: {key}: {kind} needs a non-empty list")
    if kind != "choice":
        if len(values) != 2 or not values[0] < values[1]:
            raise ConfigError(
                f"search space {space!r}: {key}: {kind} needs [low, high], low < high"
            )
        if kind == "loguniform" and values[0] <= 0:
            raise ConfigError(f"search space {space!r}: {key}: loguniform needs low > 0")
        if kind == "int" and not all(isinstance(v, int) for v in values):
            raise ConfigError(f"search space {space!r}: {key}: int needs integer bounds")
    return Param(key, kind, tuple(values))


def validate_space(space: SearchSpace, base: ExperimentConfig | None = None) -> None:
    """Each parameter's extreme values must make a valid config (errors name the key)."""
    base = base or ExperimentConfig()
    for param in space.params:
        for value in param.corners():
            try:
                base.replace({param.key: value})
            except ConfigError as exc:
                raise ConfigError(
                    f"search space {space.name!r}: {param.key}={value!r}: {exc}"
                ) from exc


def load_space(path: str | Path) -> SearchSpace:
    path = Path(path)
    return parse_space(yaml.safe_load(path.read_text()) or {}, name=path.stem)
