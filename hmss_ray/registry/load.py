"""From a model URI to a verified local copy: resolve the alias, check every digest, cache.

:func:`resolve` turns ``<registry>/<name>[@alias|@version]`` into a :class:`Resolved` version (or
None for what is not a versioned entry: a checkpoint folder or an old flat entry, which load as
before). :func:`fetch` gives a local folder of the version whose files match its manifest: a
local registry is checked in place; a remote one is copied into a private cache (mode 0700, in
the user's cache folder, never a shared ``/tmp`` path) under ``<name>/<version>-<digest>``, and
the copy is checked again at every load, so a changed or half-written copy is never used.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hmss_ray import storage
from hmss_ray.registry import store
from hmss_ray.registry.names import RegistryError, default_alias, is_version, split_uri

CACHE_ENV = "HMSS_RAY_CACHE"  # where remote models are cached (default: ~/.cache/hmss-ray)
CARD = "MODEL_CARD.md"


@dataclass(frozen=True)
class Resolved:
    """A version a model URI names: the entry, the version id, its digest, the alias used."""

    registry: str
    name: str
    version: str
    digest: str
    alias: str | None
    uri: str  # the version folder

    @property
    def pinned(self) -> str:
        """The URI that names exactly this version: ``<registry>/<name>@<version>``."""
        return f"{store.entry_uri(self.registry, self.name)}@{self.version}"


def is_versioned(entry: str) -> bool:
    return storage.exists(storage.join(entry, store.VERSIONS)) or storage.exists(
        storage.join(entry, store.ALIASES)
    )


def resolve(uri: str, at: float | None = None) -> Resolved | None:
    """The version ``uri`` names at time ``at`` (default: now; an alias may be scheduled to move,
    :class:`store.AliasPointer`), or None when ``uri`` is not a versioned registry entry."""
    text = str(uri).rstrip("/")
    last = text.rsplit("/", 1)[-1]
    parent = text.rsplit("/", 2)
    if "@" not in last:
        if len(parent) == 3 and parent[1] == store.VERSIONS and is_version(last):
            entry = parent[0]  # a version folder given as a path
            return _version(entry.rsplit("/", 1)[0], entry.rsplit("/", 1)[-1], last, None)
        if not is_versioned(text):
            return None
    ref = split_uri(text)
    wanted = ref.ref or default_alias()
    if not is_versioned(ref.entry):
        raise RegistryError(f"no registry entry at {ref.entry}")
    if is_version(wanted):
        return _version(ref.registry, ref.name, wanted, None)
    pointer = store.read_alias(ref.registry, ref.name, wanted)
    if pointer is None:
        known = ", ".join(sorted(store.aliases(ref.registry, ref.name))) or "none"
        raise RegistryError(
            f"{ref.entry} has no alias {wanted!r} (aliases: {known}); promote a version to it "
            f"(python -m hmss_ray.registry promote) or name one: {ref.entry}@<alias|version>"
        )
    return _version(ref.registry, ref.name, pointer.at(at), wanted)


def _version(registry: str, name: str, version: str, alias: str | None) -> Resolved:
    uri = store.version_uri(registry, name, version)
    manifest = store.read_manifest(uri)
    return Resolved(registry, name, version, manifest["digest"], alias, uri)


def cache_root() -> Path:
    """The private cache folder (created 0700; refused when others may write or read it)."""
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "hmss-ray"
    )
    root = Path(base) / "models"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = root.stat()
    if info.st_uid != os.getuid():
        raise RegistryError(f"model cache {root} belongs to another user: set {CACHE_ENV}")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(root, 0o700)
    return root


def fetch(resolved: Resolved) -> Path:
    """A local folder holding ``resolved``'s files, every digest checked against the manifest."""
    manifest = store.read_manifest(resolved.uri)
    if manifest["digest"] != resolved.digest or not resolved.digest.startswith(resolved.version):
        raise store.IntegrityError(f"{resolved.uri}: its manifest does not match its id: refused")
    label = f"{resolved.name}@{resolved.version}"
    if not storage.is_remote(resolved.uri):
        local = Path(storage.resolve(resolved.uri)[1])
        store.verify_local(local, manifest, label)
        return local
    target = cache_root() / resolved.name / f"{resolved.version}-{resolved.digest[:16]}"
    if target.is_dir():
        try:
            store.verify_local(target, manifest, label)
            return target
        except store.IntegrityError:  # a changed cache copy: fetched again below
            shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=target.parent))
    try:
        storage.copy_dir(resolved.uri, str(staging))
        store.verify_local(staging, manifest, label)
        os.rename(staging, target)
    except OSError:
        if not target.is_dir():  # another process renamed the same version first
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def open_model(uri: str, at: float | None = None) -> tuple[Path, Resolved] | None:
    """``(verified local folder, version)`` for a versioned URI (the version it names at ``at``,
    default now); None for anything else."""
    resolved = resolve(uri, at)
    if resolved is None:
        return None
    return fetch(resolved), resolved


def card(directory: Path) -> str | None:
    path = Path(directory) / CARD
    return path.read_text() if path.exists() else None
