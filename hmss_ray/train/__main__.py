"""``python -m hmss_ray.train``: one Ray Train run of the cascade GAN.

On a cluster set ``RAY_ADDRESS`` (or use ``ray job submit``) and pass ``s3://`` URIs.
Re-running with the same ``--name`` resumes that run from its latest checkpoint, only with the
same data and config (:mod:`hmss_ray.train.identity`); otherwise it exits 2 with one line.
"""

from __future__ import annotations

import argparse
import sys

from hmss_ray import cli

EXAMPLES = """example:
  python -m hmss_ray.train --config configs/demo.yaml --data data/shards \\
      --storage outputs/runs --set train.num_workers=2
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser("hmss_ray.train", "One Ray Train run of the HMSS cascade GAN.", EXAMPLES)
    cli.add_config_args(parser)
    parser.add_argument("--data", required=True, help="shard root written by hmss_ray.prepare")
    parser.add_argument("--storage", default="outputs/runs", help="checkpoint root (path, s3://)")
    parser.add_argument("--name", help="run name; an existing name resumes that run")
    parser.add_argument(
        "--allow-random-features",
        action="store_true",
        help="let a GPU run (train.use_gpu) use seeded random VGG/Inception features when "
        "pretrained weights are missing, instead of refusing to start "
        "(= --set train.allow_random_features=true)",
    )
    return parser


def command(args: argparse.Namespace) -> int:
    from hmss_ray import storage
    from hmss_ray.cluster import init_ray
    from hmss_ray.config import describe
    from hmss_ray.data.manifest import read_manifest
    from hmss_ray.metrics.features import check_pretrained
    from hmss_ray.registry.names import entry_name
    from hmss_ray.train import identity
    from hmss_ray.train.trainer import build_trainer, default_run_name

    extra = ["train.allow_random_features=true"] if args.allow_random_features else []
    cfg = cli.config_from_args(args, extra)
    check_pretrained(cfg)  # before Ray starts: a GPU run without its weights is an error line
    name = args.name or default_run_name(cfg)
    entry_name(name)  # a path under --storage: it may not climb out of it
    print(describe(cfg))
    run_uri = storage.join(args.storage, name)
    # the same name resumes only the same run; the old run's files are untouched otherwise
    ident = identity.identity(cfg, read_manifest(args.data).data_hash)
    if identity.check_or_record(run_uri, ident, name):
        print(f"[hmss] resuming run {name} from {run_uri}")
    else:
        storage.write_text(storage.join(run_uri, "config.yaml"), cfg.to_yaml())
    init_ray()
    result = build_trainer(cfg, args.data, args.storage, name).fit()
    metrics = result.metrics or {}
    checkpoint = result.checkpoint.path if result.checkpoint else None
    print(f"[hmss] run {name} finished; checkpoint: {checkpoint}")
    shown = {k: metrics[k] for k in ("score", "ssim", "mae_hu", "psnr", "fid") if k in metrics}
    print(f"[hmss] final validation: {shown}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(command, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
