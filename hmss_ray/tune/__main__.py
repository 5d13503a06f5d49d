"""``hmss-ray tune`` (``python -m hmss_ray.tune``): the search, the main job.

Re-running the same command resumes it. Before any trial starts, a pre-flight checks that the
search state and the registry can be written and that the pretrained-weights policy holds
(:mod:`hmss_ray.tune.preflight`), one line each.
"""

from __future__ import annotations

import argparse
import sys

from hmss_ray import cli

EXAMPLES = """examples:
  hmss-ray tune --config demo --space demo --shards data/shards \\
      --storage outputs/tune -o outputs/registry
  ray job submit --working-dir . -- hmss-ray tune --config brain --space losses \\
      --shards s3://bucket/shards --storage s3://bucket/tune -o s3://bucket/registry

--config and --space take a file or a packaged one by name (hmss_ray/configs/, tune_spaces/).

exit status: 0 winner written to the registry, 2 bad arguments or config, 130 interrupted
(run the same command again to resume)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        "tune",
        "Ray Tune + Optuna search over the HMSS cascade; the winner goes to the model registry.",
        EXAMPLES,
    )
    cli.add_config_args(parser)
    parser.add_argument("--space", required=True, help="search space YAML or a packaged name")
    cli.add_shards(parser)
    cli.add_alias(parser, "--data", dest="shards", new="--shards")
    parser.add_argument("--storage", default="outputs/tune", help="search state root (path, s3://)")
    parser.add_argument("--name", help="search name (default: tune.name); same name resumes")
    cli.add_output(parser, "model registry root the winner goes to (default: tune.registry)",
                   required=False)  # fmt: skip
    cli.add_alias(parser, "--registry", dest="output", new="-o/--output")
    parser.add_argument("--entry", help="registry entry name (default: the search name)")
    cli.add_init_from(
        parser,
        "warm-start every trial from this registry entry (the generator) or training "
        "checkpoint (both networks; winner.json's 'checkpoint'); weights only, read as data",
    )
    parser.add_argument(
        "--allow-random-features",
        action="store_true",
        help="let a GPU run (train.use_gpu) use seeded random VGG/Inception features when "
        "pretrained weights are missing, instead of refusing to start "
        "(= --set train.allow_random_features=true)",
    )
    return parser


def command(args: argparse.Namespace) -> int:
    from hmss_ray import resources
    from hmss_ray.cluster import init_ray
    from hmss_ray.config import describe
    from hmss_ray.train.schedule import asha_rungs, check_asha
    from hmss_ray.tune import report
    from hmss_ray.tune.preflight import preflight
    from hmss_ray.tune.search import SearchInterrupted, run_search
    from hmss_ray.tune.space import load_space, validate_space

    extra = [f"train.init_from={args.init_from}"] if args.init_from else []
    if args.allow_random_features:
        extra.append("train.allow_random_features=true")
    cfg = cli.config_from_args(args, extra)
    check_asha(cfg)
    space = load_space(resources.space_path(args.space))
    validate_space(space, cfg)
    name = args.name or cfg.tune.name
    registry = args.output or cfg.tune.registry
    print(describe(cfg))
    print(f"[hmss] search space {space.name}: " + ", ".join(p.key for p in space.params))
    print(f"[hmss] ASHA compares trials after epochs {asha_rungs(cfg)}")
    preflight(cfg, args.storage, registry)  # before Ray starts, not in every trial's workers
    init_ray()
    try:
        result = run_search(
            cfg, space, args.shards, args.storage, name, registry, args.entry or name
        )
    except SearchInterrupted as exc:
        print(f"[hmss] {exc}", file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    print(report.markdown_rows(result.rows))
    print(f"[hmss] report: {result.report}")
    print(
        f"[hmss] winner {result.winner.trial_id} (score {result.winner.score:.4f}) "
        f"-> {result.registry_entry}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(command, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
