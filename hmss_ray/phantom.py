"""``hmss-ray phantom`` (``python -m hmss_ray.phantom``): write paired MR/CT phantoms in a
SynthRAD layout.

Edition 2023 (default): ``<output>/Task1/{brain,pelvis}/<id>/{mr,ct,mask}.nii.gz`` plus
``overview/``; edition 2025: ``<output>/Task1/{HN,TH,AB}/<id>/{mr,ct,mask}.mha`` plus
``overviews/``.
Each case also gets ``labels`` (tissue per voxel). Deterministic for ``--seed``. Full resolution
by default; ``--coarse``, ``--shape`` or ``--spacing`` render the same patients on coarser grids.
``--corrupt K`` adds K deliberately broken cases to show how ``hmss_ray.prepare`` skips them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from hmss_ray import cli, storage
from hmss_ray.data.phantom import (
    COARSE_SHAPE,
    EDITIONS,
    REGIONS,
    check_regions,
    summary_table,
    write_dataset,
)

EXAMPLES = """examples:
  hmss-ray phantom -o data/phantom --cases 6
  hmss-ray phantom -o data/phantom-small --cases 12 --regions brain --coarse
  hmss-ray phantom -o data/phantom-corrupt --cases 6 --corrupt 4 --mr-only 1
  hmss-ray phantom --edition 2025 -o data/phantom2025 --cases 5
  hmss-ray phantom -o data/phantom-2mm --regions pelvis --spacing 2 2 5
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        "phantom",
        "Write deterministic MR+CT phantoms (brain, pelvis; or HN, TH, AB) in a SynthRAD layout.",
        EXAMPLES,
    )
    cli.add_output(parser, "folder to write (Task1/ is created in it)")
    cli.add_alias(parser, "--out", dest="output", new="-o/--output")
    parser.add_argument("--edition", choices=list(EDITIONS), default="2023", help="(2023)")
    parser.add_argument("--cases", type=int, default=6, help="paired cases per region (6)")
    parser.add_argument(
        "--regions", nargs="+", choices=list(REGIONS), help="default: the edition's regions"
    )
    parser.add_argument("--seed", type=int, default=0, help="same seed, same volumes (0)")
    parser.add_argument("--corrupt", type=int, default=0, help="extra broken cases (0)")
    parser.add_argument("--mr-only", type=int, default=0, help="extra MR-only cases per region")
    grid = parser.add_mutually_exclusive_group()
    grid.add_argument(
        "--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"),
        help="voxel size in mm (default: the data set's: brain 1, pelvis 1x1x2.5, 2025 1x1x3)",
    )  # fmt: skip
    grid.add_argument(
        "--shape", type=int, nargs=3, metavar=("X", "Y", "Z"),
        help="fit each region's field of view into at most this many voxels",
    )  # fmt: skip
    grid.add_argument(
        "--coarse", action="store_true",
        help=f"the same as --shape {' '.join(map(str, COARSE_SHAPE))} (tests, CI, the demo)",
    )  # fmt: skip
    parser.add_argument("--no-labels", action="store_true", help="do not write labels volumes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def command(args: argparse.Namespace) -> int:
    if args.cases < 0 or args.corrupt < 0 or args.mr_only < 0:
        raise cli.UserError("--cases, --corrupt and --mr-only must be >= 0")
    if args.spacing is not None and min(args.spacing) <= 0:
        raise cli.UserError("--spacing must be > 0 mm")
    if args.shape is not None and min(args.shape) < 1:
        raise cli.UserError("--shape must be >= 1 voxel")
    try:
        regions = check_regions(args.edition, args.regions)
    except ValueError as exc:
        raise cli.UserError(str(exc)) from None
    check_out(Path(args.output))
    # written aside, renamed into place when complete (storage.output_dir)
    with storage.output_dir(args.output) as out:
        summary = write_dataset(
            str(out),
            cases=args.cases,
            regions=regions,
            seed=args.seed,
            corrupt=args.corrupt,
            mr_only=args.mr_only,
            shape=COARSE_SHAPE if args.coarse else args.shape,
            spacing=args.spacing,
            progress=not args.quiet,
            edition=args.edition,
            labels=not args.no_labels,
        )
        _remember(out)
    print(f"wrote {Path(args.output) / summary.root.name}")
    print(summary_table(summary))
    return 0


MARKER = ".hmss-phantom.json"  # the case folders this command wrote into --out


def _case_dirs(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in out.glob("Task1/*/*") if p.is_dir()}


def check_out(out: Path) -> None:
    """Refuse an ``--output`` that holds anything this command did not write (real cases)."""
    if not out.exists() or not any(out.iterdir()):
        return
    marker = out / MARKER
    ours = set(json.loads(marker.read_text())["cases"]) if marker.is_file() else set()
    foreign = sorted(_case_dirs(out) - ours)
    if not marker.is_file() or foreign:
        shown = f" (e.g. {foreign[0]})" if foreign else ""
        raise cli.UserError(
            f"--output {out} holds files this command did not write{shown}: phantoms would "
            "overwrite them; choose an empty or new folder"
        )


def _remember(out: Path) -> None:
    (out / MARKER).write_text(json.dumps({"cases": sorted(_case_dirs(out))}, indent=1) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(command, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
