"""What a training run was started with, so that ``train --name <existing>`` cannot mix runs.

Ray Train resumes a run found by name from its latest checkpoint, with the config of the command
that resumes. Each new run writes ``<storage>/<name>/hmss_run.json`` (the data's manifest hash and
the flattened config); a resume whose own differ is refused with the differences named, before
anything of the old run is touched. The search (:mod:`hmss_ray.tune.identity`) compares configs
the same way, through :func:`config_differences`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hmss_ray import storage
from hmss_ray.config import ExperimentConfig, UserError
from hmss_ray.config.tree import flatten

FILE = "hmss_run.json"
# where the run's results go and how a model is served, not what is trained: a resume may change
MAY_CHANGE = ("tune.", "serve.", "io.", "inference.", "train.max_failures")
SHOWN = 4


class RunMismatch(UserError):
    """A resume under a name whose run was started with other data or config."""


def config_differences(
    before: dict[str, Any], after: dict[str, Any], may_change: Sequence[str]
) -> list[str]:
    """``"key: old -> new"`` for each flattened key that differs and may not change."""
    return [
        f"{key}: {before.get(key)} -> {after.get(key)}"
        for key in sorted(set(before) | set(after))
        if not key.startswith(tuple(may_change)) and before.get(key) != after.get(key)
    ]


def identity(cfg: ExperimentConfig, data_hash: str) -> dict[str, Any]:
    ident = {"data_manifest_hash": data_hash, "config": flatten(cfg.to_dict())}
    return json.loads(json.dumps(ident, default=str))  # as it reads back from the file


def check_or_record(run_uri: str, ident: dict[str, Any], name: str) -> bool:
    """Record a new run's identity, or refuse a resume with another; True when resuming."""
    uri = storage.join(run_uri, FILE)
    if not storage.exists(uri):
        if storage.listdir(run_uri):
            raise RunMismatch(
                f"{run_uri} holds files but no {FILE}: not a run this command started (or one "
                "from before identities were recorded); give this run a new --name"
            )
        storage.write_json(uri, ident)
        return False
    old = storage.read_json(uri)
    found = []
    if old.get("data_manifest_hash") != ident["data_manifest_hash"]:
        found.append(f"data manifest hash {old.get('data_manifest_hash')} -> "
                     f"{ident['data_manifest_hash']}")  # fmt: skip
    found += config_differences(old.get("config", {}), ident["config"], MAY_CHANGE)
    if found:
        more = f" (and {len(found) - SHOWN} more)" if len(found) > SHOWN else ""
        raise RunMismatch(
            f"run {name} at {run_uri} was started with other data or settings: "
            f"{'; '.join(found[:SHOWN])}{more}. A resume must train what the run trained: give "
            "this run a new --name"
        )
    return True
