"""``hmss-ray <stage>``: one command over the stage modules, dispatched from one table.

Each stage is a module with ``build_parser()`` (importable without side effects: the docs build
the CLI reference from it) and ``main(argv) -> int``; ``python -m <module>`` runs the same code.
A stage whose module is not installed (an optional part, or the ``cluster`` rehearsal outside a
source checkout) and a stage that needs an extra that is not installed are one error line and
exit status 2.

``cluster`` runs ``infra.rehearsal`` (Ray's fake multi-node autoscaler with the cloud's node
types, an S3 server on loopback), which is deliberately not in the wheel: it reads the cluster
files beside it in ``infra/`` and rehearses the deployment of a checkout. From a checkout (an
editable install) ``hmss-ray cluster`` imports it from the tree; from a wheel it says so in one
line.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from hmss_ray import __version__

EXIT_USAGE = 2


@dataclass(frozen=True)
class Stage:
    """A subcommand: the module that runs it, what it does, the extra it needs."""

    module: str
    summary: str
    extra: str = "train"


STAGES: dict[str, Stage] = {
    "phantom": Stage("hmss_ray.phantom", "write MR/CT phantoms in a SynthRAD layout"),
    "prepare": Stage("hmss_ray.prepare", "SynthRAD folders -> validated Parquet slice shards"),
    "train": Stage("hmss_ray.train.__main__", "one Ray Train run of the cascade GAN"),
    "tune": Stage("hmss_ray.tune.__main__", "the search (Ray Tune + Optuna); winner -> registry"),
    "predict": Stage("hmss_ray.inference.__main__", "MR volume -> sCT with a model, offline"),
    "serve": Stage("hmss_ray.serving.__main__", "a model behind HTTP with Ray Serve", "serve"),
    "request": Stage("hmss_ray.client", "send an MR to the HTTP endpoint, save the sCT", "client"),
    "evaluate": Stage("hmss_ray.evaluate.__main__", "SynthRAD metrics, tables, figures", "eval"),
    "registry": Stage("hmss_ray.registry.__main__", "list, inspect and alias registry entries"),
    "dose": Stage(
        "hmss_ray.dose.__main__", "dose check: a plan on the CT recomputed on the sCT", "dose"
    ),
    "cluster": Stage(
        "infra.rehearsal.__main__", "the rehearsal cluster (from a source checkout only)", "dev"
    ),
    "demo": Stage("hmss_ray.demo", "the whole job end to end on phantoms (local Ray)", "all"),
}
CHECKOUT = Path(__file__).resolve().parents[1]  # the source tree, when run from a checkout


class StageUnavailable(Exception):
    """The stage's module (or a library it needs) is not installed; the message says what to do."""


def _checkout_has(module: str) -> bool:
    return CHECKOUT.joinpath(*module.split(".")[:-1], "__init__.py").is_file()


def _import(module: str) -> ModuleType:
    """``module``; for a missing ``pkg.__main__``, ``pkg`` itself when it has a ``main``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        package = module.removesuffix(".__main__")
        if exc.name != module or package == module:
            raise
        found = importlib.import_module(package)
        if not hasattr(found, "main"):
            raise
        return found


def load(name: str) -> ModuleType:
    """The module of stage ``name``; :class:`StageUnavailable` when it cannot be imported."""
    stage = STAGES[name]
    top = stage.module.split(".")[0]
    if top != "hmss_ray" and _checkout_has(stage.module) and str(CHECKOUT) not in sys.path:
        sys.path.insert(0, str(CHECKOUT))  # infra/ sits beside the package in a checkout
    try:
        return _import(stage.module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if stage.module == missing or stage.module.startswith(f"{missing}."):
            if top != "hmss_ray":
                raise StageUnavailable(
                    f"hmss-ray {name} runs {stage.module} from a source checkout of hmss-ray "
                    "(it is not in the wheel): run it there, e.g. `make cluster-up`"
                ) from None
            raise StageUnavailable(
                f"hmss-ray {name} is not part of this install ({missing} is missing)"
            ) from None
        raise StageUnavailable(
            f"hmss-ray {name} needs {missing!r}, which is not installed: "
            f"pip install 'hmss-ray[{stage.extra}]'"
        ) from None


def build_parser(name: str) -> argparse.ArgumentParser:
    """The argument parser of stage ``name`` (for ``--help`` and the generated reference)."""
    parser: argparse.ArgumentParser = load(name).build_parser()
    return parser


def usage() -> str:
    """``hmss-ray --help``: the stages, one line each."""
    width = max(map(len, STAGES))
    lines = [f"  {name:<{width}}  {stage.summary}" for name, stage in STAGES.items()]
    return "\n".join(
        [
            "usage: hmss-ray <stage> [options]    (hmss-ray <stage> --help for its options)",
            "",
            "MRI -> synthetic CT with the HMSS cascade GAN, trained, searched and served on Ray.",
            "",
            "stages:",
            *lines,
            "",
            "  -h, --help     this list",
            "  --version      the installed version",
            "",
            "example: hmss-ray demo -o outputs/demo",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``hmss-ray <stage> [options]``: run the stage's ``main`` with the remaining arguments."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else EXIT_USAGE
    if args[0] == "--version":
        print(f"hmss-ray {__version__}")
        return 0
    name = args[0]
    if name not in STAGES:
        print(
            f"error: hmss-ray: unknown stage {name!r}; choose from {', '.join(STAGES)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        module = load(name)
    except StageUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(module.main(args[1:]) or 0)
    except SystemExit as exc:  # a stage whose parser exits itself (--help, argparse errors)
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        raise
    except ModuleNotFoundError as exc:  # a library of an extra that is not installed
        if (exc.name or "hmss_ray").split(".")[0] in ("hmss_ray", "infra"):
            raise
        extra = STAGES[name].extra
        print(
            f"error: hmss-ray {name} needs {exc.name!r}, which is not installed: "
            f"pip install 'hmss-ray[{extra}]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
