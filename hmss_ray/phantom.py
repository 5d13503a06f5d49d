"""``python -m hmss_ray.phantom``: write a paired MR/CT phantom data set in the SynthRAD2023 layout.

Writes ``<out>/Task1/{brain,pelvis}/<id>/{mr,ct,mask}.nii.gz`` (plus ``overview/``), deterministic
for ``--seed``. ``--corrupt K`` adds K deliberately broken cases (truncated gzip, NaNs, empty
mask, ...) to show how ``hmss_ray.prepare`` skips and reports them.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence

from hmss_ray.data.phantom import CENTRES, DEFAULT_SHAPES, PhantomSummary, write_dataset
from hmss_ray.data.synthrad import CaseId

EXAMPLES = """examples:
  python -m hmss_ray.phantom --out data/phantom --cases 6
  python -m hmss_ray.phantom --out data/phantom-corrupt --cases 6 --corrupt 4 --mr-only 1
  python -m hmss_ray.phantom --out data/phantom-big --cases 30 --regions brain --shape 256 256 64
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hmss_ray.phantom",
        description="Write deterministic head/pelvis MR+CT phantoms in the SynthRAD2023 layout.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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


def summary_table(summary: PhantomSummary) -> str:
    """Cases written per region and centre, by kind, then the corrupt ones and what is wrong."""
    rows: Counter[tuple[str, str, str]] = Counter()
    for kind, ids in (("paired", summary.paired), ("mr_only", summary.mr_only)):
        for text in ids:
            case_id = CaseId.parse(text)
            rows[case_id.region, case_id.centre, kind] += 1
    for text in summary.corrupt:
        case_id = CaseId.parse(text)
        rows[case_id.region, case_id.centre, "corrupt"] += 1
    lines = [f"{'region':<7} {'centre':<6} {'paired':>6} {'mr_only':>7} {'corrupt':>7}"]
    for region, centre in sorted({(r, c) for r, c, _ in rows}):
        counts = [rows[region, centre, kind] for kind in ("paired", "mr_only", "corrupt")]
        lines.append(f"{region:<7} {centre:<6} {counts[0]:>6} {counts[1]:>7} {counts[2]:>7}")
    lines.append(
        f"{'total':<14} {len(summary.paired):>6} {len(summary.mr_only):>7}"
        f" {len(summary.corrupt):>7}"
    )
    lines += [f"  corrupt {case_id}: {kind}" for case_id, kind in summary.corrupt.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cases < 0 or args.corrupt < 0 or args.mr_only < 0:
        print("error: --cases, --corrupt and --mr-only must be >= 0", file=sys.stderr)
        return 2
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


if __name__ == "__main__":
    sys.exit(main())
