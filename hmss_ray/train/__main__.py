"""``python -m hmss_ray.train``: one Ray Train run of the cascade GAN.

Example:
    python -m hmss_ray.train --config configs/demo.yaml --data data/shards --storage outputs/runs

On a cluster set ``RAY_ADDRESS`` (or use ``ray job submit``) and pass ``s3://`` URIs.
Re-running with the same ``--name`` resumes that run from its latest checkpoint.
"""

from __future__ import annotations

import argparse
import sys

from hmss_ray import storage
from hmss_ray.cluster import init_ray
from hmss_ray.config import ConfigError, describe, load_config
from hmss_ray.train.trainer import build_trainer, default_run_name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m hmss_ray.train",
        description=__doc__.split("\n\n")[0],
        epilog="example: python -m hmss_ray.train --config configs/demo.yaml "
        "--data data/shards --storage outputs/runs --set train.num_workers=2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="experiment YAML (default: built-in defaults)")
    parser.add_argument("--data", required=True, help="shard root written by hmss_ray.prepare")
    parser.add_argument("--storage", default="outputs/runs", help="checkpoint root (path, s3://)")
    parser.add_argument("--name", help="run name; an existing name resumes that run")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted config override, repeatable (e.g. loss.lambda_l1=5)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    name = args.name or default_run_name(cfg)
    print(describe(cfg))
    init_ray()
    trainer = build_trainer(cfg, args.data, args.storage, name)
    result = trainer.fit()
    storage.write_text(storage.join(args.storage, name, "config.yaml"), cfg.to_yaml())
    metrics = result.metrics or {}
    print(
        f"[hmss] run {name} finished; checkpoint: "
        f"{result.checkpoint.path if result.checkpoint else None}"
    )
    shown = {k: metrics[k] for k in ("score", "ssim", "mae_hu", "psnr", "fid") if k in metrics}
    print(f"[hmss] final validation: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
