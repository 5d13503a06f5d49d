"""``hmss-ray prepare`` (``python -m hmss_ray.prepare``): SynthRAD folders (or the phantom) ->
Parquet slice shards.

The work is :func:`hmss_ray.data.prepare.prepare_dataset`; this module parses and prints.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from hmss_ray import cli

EXIT_OK, EXIT_NOTHING, EXIT_USAGE, EXIT_STRICT = 0, 1, cli.EXIT_USAGE, 3
EXAMPLES = """examples:
  hmss-ray phantom -o data/phantom --cases 6
  hmss-ray prepare --data data/phantom -o data/shards
  hmss-ray prepare --data /data/SynthRAD2023/Task1 -o s3://bucket/shards \\
      --config configs/brain.yaml --set data.context_slices=1 --workers 8
  ray job submit --working-dir . -- hmss-ray prepare --data /shared/Task1 \\
      -o s3://bucket/shards --workers 8        # cases as Ray tasks over the cluster's nodes

--config takes a file or a packaged config by name (brain, pelvis, demo, ...)

exit status: 0 written (skipped cases are listed), 1 nothing usable, 2 bad arguments or config,
3 --strict and some case has a problem (nothing written)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        "prepare",
        "Validate, split, normalise and slice SynthRAD cases into Parquet shards.",
        EXAMPLES,
    )
    cli.add_data(parser, "SynthRAD Task1 folder, its parent, or a region folder")
    cli.add_output(parser, "shard root to write: a local path or s3://bucket/prefix")
    cli.add_alias(parser, "--out", dest="output", new="-o/--output")
    cli.add_config_args(parser)
    parser.add_argument("--strict", action="store_true", help="any bad case fails the run (exit 3)")
    parser.add_argument(
        "--workers", type=int, default=1,
        help="processes (default 1); with Ray, 2 x N cases in flight as Ray tasks",
    )  # fmt: skip
    parser.add_argument(
        "--ray", action="store_true",
        help="run cases as Ray tasks (the default when RAY_ADDRESS is set, e.g. in a Ray job); "
        "--data must then be readable from every node",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def command(args: argparse.Namespace) -> int:
    from hmss_ray.data.manifest import summary_table
    from hmss_ray.data.prepare import PrepareError, prepare_dataset

    cfg = cli.config_from_args(args)
    if args.workers < 1:
        raise cli.UserError(f"--workers must be >= 1, got {args.workers}")
    on_ray = args.ray or bool(os.environ.get("RAY_ADDRESS"))
    if on_ray:
        from hmss_ray.cluster import init_ray

        init_ray()
    try:
        report = prepare_dataset(
            args.data, args.output, cfg, workers=args.workers, ray_tasks=on_ray,
            strict=args.strict, progress=not args.quiet,
        )  # fmt: skip
    except PrepareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOTHING
    if report.manifest is None:
        print(f"--strict: {len(report.skipped)} case(s) have problems; nothing written:")
        for entry in report.skipped:
            print("\n".join(f"  {entry.case_id}  {reason}" for reason in entry.reasons))
        return EXIT_STRICT
    print(f"prepared {args.data} -> {args.output}")
    print(summary_table(report.manifest))
    print(
        f"files: {report.written} shard(s) written, {report.unchanged} unchanged, "
        f"{len(report.removed)} stale removed"
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(command, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
