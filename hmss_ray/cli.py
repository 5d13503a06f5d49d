"""What every command shares: its flags, one-line errors, old spellings, tables for people.

Each stage builds its parser with :func:`parser` (``prog`` is ``hmss-ray <stage>``) and the
``add_*`` helpers below, so a flag means the same in every stage:

=================  ==========================================================================
``--data``         raw data: a SynthRAD ``Task1`` folder (or the phantom's)
``--shards``       a shard root written by ``hmss-ray prepare``
``-i/--input``     the one input volume (an MR file, DICOM folder or ``.zip``)
``-o/--output``    where the command writes its result
``--model``        a registry entry or checkpoint to use
``--init-from``    a registry entry or checkpoint whose weights a new model starts from
``--config``       an experiment YAML; ``--set KEY=VALUE`` dotted overrides
=================  ==========================================================================

Old spellings (``--out``, ``--storage``, ``--mr``, ...) still work through :func:`add_alias`:
they print one ``warning:`` line and set the new option. Each stage runs through :func:`run`: a
:class:`~hmss_ray.config.UserError` (a bad key, value, path or input), a missing file or an
argument error prints ``error: <what is wrong>`` on one line and exits with status 2, Ctrl-C
exits 130, and nothing a person typed ends in a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from hmss_ray.config import ExperimentConfig, UserError, load_config

__all__ = ["EXIT_INTERRUPTED", "EXIT_USAGE", "Parser", "UserError"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (exit 2) and that checks options which are
    required under either their new or an old spelling (:func:`add_alias`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.required_options: dict[str, str] = {}  # dest -> the flag to name in the error
        self.aliases: dict[str, str] = {}  # old spelling -> the new one (for the docs)

    def require(self, dest: str, flag: str) -> None:
        """After parsing, ``dest`` must be set (by ``flag`` or an alias of it)."""
        self.required_options[dest] = flag

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, rest = super().parse_known_args(args, namespace)
        missing = [f for d, f in self.required_options.items() if getattr(parsed, d, None) is None]
        if missing:
            self.error(f"the following arguments are required: {', '.join(missing)}")
        return parsed, rest

    def format_help(self) -> str:
        """The help, ending with the old spellings this command still accepts."""
        text = super().format_help()
        if not self.aliases:
            return text
        pairs = ", ".join(f"{old} -> {new}" for old, new in self.aliases.items())
        return f"{text}\nold spellings, still accepted with a warning: {pairs}\n"

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see --help)\n")


def parser(prog: str, description: str, examples: str = "") -> Parser:
    """A parser whose ``--help`` ends with ``examples``. ``prog`` is a stage (``"train"``, shown
    as ``hmss-ray train``) or a dotted module (``"bench.gpu_check"``: ``python -m ...``)."""
    name = f"python -m {prog}" if "." in prog else f"hmss-ray {prog}"
    return Parser(
        prog=name,
        description=description,
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


class _DeprecatedAlias(argparse.Action):
    """Stores like the option it stands for, after one ``warning:`` line on stderr."""

    def __init__(self, *args: Any, new: str, target: str, **kwargs: Any) -> None:
        self.new, self.target = new, target
        super().__init__(*args, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if values is None:
            return  # an optional positional alias that was not given
        old = option_string or f"the positional argument {self.metavar}"
        print(f"warning: {old} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.target, values)


def add_alias(parser: argparse.ArgumentParser, *old: str, dest: str, new: str, **kw: Any) -> None:
    """Accept the old spelling(s) ``old`` of the option ``new`` (whose value lands in ``dest``),
    hidden from ``--help`` (listed in ``parser.aliases``); using one prints a deprecation line. A
    name without a leading ``-`` is an optional positional argument."""
    if isinstance(parser, Parser):
        parser.aliases.update({name: new for name in old})
    if old[0].startswith("-"):
        parser.add_argument(*old, dest=f"_{dest}_alias", action=_DeprecatedAlias, new=new,
                            target=dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS,
                            **kw)  # fmt: skip
    else:
        parser.add_argument(f"_{dest}_alias", metavar=old[0], nargs="?", default=argparse.SUPPRESS,
                            action=_DeprecatedAlias, new=new, target=dest,
                            help=argparse.SUPPRESS)  # fmt: skip


def _option(
    parser: Parser, flags: Sequence[str], dest: str, help: str, required: bool, **kw: Any
) -> None:
    parser.add_argument(*flags, dest=dest, help=f"{help} (required)" if required else help, **kw)
    if required:
        parser.require(dest, "/".join(flags))


def add_data(parser: Parser, help: str, *, required: bool = True) -> None:
    """``--data``: raw SynthRAD data (a ``Task1`` folder, its parent or a region folder)."""
    _option(parser, ["--data"], "data", help, required)


def add_shards(parser: Parser, help: str = "", *, required: bool = True) -> None:
    """``--shards``: a shard root (path or s3://) written by ``hmss-ray prepare``."""
    help = help or "shard root written by `hmss-ray prepare` (path or s3://)"
    _option(parser, ["--shards"], "shards", help, required)


def add_input(parser: Parser, help: str, *, required: bool = True) -> None:
    """``-i/--input``: the one input volume."""
    _option(parser, ["-i", "--input"], "input", help, required)


def add_output(
    parser: Parser, help: str, *, default: str | None = None, required: bool | None = None
) -> None:
    """``-o/--output``: where the result goes; required (by default) when there is no
    ``default``."""
    required = default is None if required is None else required
    _option(parser, ["-o", "--output"], "output", help, required, default=default)


def add_model(parser: Parser, help: str = "", *, required: bool = True) -> None:
    """``--model``: a registry entry or checkpoint (path or s3://)."""
    help = help or "registry entry or checkpoint (path or s3://)"
    _option(parser, ["--model"], "model", help, required)


def add_init_from(parser: Parser, help: str) -> None:
    """``--init-from``: weights a new model starts from (read as data, never code)."""
    parser.add_argument("--init-from", help=help)


def add_config_args(
    parser: argparse.ArgumentParser, *, config: bool = True, sets: str = ""
) -> None:
    """``--config FILE`` and repeatable ``--set KEY=VALUE`` (values parsed as YAML)."""
    if config:
        parser.add_argument("--config", help="experiment YAML (default: the built-in defaults)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=sets
        or "dotted config override, repeatable: --set loss.lambda_l1=5 --set data.image_size=128",
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
    from hmss_ray.resources import config_path

    return load_config(config_path(args.config), [*args.set, *extra])


def run(
    command: Callable[[argparse.Namespace], int],
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv`` and call ``command``; a person's mistake is one line and exit status 2."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or an argument error (2, already printed)
        return int(exc.code or 0)
    try:
        return command(args)
    except (UserError, FileNotFoundError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (a missing file as ``path: reason``)."""
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
