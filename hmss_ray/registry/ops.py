"""Promotion, rollback, export and import: every change goes through the change log.

Promotion can require a passing evaluation report (``python -m hmss_ray.evaluate``'s folder or
its ``summary.csv``): the report must name the version being promoted (its ``report.md`` names the
model URI it evaluated) and its overall row must meet every threshold (``mae<=80``,
``ssim>=0.8``; a metric is read from ``<metric>_mean`` or ``<metric>``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hmss_ray import storage
from hmss_ray.registry import store
from hmss_ray.registry.names import RegistryError, alias_name, entry_name, is_version

EXPORT_INFO = "hmss-export.json"
ACTIVATE_ENV = "HMSS_REGISTRY_ACTIVATE_S"  # default delay before a promotion takes effect
ACTIVATE_S = 30.0  # > 2 x the replicas' poll interval (5 s) + a model's fetch and load
OVERALL = "all"  # the evaluation summary's row over every patient
THRESHOLD_RE = re.compile(r"^([a-z_0-9]+)\s*(<=|>=)\s*([-+0-9.eE]+)$")


@dataclass(frozen=True)
class Threshold:
    metric: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Threshold:
        found = THRESHOLD_RE.match(text.strip())
        if not found:
            raise RegistryError(f"bad threshold {text!r}: write METRIC<=VALUE or METRIC>=VALUE")
        return cls(found[1], found[2], float(found[3]))

    def passes(self, got: float) -> bool:
        return got <= self.value if self.op == "<=" else got >= self.value


def check_report(report: str, version: str, thresholds: list[Threshold]) -> None:
    """Refuse unless ``report`` evaluated ``version`` and its overall row meets ``thresholds``."""
    folder = Path(report) if Path(report).is_dir() else Path(report).parent
    summary = folder / "summary.csv" if Path(report).is_dir() else Path(report)
    if not summary.is_file():
        raise RegistryError(f"no evaluation summary at {summary}")
    markdown = folder / "report.md"
    if not markdown.is_file() or version not in markdown.read_text():
        raise RegistryError(
            f"{folder} is not an evaluation of version {version}: evaluate <entry>@{version} "
            "(python -m hmss_ray.evaluate --model ...) and pass its folder"
        )
    rows = {row["group"]: row for row in csv.DictReader(io.StringIO(summary.read_text()))}
    overall = rows.get(OVERALL)
    if overall is None:
        raise RegistryError(f"{summary} has no overall row ({OVERALL!r})")
    for rule in thresholds:
        raw = overall.get(f"{rule.metric}_mean", overall.get(rule.metric))
        if raw in (None, "", "nan"):
            raise RegistryError(f"{summary} reports no {rule.metric}")
        if not rule.passes(float(raw)):
            raise RegistryError(
                f"version {version} fails {rule.metric}{rule.op}{rule.value:g}: the report says "
                f"{float(raw):.4g}; not promoted"
            )


def resolve_ref(registry: str, name: str, ref: str) -> str:
    """A version id from a version id or an alias."""
    if is_version(ref):
        store.read_manifest(store.version_uri(registry, name, ref))
        return ref
    target = store.get_alias(registry, name, ref)
    if target is None:
        raise RegistryError(f"{name} has no alias or version {ref!r}")
    return target


def promote(
    registry: str,
    name: str,
    ref: str,
    alias: str,
    *,
    note: str = "",
    report: str | None = None,
    thresholds: list[Threshold] | None = None,
    activate_in_s: float | None = None,
) -> tuple[str | None, str]:
    """Point ``alias`` at the version ``ref`` names (verified first); returns (old, new).

    The alias names the new version ``activate_in_s`` seconds from now (default
    :func:`activation_delay`), so that every Serve replica following it switches at once.
    """
    version = resolve_ref(registry, name, ref)
    store.verify(store.version_uri(registry, name, version))
    if report is not None:
        check_report(report, version, thresholds or [])
    elif thresholds:
        raise RegistryError("thresholds need --require-report: the report they are checked on")
    old = store.set_alias(registry, name, alias_name(alias), version, note=note,
                          activate_in_s=activation_delay(activate_in_s))  # fmt: skip
    return old, version


def activation_delay(seconds: float | None = None) -> float:
    """``seconds``, else ``$HMSS_REGISTRY_ACTIVATE_S``, else 30 s (docs/registry.md)."""
    value = seconds if seconds is not None else float(os.environ.get(ACTIVATE_ENV) or ACTIVATE_S)
    if value < 0:
        raise RegistryError(f"an activation delay is >= 0 seconds, not {value:g}")
    return value


def rollback(
    registry: str,
    name: str,
    alias: str,
    *,
    to: str | None = None,
    note: str = "",
    activate_in_s: float | None = None,
) -> tuple[str, str]:
    """Point ``alias`` back at the version it named before its last change (or at ``to``),
    ``activate_in_s`` from now as :func:`promote` does."""
    current = store.get_alias(registry, name, alias_name(alias))
    if current is None:
        raise RegistryError(f"{name} has no alias {alias!r} to roll back")
    target = to and resolve_ref(registry, name, to)
    if not target:
        changes = [c for c in store.read_log(registry, name)
                   if c.get("action") == "alias" and c.get("alias") == alias]  # fmt: skip
        earlier = [c["from"] for c in changes if c.get("to") == current and c.get("from")]
        if not earlier:
            raise RegistryError(f"{name}@{alias} has no earlier version in the change log")
        target = earlier[-1]
    store.verify(store.version_uri(registry, name, target))
    store.set_alias(registry, name, alias, target, note=note or f"rollback from {current}",
                    activate_in_s=activation_delay(activate_in_s))  # fmt: skip
    return current, target


def export(registry: str, name: str, ref: str, out: Path) -> str:
    """Write the version ``ref`` names (verified) as one ``.tar.gz``; returns its version id."""
    version = resolve_ref(registry, name, ref)
    uri = store.version_uri(registry, name, version)
    manifest = store.verify(uri)
    with tempfile.TemporaryDirectory(prefix="hmss-export-") as tmp:
        local = Path(tmp) / version
        storage.copy_dir(uri, str(local))
        info = {"name": name, "version": version, "digest": manifest["digest"]}
        partial = out.with_name(f".{out.name}.partial")
        with tarfile.open(partial, "w:gz") as tar:
            data = json.dumps(info, indent=2).encode()
            entry = tarfile.TarInfo(EXPORT_INFO)
            entry.size = len(data)
            tar.addfile(entry, io.BytesIO(data))
            tar.add(local, arcname=version)
        partial.replace(out)
    return version


def import_archive(
    archive: Path, registry: str, *, name: str | None = None, aliases: tuple[str, ...] = ()
) -> store.Version:
    """Register the version in an :func:`export` archive (its digests checked) under ``name``."""
    with tempfile.TemporaryDirectory(prefix="hmss-import-") as tmp:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(tmp, filter="data")  # no links out, no absolute paths
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise RegistryError(f"{archive} is not a registry export: {exc}") from None
        info_path = Path(tmp) / EXPORT_INFO
        if not info_path.is_file():
            raise RegistryError(f"{archive} is not a registry export (no {EXPORT_INFO})")
        info = json.loads(info_path.read_text())
        version = Path(tmp) / str(info.get("version"))
        if not is_version(str(info.get("version"))) or not version.is_dir():
            raise RegistryError(f"{archive}: its version folder is missing")
        manifest = json.loads((version / store.MANIFEST).read_text())
        store.verify_local(version, manifest, f"{archive}")
        if not manifest["digest"].startswith(info["version"]):
            raise store.IntegrityError(f"{archive}: its files are not version {info['version']}")
        target = entry_name(name or info["name"])
        (version / store.MANIFEST).unlink()  # rewritten by register (same files, same id)
        note = f"imported from {archive.name} ({info['name']}@{info['version']})"
        return store.register(version, registry, target, aliases=aliases, note=note)
