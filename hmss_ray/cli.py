"""What every command shares: ``--config``/``--set``, one-line errors, and tables for people.

Each command builds its parser with :func:`parser`, adds :func:`add_config_args` when it takes an
experiment config, and runs through :func:`run`: a :class:`~hmss_ray.config.UserError` (a bad key,
value, path or input) or a missing file prints ``error: <what is wrong>`` on one line and exits
with status 2, Ctrl-C exits 130, and nothing a person typed ends in a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from hmss_ray.config import ExperimentConfig, UserError, load_config

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def parser(prog: str, description: str, examples: str = "") -> argparse.ArgumentParser:
    """An argument parser for ``python -m <prog>`` whose ``--help`` ends with ``examples``."""
    return argparse.ArgumentParser(
        prog=f"python -m {prog}",
        description=description,
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` and repeatable ``--set KEY=VALUE`` (values parsed as YAML)."""
    parser.add_argument("--config", help="experiment YAML (default: the built-in defaults)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted config override, repeatable: --set loss.lambda_l1=5 --set data.image_size=128",
    )


PATIENT_ARGS = ("name", "id", "birth_date", "sex", "position")


def add_patient_args(parser: argparse.ArgumentParser) -> None:
    """``--patient-*``: the patient fields of a DICOM sCT made from a non-DICOM MR."""
    group = parser.add_argument_group("patient (DICOM output from a NIfTI/MetaImage/NRRD MR)")
    group.add_argument("--patient-name", default="", help="DICOM person name, e.g. 'Doe^Jane'")
    group.add_argument("--patient-id", default="")
    group.add_argument("--patient-birth-date", default="", help="YYYYMMDD")
    group.add_argument("--patient-sex", default="", help="M, F or O")
    group.add_argument("--patient-position", default="", help="HFS, FFS, HFP, FFP, ...")


def patient_args(args: argparse.Namespace) -> dict[str, str]:
    """What :func:`add_patient_args` parsed: ``{"name": ..., "id": ..., ...}``."""
    return {key: getattr(args, f"patient_{key}") for key in PATIENT_ARGS}


def config_from_args(args: argparse.Namespace, extra: Sequence[str] = ()) -> ExperimentConfig:
    """The config that ``--config`` and every ``--set`` (then ``extra`` overrides) describe."""
    return load_config(args.config, [*args.set, *extra])


def run(
    command: Callable[[argparse.Namespace], int],
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv`` and call ``command``; a person's mistake is one line and exit status 2."""
    args = parser.parse_args(argv)
    try:
        return command(args)
    except (UserError, FileNotFoundError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _one_line(exc: BaseException) -> str:
    text = (
        str(exc)
        if not isinstance(exc, FileNotFoundError) or not exc.filename
        else (f"{exc.filename}: {exc.strerror or 'not found'}")
    )
    return " ".join(text.split())


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; cells are ``str()``-ed, ``|`` inside a cell becomes ``/``."""
    cell = lambda v: str(v).replace("|", "/")  # noqa: E731
    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(cell, row)) + " |" for row in rows])
