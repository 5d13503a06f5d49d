"""Does the search pick the model the challenge would pick? (CPU, about 20 minutes)

Writes seeded whole-head brain phantoms on the config's contract grid (as ``bench.quality`` and the
demo do), prepares shards (split by patient), and trains a fixed set of trials that differ in real
ways (epochs, loss weights, 2D/2.5D, learning rate) with the single-process loop
(``hmss_ray.train.local``; Ray Tune would add start-up and scheduling on top of the same loop, and
ASHA's cuts would hide the ranking of the trials it stops, so the trials run sequentially, whole).
Each finished trial is scored

- by the new objective on the validation patients: ``hmss_ray.train.validation.validate``
  (body only, HU, per patient, KID on body-masked slices; ``tune.metric: combined``, the
  config's weights),
- by the old objective on the same slices: ``1 * (1 - SSIM) + 1 * FID / 100`` with SSIM on the
  whole [0, 1] canvas and FID of the first ``metrics.fid_max_slices`` unmasked slices (what
  validation computed before issue 26),
- by the challenge's MAE on held-out test patients (SynthRAD2023 per-patient 3D metrics, mean over
  patients; ``bench.quality.per_patient``): the truth the objectives should rank by.

For each objective: the Spearman rank correlation with the held-out MAE, and the regret, the
held-out MAE of the objective's pick over the best trial's, in percent.

    python -m bench.selection --json bench/results/selection.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from bench import DEMO, command_line, machine_facts, print_header, table, write_json
from bench.cascade_vs_baseline import load_split
from bench.quality import Data, generator_predict, per_patient, train, with_channels
from hmss_ray.config import TTA, ExperimentConfig, load_config, parse_overrides
from hmss_ray.data.phantom import write_dataset
from hmss_ray.data.prepare import prepare_dataset
from hmss_ray.inference.ensemble import Predictor
from hmss_ray.metrics import SliceMetrics
from hmss_ray.metrics.features import Kind, load_extractor
from hmss_ray.train.validation import validate

# name -> overrides; every trial ends with the same LR decay, only what is named differs
TRIALS: dict[str, dict[str, Any]] = {
    "25d_e6": {"train.stage_epochs": [1, 1, 4]},
    "25d_e12": {"train.stage_epochs": [1, 1, 10]},
    "25d_e20": {"train.stage_epochs": [1, 1, 18]},
    "2d_e6": {"train.stage_epochs": [1, 1, 4], "data.context_slices": 0},
    "2d_e12": {"train.stage_epochs": [1, 1, 10], "data.context_slices": 0},
    "25d_e12_l1_5": {"train.stage_epochs": [1, 1, 10], "loss.lambda_l1": 5.0},
    "25d_e12_adv_2": {"train.stage_epochs": [1, 1, 10], "loss.lambda_adv": 2.0},
    "25d_e12_lr_2e-4": {"train.stage_epochs": [1, 1, 10], "optim.lr_g": 2.0e-4},
}


def _chunks(data: Data, size: int = 64):
    for start in range(0, len(data["mr"]), size):
        yield {k: v[start : start + size] for k, v in data.items()}


def old_objective(cfg: ExperimentConfig, generator: torch.nn.Module, val: Data) -> dict:
    """The pre-issue-26 score: whole-canvas SSIM on [0, 1] and unmasked FID (random features
    when the Inception weights are absent), ``1 * (1 - ssim) + 1 * fid / 100``."""
    inception = load_extractor(Kind.INCEPTION, cfg.metrics.inception_weights)
    meter = SliceMetrics(cfg.data.hu_range, inception=inception,
                         fid_max_slices=cfg.metrics.fid_max_slices)  # fmt: skip
    with torch.no_grad():
        for batch in _chunks(val):
            sct = generator(torch.as_tensor(batch["mr"]))["high"].float()
            meter.update(torch.as_tensor(batch["ct"]), sct, torch.as_tensor(batch["mask"]))
    m = meter.compute()
    return {"old_score": (1 - m["ssim"]) + m["fid"] / 100.0, "canvas_ssim": m["ssim"],
            "fid": m["fid"]}  # fmt: skip


def run_trial(cfg: ExperimentConfig, splits: dict[str, Data], log=print) -> dict[str, float]:
    """Train one trial; its new and old validation objectives and held-out test metrics."""
    channels = cfg.in_channels
    train_set, val, test = (with_channels(splits[s], channels) for s in ("train", "val", "test"))
    started = time.perf_counter()
    generator, _ = train(cfg, train_set, None, log=lambda _: None)
    trained = time.perf_counter() - started
    new = validate(generator, _chunks(val), cfg)
    old = old_objective(cfg, generator.eval(), val)
    predictor = Predictor([generator], TTA.NONE, tuple(cfg.data.hu_range))
    held_out = per_patient(cfg, test, generator_predict(predictor))
    row = {
        "score": new["score"], "mae_hu": new["mae_hu"], "psnr": new["psnr"], "ssim": new["ssim"],
        "kid": new["kid"], "kid_std": new["kid_std"], **old,
        "test_mae_hu": held_out["mae_hu"], "test_ssim": held_out["ssim"],
        "train_s": trained,
    }  # fmt: skip
    log("[selection] " + " ".join(f"{k}={v:.4g}" for k, v in row.items()))
    return row


def ranking(scores: list[float], truth: list[float]) -> dict[str, float]:
    """Spearman of an objective with the held-out MAE, and the regret of its pick in percent."""
    rho = float(spearmanr(scores, truth).statistic)
    pick = int(np.argmin(scores))
    regret = (truth[pick] - min(truth)) / min(truth) * 100
    return {"spearman": rho, "regret_pct": float(regret), "pick": pick}


def bench(
    cfg: ExperimentConfig,
    cases: int,
    workdir: Path,
    trials: list[str],
    overrides: dict[str, Any] | None = None,
    log=print,
) -> dict:
    """Write phantoms, prepare shards, run and score ``trials``; the JSON payload.

    ``overrides`` apply to every trial after its own (e.g. shorter schedules for a smoke run).
    """
    overrides = overrides or {}
    spacing = cfg.data.spacing["brain"]
    write_dataset(workdir / "raw", cases=cases, regions=("brain",), seed=0, spacing=spacing)
    uri = str(workdir / "shards")
    prepare_dataset(workdir / "raw", uri, cfg)
    splits = {s: load_split(uri, s, with_ids=True) for s in ("train", "val", "test")}
    rows = {}
    for name in trials:
        log(f"[selection] trial {name}: {TRIALS[name]}")
        rows[name] = run_trial(cfg.replace({**TRIALS[name], **overrides}), splits, log)
    truth = [r["test_mae_hu"] for r in rows.values()]
    names = list(rows)

    def rank(key: str) -> dict[str, Any]:
        out = ranking([r[key] for r in rows.values()], truth)
        return {**out, "pick": names[out["pick"]]}

    kid_std = float(np.median([r["kid_std"] for r in rows.values()]))
    kids = [r["kid"] for r in rows.values()]
    return {
        "trials": len(rows),
        "objective": rank("score"),
        "old_objective": rank("old_score"),
        "mae_only_objective": rank("mae_hu"),
        "best_trial": names[int(np.argmin(truth))],
        "kid_noise": {"median_kid_std": kid_std, "kid_range": float(max(kids) - min(kids))},
        "rows": rows,
        "trial_overrides": {n: TRIALS[n] for n in names},
        "cases": {s: sorted(set(map(str, d["case_id"]))) for s, d in splits.items()},
        "slices": {s: len(d["mr"]) for s, d in splits.items()},
    }


def report(result: dict) -> str:
    keys = ("score", "old_score", "mae_hu", "ssim", "kid", "kid_std", "canvas_ssim", "fid",
            "test_mae_hu")  # fmt: skip
    body = [[n, *(f"{r[k]:.4g}" for k in keys)] for n, r in result["rows"].items()]
    lines = [table(("trial", *keys), body), ""]
    for key in ("objective", "old_objective", "mae_only_objective"):
        r = result[key]
        lines.append(f"{key}: spearman {r['spearman']:.3f}, regret {r['regret_pct']:.2f} % "
                     f"(picks {r['pick']})")  # fmt: skip
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(DEMO), help="experiment YAML (default: demo)")
    parser.add_argument("--cases", type=int, default=16, help="brain phantom cases (default 16)")
    parser.add_argument("--trials", nargs="+", choices=list(TRIALS), default=list(TRIALS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every trial (repeatable)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--json", help="write the results as JSON to this path")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, ["data.regions=[brain]", *args.set])
    facts = machine_facts()
    print_header("selection: does the objective rank trials as the held-out MAE does?", facts)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hmss-selection-") as tmp:
        forced = parse_overrides(args.set)
        result = bench(cfg, args.cases, Path(tmp), args.trials, forced)
    result["total_seconds"] = time.perf_counter() - start
    result["machine"] = facts
    result.update(command=command_line(), date=facts["date"], overrides=args.set)
    print(report(result))
    print(f"{result['total_seconds'] / 60:.1f} min in all")
    if args.json:
        print(f"wrote {write_json(args.json, result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
