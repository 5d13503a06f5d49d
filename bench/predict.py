"""Batch prediction throughput: studies per minute, local loop against Ray Data, and memory.

A cohort of phantom heads (NIfTI, rendered at ``--spacing`` mm) goes through
``python -m hmss_ray.inference --model M --mr COHORT --out OUT`` twice: the local loop (in a
fresh process, whose peak RSS is the memory a study needs: the model, one study's volumes and
its QA figure) and ``--ray`` (Ray Data, an actor pool sized to the CPUs: on 2 CPUs one actor of
2, so the same cores as the local loop). The model is the demo config's cascade, seeded and
untrained: speed and memory do not depend on the weights. Both paths write QA figures.

    python -m bench.predict --json outputs/bench/predict.json          # 8 studies, ~3 min
    python -m bench.predict --studies 4 --json outputs/bench/predict.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import DEMO, command_line, machine_facts, print_header, table, write_json

NAME = "predict"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.predict", description=__doc__)
    parser.add_argument("--studies", type=int, default=8, help="phantom heads (default 8)")
    parser.add_argument("--spacing", type=float, default=2.0, help="their voxel size, mm")
    parser.add_argument("--json", default=f"outputs/bench/{NAME}.json", help="figures as JSON")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "COHORT", "OUT"),
                        help=argparse.SUPPRESS)  # fmt: skip
    return parser


def make_inputs(folder: Path, studies: int, spacing: float) -> tuple[str, Path]:
    import torch

    from hmss_ray.config import load_config
    from hmss_ray.data.phantom import make_case
    from hmss_ray.io import Volume, write_volume
    from hmss_ray.models import checkpoint as ckpt
    from hmss_ray.models.factory import build_generator

    torch.manual_seed(0)
    cfg = load_config(DEMO)
    saved = ckpt.save_checkpoint(folder / "ckpt", generator=build_generator(cfg), cfg=cfg)
    entry = ckpt.write_registry_entry(
        saved, str(folder / "registry"), "bench", metrics={}, winner={"trial_id": "bench"}
    )
    cohort = folder / "cohort"
    cohort.mkdir()
    for k in range(studies):
        case = make_case(f"1BA{k + 1:03d}", seed=k, spacing=(spacing, spacing, spacing))
        write_volume(Volume(case.mr, case.affine), cohort / f"study{k:02d}.nii.gz")
    return entry, cohort


def child(model: str, cohort: str, out: str) -> None:
    """The local loop, timed, in this fresh process; prints its seconds and peak RSS."""
    from hmss_ray.inference.batch import BatchOptions, find_studies, predict_batch
    from hmss_ray.inference.synthesizer import Synthesizer

    start = time.perf_counter()
    studies = find_studies(Path(cohort))
    results = predict_batch(
        Synthesizer.from_uri(model, device="cpu"), studies, Path(out), BatchOptions()
    )
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ok = sum(r.status == "ok" for r in results)
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb, "ok": ok}))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from hmss_ray.inference.batch import BatchOptions, find_studies
    from hmss_ray.inference.ray_batch import predict_batch_ray

    with tempfile.TemporaryDirectory(prefix="hmss-bench-predict-") as tmp:
        entry, cohort = make_inputs(Path(tmp), args.studies, args.spacing)
        local_out = Path(tmp) / "local"
        done = subprocess.run(
            [sys.executable, "-m", "bench.predict", "--child", entry, str(cohort), str(local_out)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        local = json.loads(done.stdout.strip().splitlines()[-1])
        studies = find_studies(cohort)
        results, stats = predict_batch_ray(
            entry, studies, Path(tmp) / "ray", BatchOptions(), device="cpu"
        )
        ray_ok = sum(r.status == "ok" for r in results)
    n = args.studies
    return {
        "studies": n,
        "local_per_min": 60.0 * n / local["seconds"],
        "ray_per_min": stats["studies_per_min"],
        "peak_rss_mb": local["peak_rss_mb"],
        "local_seconds": local["seconds"],
        "ray_seconds": stats["seconds"],
        "ray_actors": stats["actors"],
        "ok": {"local": local["ok"], "ray": ray_ok},
        "spacing_mm": args.spacing,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    facts = machine_facts()
    print_header("batch prediction: local loop vs Ray Data", facts)
    figures = run(args)
    rows = [
        ["local loop", f"{figures['local_per_min']:.1f}", f"{figures['local_seconds']:.1f}"],
        ["Ray Data", f"{figures['ray_per_min']:.1f}", f"{figures['ray_seconds']:.1f}"],
    ]
    print(table(["path", "studies/min", "seconds"], rows))
    print(f"peak RSS of the local process: {figures['peak_rss_mb']:.0f} MB")
    payload = {"command": command_line(), "date": facts["date"], "machine": facts, **figures}
    print(f"wrote {write_json(args.json, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
