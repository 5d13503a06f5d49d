"""What each part of the recipe buys, on held-out phantom patients (CPU, about 15 minutes).

Writes a fixed, seeded set of whole-head brain phantoms on the config's brain contract grid,
prepares shards with the config (split by patient), and scores on the test patients (never seen in
training) the per-centre intensity baseline and five sCT variants, each trained for the same
schedule (``train.stage_epochs`` x ``train.steps_per_epoch`` steps) with the single-process loop:

    baseline      the per-centre MR intensity -> HU curve (hmss_ray/models/baseline.py)
    lrg           the low-resolution generator alone (all epochs in the LRG stage, upsampled)
    cascade_2d    LRG + HRG on single slices (data.context_slices = 0)
    cascade_25d   LRG + HRG with the config's 2.5D context
    cascade_tta   cascade_25d with flip test-time augmentation (inference.tta, averaged in HU)
    ensemble      the best inference.ensemble_size epoch checkpoints of the cascade_25d run (by
                  validation MAE) with the same TTA: what inference.ensemble: run serves

Metrics per patient, on the contract grid (the patient's kept slices stacked): the SynthRAD2023
MAE, PSNR and SSIM (hmss_ray/metrics/synthrad2023.py) and bone Dice (HU >= 250 inside the
mask); the table shows their means over patients and the ratio of each to the baseline's.

    python -m bench.quality --json /tmp/quality.json
    python -m bench.quality --variants baseline cascade_25d --set train.stage_epochs=[1,1,4]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from bench import DEMO, command_line, machine_facts, print_header, table, write_json
from bench.cascade_vs_baseline import load_split, shuffled
from hmss_ray.config import TTA, ExperimentConfig, load_config
from hmss_ray.data.augment import augment_batch, build_augmentation
from hmss_ray.data.phantom import write_dataset
from hmss_ray.data.prepare import prepare_dataset
from hmss_ray.data.preprocess import centre_channels
from hmss_ray.inference.ensemble import Predictor
from hmss_ray.metrics.slices import bone_dice, to_hu
from hmss_ray.metrics.synthrad2023 import synthrad_metrics
from hmss_ray.models.baseline import IntensityBaseline
from hmss_ray.train.local import run_local

VARIANTS = ("baseline", "lrg", "cascade_2d", "cascade_25d", "cascade_tta", "ensemble")
METRICS = ("mae_hu", "psnr", "ssim", "bone_dice")
Data = dict[str, np.ndarray]
Predict = Callable[[Data], np.ndarray]  # batch -> sCT HU (N, S, S)


class LowOnly(nn.Module):
    """The LRG alone as a generator: its half-resolution output upsampled to the slice size."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, mr: torch.Tensor) -> dict[str, torch.Tensor]:
        low = self.generator(mr, with_high=False)["low"]
        return {"high": F.interpolate(low, size=mr.shape[-2:], mode="bilinear")}


def with_channels(data: Data, channels: int) -> Data:
    """The split with its MR cut to the ``channels`` centre slices (2D from 2.5D shards)."""
    return {**data, "mr": centre_channels(data["mr"], channels)}


def per_patient(cfg: ExperimentConfig, test: Data, predict: Predict) -> dict[str, float]:
    """Mean over test patients of the 3D SynthRAD2023 metrics and bone Dice of ``predict``."""
    rows = []
    for case in np.unique(test["case_id"]):
        rows_of = np.flatnonzero(test["case_id"] == case)
        part = {k: v[rows_of] for k, v in test.items()}
        sct = np.concatenate([predict(_batch(part, i)) for i in range(0, len(rows_of), 64)])
        ct = to_hu(torch.as_tensor(part["ct"][:, 0]), cfg.data.hu_range).numpy()
        mask = part["mask"][:, 0] > 0.5
        volume = lambda a: np.moveaxis(a, 0, 2)  # noqa: E731 - (N, S, S) slices -> (S, S, N)
        m = synthrad_metrics(volume(ct), volume(sct), volume(mask))
        dice = bone_dice(*(torch.as_tensor(volume(a)) for a in (ct, sct, mask)),
                         cfg.metrics.bone_threshold_hu)  # fmt: skip
        rows.append({"mae_hu": m["mae"], "psnr": m["psnr"], "ssim": m["ssim"], "bone_dice": dice})
    return {k: float(np.mean([r[k] for r in rows])) for k in METRICS}


def _batch(data: Data, start: int) -> Data:
    return {k: v[start : start + 64] for k, v in data.items()}


def generator_predict(predictor: Predictor) -> Predict:
    return lambda batch: predictor(torch.as_tensor(batch["mr"]))


def val_mae(cfg: ExperimentConfig, val: Data, generator: nn.Module) -> float:
    """Validation MAE (HU, inside the mask) of one checkpoint: ranks the ensemble's members."""
    predictor = Predictor([generator.eval()], TTA.NONE, tuple(cfg.data.hu_range))
    sct = np.concatenate([predictor(torch.as_tensor(_batch(val, i)["mr"]))
                          for i in range(0, len(val["mr"]), 64)])  # fmt: skip
    ct = to_hu(torch.as_tensor(val["ct"][:, 0]), cfg.data.hu_range).numpy()
    inside = val["mask"][:, 0] > 0.5
    return float(np.abs(ct - sct)[inside].mean())


def train(cfg: ExperimentConfig, data: Data, val: Data | None, log=print) -> tuple[nn.Module, list]:
    """Train ``cfg``'s cascade; (generator, [(validation MAE, snapshot)] of the last stage)."""
    snapshots: list[tuple[float, nn.Module]] = []
    last_stage_from = sum(cfg.train.stage_epochs[:2])

    def keep(epoch: int, generator: nn.Module) -> None:
        if val is not None and epoch >= last_stage_from:
            snapshot = copy.deepcopy(generator).eval()
            snapshots.append((val_mae(cfg, val, snapshot), snapshot))
            generator.train()

    augment = build_augmentation(cfg.augment, cfg.train.seed) if cfg.augment.enabled else None

    def batches(epoch: int):  # the config's paired augmentation, as Ray Data applies it
        for batch in shuffled(data, cfg.train.batch_size, cfg.train.seed + epoch):
            yield augment_batch(batch, augment) if augment is not None else batch

    run = run_local(cfg, batches, log=log, on_epoch=keep)
    return run.generator.eval(), sorted(snapshots, key=lambda item: item[0])


def real_head_t1(cfg: ExperimentConfig, generator: nn.Module, workdir: Path) -> dict[str, float]:
    """sCT HU of a real head T1 MR (nilearn's MNI152 template, shipped, nothing downloaded):
    the median and the 10th-90th percentiles inside nilearn's brain mask (eroded by 3 mm, off
    the skull); brain is 20-45 HU on CT."""
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template
    from scipy import ndimage

    from hmss_ray.inference.synthesizer import Synthesizer, synthesize_volume
    from hmss_ray.io import Volume
    from hmss_ray.models import checkpoint as ckpt

    entry = ckpt.save_checkpoint(workdir / "t1-model", generator=generator, cfg=cfg)
    image = load_mni152_template(resolution=1)
    brain = ndimage.binary_erosion(np.asarray(load_mni152_brain_mask(resolution=1).dataobj) > 0,
                                   iterations=3)  # fmt: skip
    mr = Volume(np.asarray(image.dataobj, np.float32), image.affine.copy())
    sct = synthesize_volume(Synthesizer.from_uri(str(entry), device="cpu"), mr)
    p10, median, p90 = np.percentile(sct.array[brain], [10, 50, 90])
    return {
        "brain_median_hu": float(median),
        "brain_p10_hu": float(p10),
        "brain_p90_hu": float(p90),
    }


def bench(cfg: ExperimentConfig, cases: int, workdir: Path, variants, log=print) -> dict:
    """Write phantoms, prepare shards, train and score ``variants``; the JSON payload."""
    # on the contract grid (as the demo renders them): no resampling blur in the targets
    spacing = cfg.data.spacing["brain"]
    write_dataset(workdir / "raw", cases=cases, regions=("brain",), seed=0, spacing=spacing)
    uri = str(workdir / "shards")
    prepare_dataset(workdir / "raw", uri, cfg)
    splits = {s: load_split(uri, s, with_ids=True) for s in ("train", "val", "test")}
    train_set, val, test = splits["train"], splits["val"], splits["test"]
    hu = tuple(cfg.data.hu_range)
    tta = cfg.inference.tta if cfg.inference.tta != TTA.NONE else TTA.FLIP_LR
    results: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}

    def score(name: str, predict: Predict, started: float, on: Data = test) -> None:
        results[name] = per_patient(cfg, on, predict)
        seconds[name] = time.perf_counter() - started
        log(f"[quality] {name}: " + " ".join(f"{k}={v:.4g}" for k, v in results[name].items()))

    if "baseline" in variants:
        t0 = time.perf_counter()
        base = IntensityBaseline().fit([train_set])
        score(
            "baseline",
            lambda b: to_hu(torch.as_tensor(base.predict_batch(b)[:, 0]), hu).numpy(),
            t0,
        )
    if "lrg" in variants:
        t0 = time.perf_counter()
        lrg_cfg = cfg.replace({"train.stage_epochs": [sum(cfg.train.stage_epochs), 0, 0]})
        g, _ = train(lrg_cfg, train_set, None, log)
        score("lrg", generator_predict(Predictor([LowOnly(g)], TTA.NONE, hu)), t0)
    if "cascade_2d" in variants:
        t0 = time.perf_counter()
        flat = cfg.replace({"data.context_slices": 0})
        g, _ = train(flat, with_channels(train_set, 1), None, log)
        score(
            "cascade_2d",
            generator_predict(Predictor([g], TTA.NONE, hu)),
            t0,
            with_channels(test, 1),
        )
    if {"cascade_25d", "cascade_tta", "ensemble"} & set(variants):
        t0 = time.perf_counter()
        g, snapshots = train(cfg, train_set, val, log)
        trained = time.perf_counter() - t0
        score("cascade_25d", generator_predict(Predictor([g], TTA.NONE, hu)), t0)
        score("cascade_tta", generator_predict(Predictor([g], tta, hu)), time.perf_counter())
        members = [m for _, m in snapshots[: cfg.inference.ensemble_size]] or [g]
        score("ensemble", generator_predict(Predictor(members, tta, hu)), time.perf_counter())
        seconds["cascade_25d_train"] = trained
        real_t1 = real_head_t1(cfg, g, workdir)
        log(f"[quality] MNI152 T1 through cascade_25d: {real_t1}")
    return {
        "variants": {k: results[k] for k in VARIANTS if k in results},
        "real_t1": real_t1 if "real_t1" in locals() else None,
        "seconds": seconds,
        "tta": str(tta),
        "ensemble_size": cfg.inference.ensemble_size,
        "cases": {s: sorted(set(map(str, d["case_id"]))) for s, d in splits.items()},
        "slices": {s: len(d["mr"]) for s, d in splits.items()},
    }


def report(result: dict) -> str:
    base = result["variants"].get("baseline")
    rows = []
    for name, m in result["variants"].items():
        cells = [name, f"{m['mae_hu']:.1f}", f"{m['psnr']:.2f}", f"{m['ssim']:.3f}",
                 f"{m['bone_dice']:.3f}"]  # fmt: skip
        if base:
            cells += [f"{m[k] / base[k]:.2f}" for k in METRICS]
        rows.append(cells)
    headers = ["variant", "MAE HU", "PSNR", "SSIM", "bone Dice"]
    if base:
        headers += ["MAE/base", "PSNR/base", "SSIM/base", "Dice/base"]
    return table(headers, rows)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(DEMO), help="experiment YAML (default: demo)")
    parser.add_argument("--cases", type=int, default=14, help="brain phantom cases (default 14)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. loss.lambda_l1=20 (repeatable)")  # fmt: skip
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared machine two spin-wait)",
    )
    parser.add_argument("--json", help="write the results as JSON to this path")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, ["data.regions=[brain]", *args.set])
    facts = machine_facts()
    print_header("quality: baseline, LRG, cascade 2D / 2.5D, TTA, ensemble", facts)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hmss-quality-") as tmp:
        result = bench(cfg, args.cases, Path(tmp), args.variants)
    result["total_seconds"] = time.perf_counter() - start
    result["machine"] = facts
    result["overrides"] = args.set
    print(f"\nheld-out test patients {result['cases']['test']} ({result['slices']['test']} "
          f"slices); trained on {result['slices']['train']} slices; "
          f"{result['total_seconds'] / 60:.1f} min in all")  # fmt: skip
    print(report(result))
    if args.json:
        result.update(command=command_line(), date=facts["date"], **_page(result))
        print(f"wrote {write_json(args.json, result)}")
    return 0


def _page(result: dict) -> dict:
    """Title, summary and table of the docs' benchmark page (scripts/docgen_bench.py)."""
    base = result["variants"].get("baseline")
    rows = []
    for name, m in result["variants"].items():
        label = {"cascade_tta": f"cascade_tta ({result['tta']})",
                 "ensemble": f"ensemble ({result['ensemble_size']} checkpoints + "
                             f"{result['tta']})"}.get(name, name)  # fmt: skip
        row = [label, round(m["mae_hu"], 1), round(m["psnr"], 2), round(m["ssim"], 3),
               round(m["bone_dice"], 3)]  # fmt: skip
        if base:
            row += [
                round(m["mae_hu"] / base["mae_hu"], 2),
                round(m["bone_dice"] / base["bone_dice"], 2),
            ]
        rows.append(row)
    columns = ["variant", "MAE (HU)", "PSNR (dB)", "SSIM", "bone Dice"]
    columns += ["MAE / baseline", "Dice / baseline"] if base else []
    test = ", ".join(result["cases"]["test"])
    return {
        "title": "Quality: baseline, LRG, cascade 2D / 2.5D, TTA, ensemble (phantoms)",
        "summary": f"Brain phantoms on the contract grid, split by patient: trained on "
        f"{result['slices']['train']} slices, held-out patients {test} "
        f"({result['slices']['test']} slices), {result['total_seconds'] / 60:.1f} min in all. "
        "Phantom numbers: they compare the parts of the recipe, not what they do on SynthRAD "
        "data. real_t1: a real head T1 (nilearn's MNI152 template) through cascade_25d.",
        "tables": [{"title": "Held-out patients", "columns": columns, "rows": rows}],
    }


if __name__ == "__main__":
    raise SystemExit(main())
