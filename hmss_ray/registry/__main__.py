"""``python -m hmss_ray.registry``: list, show, promote, roll back, verify, export, import.

A model URI is ``<registry>/<name>`` (its ``production`` alias), ``<registry>/<name>@<alias>`` or
``<registry>/<name>@<version>``; every change is recorded in the entry's change log.
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hmss_ray import cli
from hmss_ray.registry import load, ops, store
from hmss_ray.registry.names import DEFAULT_ALIAS, ModelRef, RegistryError, split_uri

EXAMPLES = """examples:
  python -m hmss_ray.registry list outputs/registry
  python -m hmss_ray.registry list outputs/registry/brain
  python -m hmss_ray.registry show outputs/registry/brain@latest
  python -m hmss_ray.registry promote outputs/registry/brain@latest --alias production \\
      --require-report outputs/eval --require 'mae<=80' --note 'approved by physics, ticket 42'
  python -m hmss_ray.registry rollback outputs/registry/brain --alias production
  python -m hmss_ray.registry verify outputs/registry/brain
  python -m hmss_ray.registry export outputs/registry/brain@production --out brain.tar.gz
  python -m hmss_ray.registry import brain.tar.gz --registry s3://site-b/registry --alias staging
  python -m hmss_ray.registry register outputs/runs/r1/checkpoint_x --registry outputs/registry \\
      --name brain --alias staging        (also moves an old flat entry into a version)

exit status: 0 done, 1 verify found a changed or broken version, 2 bad arguments or refused
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser("registry", "The model registry: versions, aliases, changes.",
                        EXAMPLES)  # fmt: skip
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="entries of a registry, or versions of an entry").add_argument(
        "uri", help="<registry> or <registry>/<name>"
    )
    sub.add_parser("show", help="one version: aliases, files, metrics, card").add_argument("uri")
    promote = sub.add_parser("promote", help="point an alias at a version")
    promote.add_argument("uri", help="<registry>/<name>@<version|alias> to promote")
    promote.add_argument("--alias", default=DEFAULT_ALIAS, help="default: production")
    promote.add_argument("--require-report", help="evaluation folder (or its summary.csv)")
    promote.add_argument(
        "--require",
        action="append",
        default=[],
        metavar="METRIC<=VALUE",
        help="threshold on the report's overall row, repeatable: 'mae<=80'",
    )
    rollback = sub.add_parser("rollback", help="point an alias back at its previous version")
    rollback.add_argument("uri", help="<registry>/<name>")
    rollback.add_argument("--alias", default=DEFAULT_ALIAS)
    rollback.add_argument("--to", help="a version or alias (default: the alias's previous one)")
    verify = sub.add_parser("verify", help="check digests: one version or every version")
    verify.add_argument("uri", help="<registry>/<name> (all versions) or <name>@<ref>")
    export = sub.add_parser("export", help="one version as a .tar.gz archive")
    export.add_argument("uri", help="<registry>/<name>@<version|alias>")
    export.add_argument("--out", required=True, help="archive path (.tar.gz)")
    imp = sub.add_parser("import", help="register the version in an exported archive")
    imp.add_argument("archive")
    imp.add_argument("--registry", required=True)
    imp.add_argument("--name", help="entry name (default: the exported one)")
    imp.add_argument("--alias", action="append", default=[], help="aliases to point at it")
    register = sub.add_parser("register", help="a checkpoint or an old flat entry as a version")
    register.add_argument("source", help="checkpoint folder or flat entry (path or s3://)")
    register.add_argument("--registry", required=True)
    register.add_argument("--name", required=True)
    register.add_argument("--alias", action="append", default=[])
    sub.add_parser("log", help="the change log of an entry").add_argument("uri")
    for each in (promote, rollback, imp, register):
        each.add_argument("--note", default="", help="why (kept in the change log)")
    for each in (promote, rollback):
        each.add_argument(
            "--activate-in",
            type=float,
            metavar="SECONDS",
            help=f"the alias moves this many seconds from now, on every replica at once "
            f"(default ${ops.ACTIVATE_ENV} or {ops.ACTIVATE_S:g}; 0: now)",
        )
    return parser


def _list(args: argparse.Namespace) -> int:
    text = args.uri.rstrip("/")
    if not load.is_versioned(text):
        for name in store.entries(text):
            print(name)
        return 0
    ref = split_uri(text)
    pointers = store.aliases(ref.registry, ref.name)
    for vid in store.versions(ref.registry, ref.name):
        manifest = store.read_manifest(store.version_uri(ref.registry, ref.name, vid))
        named = ",".join(sorted(a for a, v in pointers.items() if v == vid)) or "-"
        print(f"{vid}  {manifest['created']}  {manifest['created_by']}  aliases: {named}")
    return 0


def _show(args: argparse.Namespace) -> int:
    found = load.resolve(args.uri)
    if found is None:
        raise RegistryError(f"{args.uri} is not a versioned registry entry")
    manifest = store.read_manifest(found.uri)
    metrics = storage_json(found.uri, "metrics.json")
    pointers = store.aliases(found.registry, found.name)
    shown = {
        "name": found.name, "version": found.version, "digest": found.digest,
        "uri": found.uri, "pinned": found.pinned, "created": manifest["created"],
        "created_by": manifest["created_by"], "note": manifest.get("note", ""),
        "aliases": sorted(a for a, v in pointers.items() if v == found.version),
        "metrics": metrics, "files": {k: v["bytes"] for k, v in manifest["files"].items()},
    }  # fmt: skip
    print(json.dumps(shown, indent=2, sort_keys=True))
    return 0


def storage_json(uri: str, name: str) -> Any:
    from hmss_ray import storage

    path = storage.join(uri, name)
    return storage.read_json(path) if storage.exists(path) else None


def _promote(args: argparse.Namespace) -> int:
    ref = split_uri(args.uri)
    if ref.ref is None:
        raise RegistryError("name the version to promote: <registry>/<name>@<version|alias>")
    rules = [ops.Threshold.parse(t) for t in args.require]
    old, new = ops.promote(ref.registry, ref.name, ref.ref, args.alias, note=args.note,
                           report=args.require_report, thresholds=rules,
                           activate_in_s=args.activate_in)  # fmt: skip
    print(f"{ref.name}@{args.alias}: {old or '(none)'} -> {new}{_from(ref, args.alias)}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    ref = split_uri(args.uri)
    old, new = ops.rollback(ref.registry, ref.name, args.alias, to=args.to, note=args.note,
                            activate_in_s=args.activate_in)  # fmt: skip
    print(f"{ref.name}@{args.alias}: {old} -> {new} (rolled back){_from(ref, args.alias)}")
    return 0


def _from(ref: ModelRef, alias: str) -> str:
    """When a scheduled move takes effect, for the command's line."""
    pointer = store.read_alias(ref.registry, ref.name, alias)
    if pointer is None or not pointer.scheduled():
        return ""
    return f", from {store.now(pointer.effective_at)} ({pointer.previous} until then)"


def _verify(args: argparse.Namespace) -> int:
    ref = split_uri(args.uri)
    complete = store.versions(ref.registry, ref.name)
    wanted = [ops.resolve_ref(ref.registry, ref.name, ref.ref)] if ref.ref else complete
    failed = 0
    for vid in wanted:
        try:
            store.verify(store.version_uri(ref.registry, ref.name, vid))
            print(f"{vid}  ok")
        except RegistryError as exc:
            failed += 1
            print(f"{vid}  FAILED: {exc}")
    for alias, vid in sorted(store.aliases(ref.registry, ref.name).items()):
        if vid not in complete:
            failed += 1
            print(f"alias {alias} -> {vid}  FAILED: not a complete version")
    return 1 if failed else 0


def _export(args: argparse.Namespace) -> int:
    ref = split_uri(args.uri)
    version = ops.export(ref.registry, ref.name, ref.ref or DEFAULT_ALIAS, Path(args.out))
    print(f"{ref.name}@{version} -> {args.out}")
    return 0


def _import(args: argparse.Namespace) -> int:
    version = ops.import_archive(Path(args.archive), args.registry, name=args.name,
                                 aliases=tuple(args.alias))  # fmt: skip
    print(f"imported {version.name}@{version.id} into {args.registry}")
    return 0


def _register(args: argparse.Namespace) -> int:
    from hmss_ray.models import checkpoint as ckpt
    from hmss_ray.registry.entry import publish

    source = ckpt.localize(args.source)
    metrics = json.loads((source / "metrics.json").read_text()) if (
        source / "metrics.json").exists() else ckpt.read_meta(source).metrics  # fmt: skip
    winner = json.loads((source / "winner.json").read_text()) if (
        source / "winner.json").exists() else {"checkpoint": args.source}  # fmt: skip
    extra = None
    if (source / "ensemble.json").exists():  # an old flat entry's members come along
        extra = lambda d: _copy_members(source, d)  # noqa: E731
    version = publish(source, args.registry, args.name, metrics=metrics, winner=winner,
                      extra=extra, aliases=tuple(args.alias), note=args.note)  # fmt: skip
    print(f"registered {args.name}@{version.id}")
    return 0


def _copy_members(source: Path, staged: Path) -> None:
    import shutil

    shutil.copy2(source / "ensemble.json", staged / "ensemble.json")
    if (source / "members").is_dir():
        shutil.copytree(source / "members", staged / "members")


def _log(args: argparse.Namespace) -> int:
    ref = split_uri(args.uri)
    for change in store.read_log(ref.registry, ref.name):
        print(json.dumps(change, sort_keys=True))
    return 0


ACTIONS: dict[str, Callable[[argparse.Namespace], int]] = {
    "list": _list, "show": _show, "promote": _promote, "rollback": _rollback,
    "verify": _verify, "export": _export, "import": _import, "register": _register, "log": _log,
}  # fmt: skip


def command(args: argparse.Namespace) -> int:
    try:
        return ACTIONS[args.action](args)
    except OSError as exc:  # storage: S3 unreachable after its retries, a full disk
        if isinstance(exc, FileNotFoundError):
            raise
        why = "disk full" if exc.errno == errno.ENOSPC else "storage error"
        raise RegistryError(f"{why}: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    return cli.run(command, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
