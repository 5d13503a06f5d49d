"""Self-contained checkpoints and model-registry entries.

A checkpoint is a directory, so it is also a ``ray.train.Checkpoint``:

```
generator.safetensors       generator weights (all Serve and evaluation need)
discriminator.safetensors   discriminator weights (training only)
optim.pt                    optimiser states, loaded with torch.load(weights_only=True)
checkpoint.json             config (plain dict), stage, epoch, step, metrics, parent
```

Weights are safetensors and optimiser state is plain tensors and numbers, so loading a checkpoint
never runs code. A registry version (:mod:`hmss_ray.registry`) holds what inference needs and
nothing more: ``generator.safetensors`` and ``checkpoint.json`` (no discriminator, no optimiser
state: a fifth of a training checkpoint of the brain model), plus ``config.yaml``,
``metrics.json``, ``winner.json`` and a model card; it may live on local disk or ``s3://``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from hmss_ray import storage
from hmss_ray.config import ExperimentConfig
from hmss_ray.models.factory import build_generator, unwrap

GENERATOR_FILE = "generator.safetensors"
DISCRIMINATOR_FILE = "discriminator.safetensors"
OPTIM_FILE = "optim.pt"
META_FILE = "checkpoint.json"
GENERATOR_FILES = (GENERATOR_FILE, META_FILE)  # what inference and a registry entry need
WEIGHT_FILES = (GENERATOR_FILE, DISCRIMINATOR_FILE, META_FILE)  # a warm start: no optimiser state
# a registry version (hmss_ray.registry): these, ensemble members, and manifest.json
REGISTRY_FILES = (*GENERATOR_FILES, "config.yaml", "metrics.json", "winner.json", "MODEL_CARD.md")


@dataclass
class CheckpointMeta:
    """What a checkpoint says about itself (everything but the tensors)."""

    config: dict[str, Any]
    stage: str = "lrg"
    epoch: int = 0
    step: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    parent: str | None = None

    @property
    def cfg(self) -> ExperimentConfig:
        return ExperimentConfig.from_dict(self.config)


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in unwrap(module).state_dict().items()}


def save_checkpoint(
    directory: str | Path,
    *,
    generator: torch.nn.Module,
    cfg: ExperimentConfig,
    discriminator: torch.nn.Module | None = None,
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    stage: str = "lrg",
    epoch: int = 0,
    step: int = 0,
    metrics: dict[str, float] | None = None,
    parent: str | None = None,
) -> Path:
    """Write a checkpoint directory (local) and return its path."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    save_file(_cpu_state(generator), str(out / GENERATOR_FILE))
    if discriminator is not None:
        save_file(_cpu_state(discriminator), str(out / DISCRIMINATOR_FILE))
    if optimizers:
        torch.save({k: opt.state_dict() for k, opt in optimizers.items()}, out / OPTIM_FILE)
    meta = CheckpointMeta(cfg.to_dict(), stage, epoch, step, dict(metrics or {}), parent)
    (out / META_FILE).write_text(json.dumps(meta.__dict__, indent=2, sort_keys=True, default=float))
    return out


def read_meta(directory: str | Path) -> CheckpointMeta:
    data = json.loads((Path(directory) / META_FILE).read_text())
    return CheckpointMeta(**data)


def load_generator(
    directory: str | Path, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, CheckpointMeta]:
    """Rebuild the generator from a checkpoint directory alone (config + safetensors)."""
    directory = Path(directory)
    if not (directory / GENERATOR_FILE).exists():
        raise FileNotFoundError(f"{directory} is not a checkpoint: {GENERATOR_FILE} is missing")
    meta = read_meta(directory)
    generator = build_generator(meta.cfg)
    generator.load_state_dict(load_file(str(directory / GENERATOR_FILE)))
    return generator.to(device).eval(), meta


def load_training_state(
    directory: str | Path,
    generator: torch.nn.Module,
    discriminator: torch.nn.Module | None = None,
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
) -> CheckpointMeta:
    """Load weights (and optimiser states when present) into existing modules, in place."""
    directory = Path(directory)
    unwrap(generator).load_state_dict(load_file(str(directory / GENERATOR_FILE)))
    if discriminator is not None and (directory / DISCRIMINATOR_FILE).exists():
        unwrap(discriminator).load_state_dict(load_file(str(directory / DISCRIMINATOR_FILE)))
    if optimizers and (directory / OPTIM_FILE).exists():
        states = torch.load(directory / OPTIM_FILE, map_location="cpu", weights_only=True)
        for name, opt in optimizers.items():
            if name in states:
                opt.load_state_dict(states[name])
    return read_meta(directory)


# --- registry --------------------------------------------------------------------------------


def localize(
    uri: str, cache_root: str | Path | None = None, files: Sequence[str] | None = None
) -> Path:
    """A local directory holding ``uri``'s files: the path itself, or a cached copy of s3://.

    A registry version (``<registry>/<name>[@alias|@version]``) comes from
    :func:`hmss_ray.registry.load.open_model`: every digest checked, cached by version and digest.

    Args:
        uri: a checkpoint, a registry version, or an old flat registry entry (path or s3://).
        cache_root: where remote checkpoint copies go (default: the private model cache).
        files: copy only these names (those present), e.g. :data:`GENERATOR_FILES` to skip the
            discriminator and the optimiser states of a training checkpoint; all when None.
    """
    from hmss_ray.registry import load

    opened = load.open_model(uri)
    if opened is not None:
        return opened[0]
    if not storage.is_remote(uri):
        path = Path(storage.resolve(uri)[1])
        if not path.exists():
            raise FileNotFoundError(f"no checkpoint or registry entry at {uri}")
        return path
    wanted = "*" if files is None else ",".join(sorted(files))
    key = hashlib.sha256(f"{uri}|{wanted}".encode()).hexdigest()[:16]
    root = Path(cache_root) if cache_root else load.cache_root().parent / "checkpoints"
    target = root / key
    # a training checkpoint never changes once written; an old flat registry entry (winner.json)
    # may be replaced in place, so it is fetched again every time
    reuse = (target / GENERATOR_FILE).exists() and (target / META_FILE).exists()
    if not reuse or storage.exists(storage.join(uri, "winner.json")):
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = Path(tempfile.mkdtemp(dir=root))
        if files is None:
            storage.copy_dir(uri, str(staging))
        else:
            for name in files:
                source = storage.join(uri, name)
                if storage.exists(source):
                    (staging / name).write_bytes(storage.read_bytes(source))
        if not (staging / META_FILE).exists():
            shutil.rmtree(staging, ignore_errors=True)
            raise FileNotFoundError(f"{uri} holds no {META_FILE}: not a checkpoint")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def write_registry_entry(
    checkpoint_dir: str | Path,
    registry_uri: str,
    name: str,
    *,
    metrics: dict[str, Any],
    winner: dict[str, Any],
    **options: Any,
) -> str:
    """Register the checkpoint's generator (no discriminator, no optimiser state) with
    config.yaml, metrics.json, winner.json and a model card as a new immutable version of
    ``<registry>/<name>`` (:func:`hmss_ray.registry.entry.publish`, which takes ``options``);
    returns the URI that names exactly that version, ``<registry>/<name>@<version>``."""
    from hmss_ray.registry.entry import publish

    version = publish(checkpoint_dir, registry_uri, name, metrics=metrics, winner=winner,
                      **options)  # fmt: skip
    return f"{storage.join(registry_uri, name)}@{version.id}"


def read_registry_json(entry_uri: str, filename: str) -> dict[str, Any]:
    return storage.read_json(storage.join(entry_uri, filename))
