"""``python -m hmss_ray.phantom``: write a paired MR/CT phantom data set in the SynthRAD2023 layout.

Writes ``<out>/Task1/{brain,pelvis}/<id>/{mr,ct,mask}.nii.gz`` (plus ``overview/``), deterministic
for ``--seed``. ``--corrupt K`` adds K deliberately broken cases (truncated gzip, NaNs, empty
mask, ...) to show how ``hmss_ray.prepare`` skips and reports them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hmss_ray import cli
from hmss_ray.data.phantom import CENTRES, DEFAULT_SHAPES, summary_table, write_dataset

EXAMPLES = """examples:
  python -m hmss_ray.phantom --out data/phantom --cases 6
  python -m hmss_ray.phantom --out data/phantom-corrupt --cases 6 --corrupt 4 --mr-only 1
  python -m hmss_ray.phantom --out data/phantom-big --cases 30 --regions brain --shape 256 256 64
"""


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        "hmss_ray.phantom",
        "Write deterministic head/pelvis MR+CT phantoms in the SynthRAD2023 layout.",
        EXAMPLES,
    )
    parser.add_argument("--out", required=True, help="folder to write (Task1/ is created in it)")
    parser.add_argument("--cases", type=int, default=6, help="paired cases per region (6)")
    parser.add_argument("--regions", nargs="+", default=list(CENTRES), choices=list(CENTRES))
    parser.add_argument("--seed", type=int, default=0, help="same seed, same volumes (0)")
    parser.add_argument("--corrupt", type=int, default=0, help="extra broken cases (0)")
    parser.add_argument("--mr-only", type=int, default=0, help="extra MR-only cases per region")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="volume shape for every region (defaults: "
        + ", ".join(f"{r} {'x'.join(map(str, s))}" for r, s in DEFAULT_SHAPES.items())
        + "); in-plane size varies +-4 per case",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def command(args: argparse.Namespace) -> int:
    if args.cases < 0 or args.corrupt < 0 or args.mr_only < 0:
        raise cli.UserError("--cases, --corrupt and --mr-only must be >= 0")
    summary = write_dataset(
        args.out,
        cases=args.cases,
        regions=args.regions,
        seed=args.seed,
        corrupt=args.corrupt,
        mr_only=args.mr_only,
        shape=args.shape,
        progress=not args.quiet,
    )
    print(f"wrote {summary.root}")
    print(summary_table(summary))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(command, _parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
