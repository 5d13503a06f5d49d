"""The physicist's test on held-out phantoms: CT plan recomputed on each variant's sCT.

Writes the quality bench's brain phantoms (bench/quality.py: same seed, split by patient), trains
the per-centre intensity baseline and the cascade (2.5D, the config's schedule or ``--set
train.stage_epochs=...``; with and without flip test-time augmentation), synthesises the
held-out patients' sCTs on the contract grid, and runs the dose check (hmss_ray/dose) on each:
photons (5 coplanar beams) and protons (3 pencil-beam fields), planned on the CT, recomputed on
the sCT. The target is a 15 mm
brain lesion at the deepest point of the brain (CT 0-80 HU inside the body). Then times the
check of one 256x256x180 brain phantom at 1 mm (photon + proton, 4 mm dose grid).

    flock /tmp/hmss-cpu.lock python -m bench.dose --set 'train.stage_epochs=[1,1,40]' \
        --json bench/results/dose.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from bench import DEMO, command_line, machine_facts, print_header, table, write_json
from bench.cascade_vs_baseline import load_split
from bench.quality import Data, generator_predict, train
from hmss_ray.config import TTA, ExperimentConfig, load_config
from hmss_ray.data.phantom import write_dataset
from hmss_ray.data.prepare import prepare_dataset
from hmss_ray.dose import Modality, Structures, check_case
from hmss_ray.dose.engine import require_engine
from hmss_ray.dose.phantom import phantom_structures
from hmss_ray.dose.structures import deepest_point, sphere
from hmss_ray.inference.ensemble import Predictor
from hmss_ray.metrics.slices import to_hu
from hmss_ray.models.baseline import IntensityBaseline

KEYS = {
    "photon": ("gamma_2_2_pct", "gamma_3_2_pct", "ptv_d98_diff_pct", "mean_abs_diff_pct"),
    "proton": (
        "gamma_2_2_pct",
        "gamma_3_2_pct",
        "ptv_d98_diff_pct",
        "range_shift_mm",
        "range_shift_abs_mm",
    ),
}
LESION_MM = 15.0


def volumes(cfg: ExperimentConfig, test: Data, predict) -> dict[str, tuple[np.ndarray, ...]]:
    """Per held-out case: (CT HU, sCT HU, body) stacked (S, S, N) on the contract grid."""
    out = {}
    for case in np.unique(test["case_id"]):
        rows = np.flatnonzero(test["case_id"] == case)
        part = {k: v[rows] for k, v in test.items()}
        sct = np.concatenate([predict({k: v[i : i + 64] for k, v in part.items()})
                              for i in range(0, len(rows), 64)])  # fmt: skip
        ct = to_hu(torch.as_tensor(part["ct"][:, 0]), cfg.data.hu_range).numpy()
        stack = lambda a: np.moveaxis(a, 0, 2)  # noqa: E731 - (N, S, S) -> (S, S, N)
        out[str(case)] = (stack(ct), stack(sct), stack(part["mask"][:, 0] > 0.5))
    return out


def brain_lesion(ct: np.ndarray, body: np.ndarray, spacing) -> Structures:
    """A lesion at the deepest point of the brain (the CT's largest 0-80 HU region)."""
    labels, count = ndimage.label(body & (ct > 0) & (ct < 80))
    brain = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1) if count else body
    target = sphere(ct.shape, spacing, deepest_point(brain, spacing), LESION_MM) & body
    return Structures(body=body, target=target)


def dose_of(cases: dict, spacing, log=print) -> tuple[dict, float]:
    """Mean over cases of the headline numbers per modality (and, per case, the proton fields'
    range shifts), and seconds per case."""
    rows, seconds, per_case = {m: [] for m in KEYS}, [], {}
    affine = np.diag([*spacing, 1.0])  # the contract grid: RAS axes
    for case, (ct, sct, body) in cases.items():
        check = check_case(ct, sct, brain_lesion(ct, body, spacing), affine)
        seconds.append(check.seconds)
        for modality, row in check.rows.items():
            rows[str(modality)].append(row)
        per_case[case] = {k: v for k, v in check.rows[Modality.PROTON].items()
                          if k.startswith(("range_shift", "gamma_2_2"))}  # fmt: skip
        log(f"[dose] {case}: " + "; ".join(
            f"{m} γ2/2 {r['gamma_2_2_pct']:.1f} % ΔD98 {r['ptv_d98_diff_pct']:+.2f} %"
            for m, r in check.rows.items()) + f" ({check.seconds:.0f} s)")  # fmt: skip
    means = {m: {k: float(np.mean([r[k] for r in rs])) for k in KEYS[m]} for m, rs in rows.items()}
    return {**means, "proton_per_case": per_case}, float(np.mean(seconds))


def large_case_seconds(workdir: Path) -> dict[str, float]:
    """The check of one 256x256x180 brain phantom at 1 mm (sCT: CT + 20 HU noise, +30 HU bias),
    timed after the engine's first import (timed apart: a process pays it once)."""
    from hmss_ray.data.phantom.render import make_case

    fov = ((-128.0, 128.0), (-128.0, 128.0), (-90.0, 90.0))  # 256 x 256 x 180 voxels of 1 mm
    case = make_case("1BA001", seed=0, spacing=(1.0, 1.0, 1.0), fov=fov)
    ct = case.ct.astype(np.float32)
    rng = np.random.default_rng(0)
    sct = ct + 30.0 + rng.normal(0, 20, ct.shape).astype(np.float32)
    structures = phantom_structures(case.labels, case.mask > 0, "brain", case.spacing)
    started = time.perf_counter()
    require_engine()  # importing pyRadPlan (and torch, pint's registries): once per process
    imported = time.perf_counter()
    check = check_case(ct, sct, structures, case.affine)
    row = check.flat()
    return {"seconds": time.perf_counter() - imported, "engine_import_seconds": imported - started,
            "shape": list(ct.shape),
            **{k: row[k] for k in ("photon_gamma_2_2_pct", "proton_gamma_2_2_pct",
                                   "proton_range_shift_mm")}}  # fmt: skip


def bench(cfg: ExperimentConfig, cases: int, workdir: Path, large: bool = True, log=print) -> dict:
    large_case = large_case_seconds(workdir) if large else None  # first: fail before training
    log(f"[dose] 256x256x180 brain phantom: {large_case}")
    spacing = tuple(cfg.data.spacing["brain"])
    write_dataset(workdir / "raw", cases=cases, regions=("brain",), seed=0, spacing=spacing)
    uri = str(workdir / "shards")
    prepare_dataset(workdir / "raw", uri, cfg)
    train_set, val, test = (load_split(uri, s, with_ids=True) for s in ("train", "val", "test"))
    hu = tuple(cfg.data.hu_range)
    base = IntensityBaseline().fit([train_set])
    predictors = {
        "baseline": lambda b: to_hu(torch.as_tensor(base.predict_batch(b)[:, 0]), hu).numpy()
    }
    t0 = time.perf_counter()
    generator, _ = train(cfg, train_set, val, log)
    trained = time.perf_counter() - t0
    predictors["cascade_25d"] = generator_predict(Predictor([generator], TTA.NONE, hu))
    # flip test-time augmentation: the quality bench's best single-model cascade by MAE
    predictors["cascade_tta"] = generator_predict(Predictor([generator], TTA.FLIP_LR, hu))
    variants, seconds = {}, []
    for name, predict in predictors.items():
        variants[name], per_case = dose_of(volumes(cfg, test, predict), spacing, log)
        seconds.append(per_case)
    return {
        "variants": variants,
        "seconds_per_case": float(np.mean(seconds)),
        "large_case": large_case,
        "train_seconds": trained,
        "test_cases": sorted(set(map(str, test["case_id"]))),
        "contract_spacing_mm": list(spacing),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(DEMO))
    parser.add_argument("--cases", type=int, default=14, help="brain phantom cases (default 14)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-large", action="store_true", help="no 256x256x180 timing")
    parser.add_argument("--json", help="write the results as JSON to this path")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, ["data.regions=[brain]", *args.set])
    facts = machine_facts()
    print_header("dose: CT plan recomputed on the sCT (photon, proton)", facts)
    with tempfile.TemporaryDirectory(prefix="hmss-dose-") as tmp:
        result = bench(cfg, args.cases, Path(tmp), large=not args.skip_large)
    result.update(overrides=args.set, machine=facts, command=command_line(), date=facts["date"])
    rows = [[name, *[f"{v[m][k]:.2f}" for m in KEYS for k in KEYS[m]]]
            for name, v in result["variants"].items()]  # fmt: skip
    print(table(["variant", *[f"{m} {k}" for m in KEYS for k in KEYS[m]]], rows))
    large = result["large_case"]
    print(f"{result['seconds_per_case']:.1f} s per case; 256x256x180: "
          f"{large['seconds'] if large else float('nan'):.1f} s")  # fmt: skip
    if args.json:
        print(f"wrote {write_json(args.json, result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
