"""Publishing a checkpoint as a new registry version (what ``tune`` does with its winner).

The version is assembled in a local temporary folder (the generator, its ``checkpoint.json``,
``config.yaml``, ``metrics.json``, ``winner.json``, ``MODEL_CARD.md`` and, through ``extra``, the
ensemble members), written as one immutable version (:func:`store.register`), and only then do
the aliases move: ``latest`` always, ``production`` only for an entry's first version and only
with ``auto_promote`` (``tune.registry_auto_promote``: a new entry serves at once; later
winners wait for a promotion).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hmss_ray.registry import store
from hmss_ray.registry.card import model_card
from hmss_ray.registry.load import CARD
from hmss_ray.registry.names import DEFAULT_ALIAS, entry_name

LATEST = "latest"


def stage_entry(
    checkpoint_dir: str | Path,
    directory: Path,
    name: str,
    *,
    metrics: dict[str, Any],
    winner: dict[str, Any],
    facts: dict[str, Any] | None = None,
) -> Path:
    """Write a version's files into the local ``directory``; returns it."""
    from hmss_ray.models import checkpoint as ckpt

    meta = ckpt.read_meta(checkpoint_dir)
    directory.mkdir(parents=True, exist_ok=True)
    for filename in ckpt.GENERATOR_FILES:
        shutil.copy2(Path(checkpoint_dir) / filename, directory / filename)
    (directory / "config.yaml").write_text(meta.cfg.to_yaml())
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    (directory / "winner.json").write_text(json.dumps(winner, indent=2, default=str))
    known = {**{k: winner.get(k) for k in ("trial_id", "search", "checkpoint", "data")},
             **(facts or {})}  # fmt: skip
    known.setdefault("data_manifest_hash", winner.get("data_manifest_hash"))
    (directory / CARD).write_text(model_card(name, meta.config, metrics, known))
    return directory


def publish(
    checkpoint_dir: str | Path,
    registry: str,
    name: str,
    *,
    metrics: dict[str, Any],
    winner: dict[str, Any],
    facts: dict[str, Any] | None = None,
    extra: Callable[[Path], Any] | None = None,
    aliases: tuple[str, ...] | None = None,
    note: str = "",
    auto_promote: bool = True,
) -> store.Version:
    """Register ``checkpoint_dir``'s generator as a new version of ``<registry>/<name>``.

    Args:
        extra: called with the staged folder before it is registered (ensemble members).
        aliases: moved to the new version; default ``latest`` (and ``production`` when the
            entry has none yet and ``auto_promote``).
    """
    entry_name(name)
    if aliases is None:
        first = auto_promote and store.get_alias(registry, name, DEFAULT_ALIAS) is None
        aliases = (LATEST, DEFAULT_ALIAS) if first else (LATEST,)
    with tempfile.TemporaryDirectory(prefix="hmss-register-") as tmp:
        staged = stage_entry(checkpoint_dir, Path(tmp) / "version", name, metrics=metrics,
                             winner=winner, facts=facts)  # fmt: skip
        if extra is not None:
            extra(staged)
        return store.register(staged, registry, name, aliases=aliases, note=note)
