"""Cascade GAN vs the per-centre MR-intensity baseline on held-out phantom cases (CPU, minutes).

Writes brain phantoms, prepares shards, fits the baseline on the training slices, trains the
cascade with the single-process loop on the same slices, and scores both on the test split
(patients never seen in training): MAE in HU inside the mask, bone Dice (HU >= 250), PSNR, SSIM.

    python -m bench.cascade_vs_baseline                 # demo config, 12 brain cases
    python -m bench.cascade_vs_baseline --stage-epochs 2 2 8 --json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from bench import DEMO
from hmss_ray.config import ExperimentConfig, load_config
from hmss_ray.data.phantom import COARSE_SHAPE, write_dataset
from hmss_ray.data.prepare import prepare_dataset
from hmss_ray.data.shards import iter_batches
from hmss_ray.metrics import SliceMetrics
from hmss_ray.models.baseline import IntensityBaseline
from hmss_ray.train.local import run_local

KEYS = ("mr", "ct", "mask", "centre")


def load_split(uri: str, split: str, with_ids: bool = False) -> dict[str, np.ndarray]:
    parts = list(iter_batches(uri, split, 256))
    if not parts:
        raise SystemExit(f"the {split!r} split is empty: write more phantom cases")
    keys = (*KEYS, "case_id") if with_ids else KEYS
    return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in keys}


def shuffled(data: dict[str, np.ndarray], batch_size: int, seed: int) -> Iterator[dict]:
    order = np.random.default_rng(seed).permutation(len(data["mr"]))
    for start in range(0, len(order) - batch_size + 1, batch_size):
        rows = order[start : start + batch_size]
        yield {k: data[k][rows] for k in KEYS}


def score(cfg: ExperimentConfig, data: dict[str, np.ndarray], predict) -> dict[str, float]:
    meter = SliceMetrics(cfg.data.hu_range, cfg.metrics.bone_threshold_hu)
    for start in range(0, len(data["mr"]), 64):
        batch = {k: v[start : start + 64] for k, v in data.items()}
        sct = torch.as_tensor(predict(batch))
        meter.update(torch.as_tensor(batch["ct"]), sct, torch.as_tensor(batch["mask"]))
    return meter.compute()


def compare(cfg: ExperimentConfig, cases: int, workdir: Path, log=print) -> dict:
    """Train and score both methods; ``{"cascade": metrics, "baseline": metrics, ...}``."""
    write_dataset(
        workdir / "raw", cases=cases, regions=("brain",), seed=cfg.train.seed, shape=COARSE_SHAPE
    )
    uri = str(workdir / "shards")
    prepare_dataset(workdir / "raw", uri, cfg)
    train, test = load_split(uri, "train"), load_split(uri, "test")
    baseline = IntensityBaseline().fit([train])

    start = time.perf_counter()
    batch = cfg.train.batch_size
    run = run_local(cfg, lambda epoch: shuffled(train, batch, epoch), log=log)
    train_s = time.perf_counter() - start
    generator = run.generator.eval()

    def cascade(b: dict) -> torch.Tensor:
        with torch.no_grad():
            return generator(torch.as_tensor(b["mr"]))["high"]

    return {
        "cascade": score(cfg, test, cascade),
        "baseline": score(cfg, test, baseline.predict_batch),
        "train_slices": len(train["mr"]),
        "test_slices": len(test["mr"]),
        "test_cases": len(set(iter_case_ids(uri, "test"))),
        "train_seconds": train_s,
    }


def iter_case_ids(uri: str, split: str) -> Iterator[str]:
    for part in iter_batches(uri, split, 256):
        yield from part["case_id"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(DEMO), help="experiment YAML (default: demo)")
    parser.add_argument("--cases", type=int, default=12, help="brain phantom cases (default 12)")
    parser.add_argument("--stage-epochs", type=int, nargs=3, default=None, metavar="N")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"data.regions": ["brain"], "augment.enabled": False}
    if args.stage_epochs:
        overrides["train.stage_epochs"] = args.stage_epochs
    cfg = load_config(args.config, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        result = compare(cfg, args.cases, Path(tmp))
    print(f"\nheld-out phantom test split: {result['test_cases']} cases, "
          f"{result['test_slices']} slices (trained on {result['train_slices']} slices, "
          f"{result['train_seconds']:.0f} s)")  # fmt: skip
    print(f"{'method':<10} {'MAE HU':>8} {'bone Dice':>10} {'PSNR':>7} {'SSIM':>6}")
    for name in ("baseline", "cascade"):
        m = result[name]
        row = f"{m['mae_hu']:8.1f} {m['bone_dice']:10.3f} {m['psnr']:7.2f} {m['ssim']:6.3f}"
        print(f"{name:<10} {row}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
