"""``hmss-ray train`` (``python -m hmss_ray.train``): one Ray Train run of the cascade GAN.

On a cluster set ``RAY_ADDRESS`` (or use ``ray job submit``) and pass ``s3://`` URIs.
Re-running with the same ``--name`` resumes that run from its latest checkpoint, only with the
same data and config (:mod:`hmss_ray.train.identity`); otherwise it exits 2 with one line.
``--init-from`` starts a new run from the weights of a registry entry or checkpoint.
"""

from __future__ import annotations

import argparse
import sys

from hmss_ray import cli
from hmss_ray.config import ExperimentConfig

EXAMPLES = """example:
  hmss-ray train --config demo --shards data/shards -o outputs/runs --set train.num_workers=2
  hmss-ray train --config brain --shards s3://bucket/shards -o s3://bucket/runs \\
      --init-from s3://bucket/registry/brain       # fine-tune: weights only, read as data
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser("train", "One Ray Train run of the HMSS cascade GAN.", EXAMPLES)
    cli.add_config_args(parser)
    cli.add_shards(parser)
    cli.add_alias(parser, "--data", dest="shards", new="--shards")
    cli.add_output(parser, "run root: <output>/<name>/ holds the run's checkpoints (path, s3://)",
                   default="outputs/runs")  # fmt: skip
    cli.add_alias(parser, "--storage", dest="output", new="-o/--output")
    parser.add_argument("--name", help="run name; an existing name resumes that run")
    parser.add_argument(
        "--allow-random-features",
        action="store_true",
        help="let a GPU run (train.use_gpu) use seeded random VGG/Inception features when "
        "pretrained weights are missing, instead of refusing to start "
        "(= --set train.allow_random_features=true)",
    )
    cli.add_init_from(
        parser,
        "start from the weights of this registry entry (the generator) or training checkpoint "
        "(both networks); weights only, loaded as data (= --set train.init_from=URI)",
    )
    return parser


def run_config(args: argparse.Namespace) -> ExperimentConfig:
    """The run's config: ``--config``, every ``--set``, then what the flags stand for."""
    extra = ["train.allow_random_features=true"] if args.allow_random_features else []
    if args.init_from:
        extra.append(f"train.init_from={args.init_from}")
    return cli.config_from_args(args, extra)


def command(args: argparse.Namespace) -> int:
    cfg = run_config(args)  # a wrong key or value is an error line before Ray is imported
    from hmss_ray import storage
    from hmss_ray.cluster import init_ray
    from hmss_ray.config import describe
    from hmss_ray.data.manifest import read_manifest
    from hmss_ray.metrics.features import check_pretrained
    from hmss_ray.registry.names import entry_name
    from hmss_ray.train import identity
    from hmss_ray.train.trainer import build_trainer, default_run_name

    check_pretrained(cfg)  # before Ray starts: a GPU run without its weights is an error line
    name = args.name or default_run_name(cfg)
    entry_name(name)  # a path under --output: it may not climb out of it
    print(describe(cfg))
    run_uri = storage.join(args.output, name)
    # the same name resumes only the same run; the old run's files are untouched otherwise
    ident = identity.identity(cfg, read_manifest(args.shards).data_hash)
    if identity.check_or_record(run_uri, ident, name):
        print(f"[hmss] resuming run {name} from {run_uri}")
    else:
        storage.write_text(storage.join(run_uri, "config.yaml"), cfg.to_yaml())
    init_ray()
    result = build_trainer(cfg, args.shards, args.output, name).fit()
    metrics = result.metrics or {}
    checkpoint = result.checkpoint.path if result.checkpoint else None
    print(f"[hmss] run {name} finished; checkpoint: {checkpoint}")
    shown = {k: metrics[k] for k in ("score", "ssim", "mae_hu", "psnr", "kid") if k in metrics}
    print(f"[hmss] final validation: {shown}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(command, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
