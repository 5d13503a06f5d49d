"""The experiment configs and search spaces shipped in the package, found by name or old path.

``hmss_ray/configs/*.yaml`` and ``hmss_ray/tune_spaces/*.yaml`` are package data, read through
:mod:`importlib.resources`, so a wheel install has them. A command's ``--config`` (and tune's
``--space``) takes a file, a packaged name (``brain``, ``demo``) or an old checkout path
(``configs/brain.yaml``, ``tune_spaces/demo.yaml``): an existing file always wins.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from hmss_ray.config import UserError

CONFIGS, SPACES = "configs", "tune_spaces"


def packaged(kind: str) -> list[str]:
    """Names of the packaged YAML files of ``kind`` (``"configs"`` or ``"tune_spaces"``)."""
    folder = resources.files("hmss_ray") / kind
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def find(kind: str, name: str | Path) -> Path:
    """The file ``name`` names: itself when it exists, else the packaged ``<kind>/<stem>.yaml``
    when ``name`` is a bare name or a path inside a ``configs``/``tune_spaces`` folder."""
    path = Path(name)
    if path.is_file():  # a folder of the same name (say the demo's output, demo/) does not count
        return path
    bare = len(path.parts) == 1 and path.suffix in ("", ".yaml")
    if bare or path.parent.name == kind:
        stem = path.name[:-5] if path.name.endswith(".yaml") else path.name
        candidate = resources.files("hmss_ray") / kind / f"{stem}.yaml"
        if candidate.is_file():
            return Path(str(candidate))
    raise UserError(
        f"{name}: no such file, nor a packaged one (packaged: {', '.join(packaged(kind))})"
    )


def config_path(name: str | Path | None) -> Path | None:
    """An experiment config file by path or packaged name; None stays None (the defaults)."""
    return None if name is None else find(CONFIGS, name)


def space_path(name: str | Path) -> Path:
    """A search space file by path or packaged name."""
    return find(SPACES, name)
