"""Versions, aliases and the change log of a registry entry (local directory or ``s3://``).

```
<registry>/<name>/versions/<id>/      one version, written once, never changed:
    generator.safetensors checkpoint.json config.yaml metrics.json winner.json MODEL_CARD.md
    members/<i>/...  ensemble.json    (when the search gathered ensemble members)
    manifest.json                     every other file's sha256 and size; written last
<registry>/<name>/aliases/<alias>     {"version": <id>, "previous": <id>, "effective_at": <time>,
                                      ...}: replaced by one atomic write
<registry>/<name>/log/<time>-<rand>.json   one object per change (who, when, from, to), never
                                      rewritten: the append-only change log
```

The version id is the first 16 hex digits of the sha256 of the sorted ``path sha256`` lines of its
files: the same bytes give the same id, other bytes another. A version is complete when its
``manifest.json`` exists: locally the version is assembled under ``versions/.staging-*`` and
renamed into place; on S3 the manifest is the last object written. Nothing points at a version
before it is complete, so a kill, a full disk or an S3 outage at any moment leaves every alias on
a complete version.

An alias may move at a set time: ``effective_at`` (UTC) in its pointer says from when it names
``version``; until then it names ``previous``. Serve replicas pre-load the new version as soon as
they see the pointer and all switch at that instant (:mod:`hmss_ray.registry.live`). A pointer
without ``effective_at`` (older registries, ``activate_in_s=0``) moves at once.
"""

from __future__ import annotations

import errno
import getpass
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hmss_ray import storage
from hmss_ray.registry.names import RegistryError, alias_name, entry_name, is_version
from hmss_ray.registry.pointer import AliasPointer, now

MANIFEST = "manifest.json"
VERSIONS, ALIASES, LOG = "versions", "aliases", "log"
STAGING = ".staging-"
USER_ENV = "HMSS_REGISTRY_USER"  # who a change is recorded as (default: user@host)


class IntegrityError(RegistryError):
    """A version's files differ from its manifest: the model is refused."""


@dataclass(frozen=True)
class Version:
    """A complete version: its id, the sha256 over its files, and where it lives."""

    name: str
    id: str
    digest: str
    uri: str


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digests(directory: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {sha256, bytes}}`` of every file under ``directory`` but the manifest."""
    found = {}
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        if rel != MANIFEST:
            found[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return found


def content_digest(files: dict[str, dict[str, Any]]) -> str:
    lines = "".join(f"{rel} {info['sha256']}\n" for rel, info in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def who() -> str:
    if os.environ.get(USER_ENV):
        return os.environ[USER_ENV]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container): the uid
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def entry_uri(registry: str, name: str) -> str:
    return storage.join(registry, entry_name(name))


def version_uri(registry: str, name: str, version: str) -> str:
    if not is_version(version):
        raise RegistryError(f"bad version id {version!r}: 16 hex digits")
    return storage.join(entry_uri(registry, name), VERSIONS, version)


# --- writing a version ---------------------------------------------------------------------


def register(
    staged: Path, registry: str, name: str, *, aliases: tuple[str, ...] = (), note: str = ""
) -> Version:
    """Write the files under ``staged`` as a version of ``<registry>/<name>``, then point
    ``aliases`` at it. The same content registered twice is the same version (kept, verified).
    """
    entry_name(name)
    for alias in aliases:
        alias_name(alias)
    files = file_digests(staged)
    if not files:
        raise RegistryError(f"{staged} holds no files to register")
    digest = content_digest(files)
    version = Version(name, digest[:16], digest, version_uri(registry, name, digest[:16]))
    manifest = {
        "format": 1, "name": name, "version": version.id, "digest": digest, "files": files,
        "created": now(), "created_by": who(), "note": note,
    }  # fmt: skip
    if storage.exists(storage.join(version.uri, MANIFEST)):
        verify(version.uri)  # already there: the same bytes, or a refusal
    else:
        _write_version(staged, version.uri, manifest)
        append_log(registry, name, "register", version=version.id, note=note)
    for alias in aliases:
        set_alias(registry, name, alias, version.id, note=note)
    return version


def _write_version(staged: Path, uri: str, manifest: dict[str, Any]) -> None:
    try:
        if storage.is_remote(uri):  # the manifest last: until it exists the version is not there
            storage.copy_dir(str(staged), uri)
            storage.write_json(storage.join(uri, MANIFEST), manifest)
            return
        _write_local(staged, Path(storage.resolve(uri)[1]), manifest)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise RegistryError(f"disk full while writing {uri}: nothing was registered") from None
        raise


def _write_local(staged: Path, target: Path, manifest: dict[str, Any]) -> None:
    """Copy under ``versions/.staging-*``, then one rename; a failure removes the staging copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_staging(target.parent)
    temp = Path(tempfile.mkdtemp(prefix=f"{STAGING}{target.name}-", dir=target.parent))
    try:
        shutil.copytree(staged, temp, dirs_exist_ok=True)
        (temp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _fsync_tree(temp)
        try:
            os.rename(temp, target)
        except OSError:
            if not (target / MANIFEST).exists():  # another writer won the same content
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for path in [*root.rglob("*"), root]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _clean_stale_staging(versions: Path, older_than_s: float = 3600.0) -> None:
    """Staging folders a killed registration left (an hour old: never a live writer's)."""
    for path in versions.glob(f"{STAGING}*"):
        if time.time() - path.stat().st_mtime > older_than_s:
            shutil.rmtree(path, ignore_errors=True)


# --- reading and verifying -----------------------------------------------------------------


def read_manifest(uri: str) -> dict[str, Any]:
    """The manifest of the version at ``uri`` (a complete version), else :class:`RegistryError`."""
    path = storage.join(uri, MANIFEST)
    if not storage.exists(path):
        raise RegistryError(f"{uri} is not a complete registry version (no {MANIFEST})")
    return storage.read_json(path)


def verify_local(directory: Path, manifest: dict[str, Any], label: str) -> None:
    """Refuse (:class:`IntegrityError`) a local copy whose files differ from ``manifest``."""
    files = manifest["files"]
    if content_digest(files) != manifest["digest"]:
        raise IntegrityError(f"{label}: its manifest does not match its own digest: refused")
    for rel, info in sorted(files.items()):
        path = Path(directory) / rel
        if not path.is_file():
            raise IntegrityError(f"{label}: {rel} is missing: refused")
        got = sha256_file(path)
        if got != info["sha256"]:
            raise IntegrityError(
                f"{label}: {rel} has sha256 {got[:12]}..., its manifest says "
                f"{info['sha256'][:12]}...: the file changed after registration; refused"
            )
    extra = sorted(set(file_digests(directory)) - set(files))
    if extra:
        raise IntegrityError(f"{label}: files not in its manifest: {', '.join(extra[:3])}: refused")


def verify(uri: str) -> dict[str, Any]:
    """Check every file of the version at ``uri`` against its manifest; returns the manifest."""
    manifest = read_manifest(uri)
    if storage.is_remote(uri):
        with tempfile.TemporaryDirectory(prefix="hmss-verify-") as tmp:
            storage.copy_dir(uri, tmp)
            verify_local(Path(tmp), manifest, uri)
    else:
        verify_local(Path(storage.resolve(uri)[1]), manifest, uri)
    return manifest


def versions(registry: str, name: str) -> list[str]:
    """The complete versions of an entry, oldest first (by creation time)."""
    root = storage.join(entry_uri(registry, name), VERSIONS)
    found = []
    for vid in storage.listdir(root):
        manifest_uri = storage.join(root, vid, MANIFEST)
        if is_version(vid) and storage.exists(manifest_uri):
            found.append((storage.read_json(manifest_uri).get("created", ""), vid))
    return [vid for _, vid in sorted(found)]


# --- aliases and the change log --------------------------------------------------------------


def aliases(registry: str, name: str) -> dict[str, str]:
    """``{alias: version id}`` of an entry (the version each names, or will name once due)."""
    root = storage.join(entry_uri(registry, name), ALIASES)
    out = {}
    for alias in storage.listdir(root):
        if ".tmp-" not in alias:  # a local atomic write's temporary file
            out[alias] = storage.read_json(storage.join(root, alias))["version"]
    return out


def read_alias(registry: str, name: str, alias: str) -> AliasPointer | None:
    """The pointer file of ``alias``, or None when the entry has no such alias."""
    uri = storage.join(entry_uri(registry, name), ALIASES, alias_name(alias))
    return AliasPointer.parse(storage.read_json(uri)) if storage.exists(uri) else None


def get_alias(registry: str, name: str, alias: str) -> str | None:
    """The version ``alias`` names (or will name, once its activation time comes)."""
    pointer = read_alias(registry, name, alias)
    return pointer.version if pointer else None


def set_alias(
    registry: str,
    name: str,
    alias: str,
    version: str,
    note: str = "",
    *,
    activate_in_s: float = 0.0,
) -> str | None:
    """Point ``alias`` at the complete ``version`` (one atomic write); returns the old target.

    With ``activate_in_s`` > 0 the alias keeps naming the version it names now for that many
    seconds (``previous`` until ``effective_at`` in the pointer): every Serve replica that
    follows it loads the new version meanwhile and switches at the same instant.
    """
    read_manifest(version_uri(registry, name, version))  # only complete versions are named
    pointer = read_alias(registry, name, alias)
    old = pointer.version if pointer else None
    t = time.time()
    record: dict[str, Any] = {"version": version, "set_at": now(t), "set_by": who()}
    serving = pointer.at(t) if pointer else None
    if activate_in_s > 0 and serving not in (None, version):
        record.update(previous=serving, effective_at=now(t + activate_in_s))
    extra = {"effective_at": record["effective_at"]} if "effective_at" in record else {}
    append_log(registry, name, "alias", alias=alias, note=note, **{"from": old, "to": version},
               **extra)  # fmt: skip
    storage.write_json(storage.join(entry_uri(registry, name), ALIASES, alias), record)
    return old


def append_log(registry: str, name: str, action: str, **fields: Any) -> None:
    """One change as its own object (never rewritten): who, when, what, from, to."""
    when = now()
    record = {"when": when, "who": who(), "action": action, **fields}
    stamp = when.replace(":", "").replace("-", "")
    uri = storage.join(entry_uri(registry, name), LOG, f"{stamp}-{uuid.uuid4().hex[:8]}.json")
    storage.write_json(uri, record)


def read_log(registry: str, name: str) -> list[dict[str, Any]]:
    """The change log of an entry, oldest first."""
    root = storage.join(entry_uri(registry, name), LOG)
    names = [n for n in storage.listdir(root) if n.endswith(".json")]
    return [storage.read_json(storage.join(root, n)) for n in names]


def entries(registry: str) -> list[str]:
    """Entry names under ``registry``: versioned ones and old flat ones."""
    found = []
    for name in storage.listdir(registry):
        if name.startswith("."):
            continue
        base = storage.join(registry, name)
        if storage.exists(storage.join(base, VERSIONS)) or storage.exists(
            storage.join(base, "checkpoint.json")
        ):
            found.append(name)
    return found
