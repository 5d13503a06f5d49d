"""What a search was started with, so that resuming it by name cannot mix experiments.

A search is found by its name under ``--storage``; on a resume, Tune's trials take the config of
the command that resumes. The same name with other data or another config would therefore add
trials of a different experiment to the old one (or reprint a finished one). Each new search
writes ``<storage>/<name>/hmss_search.json`` (the data's manifest hash, the flattened config, the
search space); a resume whose own differ is refused with the differences named.
"""

from __future__ import annotations

import json
from typing import Any

from hmss_ray import storage
from hmss_ray.config import ExperimentConfig, UserError
from hmss_ray.config.tree import flatten
from hmss_ray.train.identity import config_differences
from hmss_ray.tune.space import SearchSpace

FILE = "hmss_search.json"
# where results go and how the winner is served, not what the trials train: a resume may change
MAY_CHANGE = ("tune.name", "tune.registry", "tune.mlflow_uri", "tune.mlflow_experiment",
              "serve.", "io.", "inference.")  # fmt: skip
SHOWN = 4  # differences named in the error; the rest are counted


class SearchMismatch(UserError):
    """A resume under a name whose search was started with other data, config or space."""


def identity(cfg: ExperimentConfig, space: SearchSpace, data_hash: str) -> dict[str, Any]:
    """The data's manifest hash, the flattened config and the space a search runs with."""
    ident = {
        "data_manifest_hash": data_hash,
        "config": flatten(cfg.to_dict()),
        "space": space.to_dict(),
    }
    return json.loads(json.dumps(ident, default=str))  # as it reads back from the file


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"key: old -> new"`` for each difference that a resume may not make."""
    out = []
    if old.get("data_manifest_hash") != new["data_manifest_hash"]:
        out.append(f"data manifest hash {old.get('data_manifest_hash')} -> "
                   f"{new['data_manifest_hash']}")  # fmt: skip
    out += config_differences(old.get("config", {}), new["config"], MAY_CHANGE)
    if old.get("space") != new["space"]:
        out.append(f"search space {old.get('space', {}).get('name')} -> {new['space']['name']} "
                   "(or its parameters)")  # fmt: skip
    return out


def record(search_uri: str, ident: dict[str, Any]) -> None:
    storage.write_json(storage.join(search_uri, FILE), ident)


def check_resume(search_uri: str, ident: dict[str, Any], name: str) -> None:
    """Refuse to resume ``search_uri`` with another identity; a search from before the record
    (no file) resumes as it did."""
    uri = storage.join(search_uri, FILE)
    if not storage.exists(uri):
        return
    found = differences(storage.read_json(uri), ident)
    if found:
        more = f" (and {len(found) - SHOWN} more)" if len(found) > SHOWN else ""
        raise SearchMismatch(
            f"search {name} at {search_uri} was started with other data or settings: "
            f"{'; '.join(found[:SHOWN])}{more}. A resume must run what the search ran: give "
            f"this experiment a new --name, or delete {search_uri} to start it again"
        )
