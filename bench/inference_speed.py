"""Inference speed per engine: the full brain generator on 256x256 slices (issue 18).

For each engine (``serve.precision`` x ``serve.channels_last`` x ``serve.compile``), in a fresh
process: the generator of ``--config`` (configs/brain.yaml: 45.8 M parameters; seeded random
weights unless ``--model`` names a registry entry) through ``hmss_ray.inference.engine.Engine``
on batches of ``serve.batch_slices`` 2.5D slices (the served batch): slices/s after one warm-up
batch (compile time apart), then a phantom head (``--phantom-slices`` slices at the contract's
1 mm, 256x256) through ``Synthesizer`` (the path Serve runs): its sCT's HU MAE against the fp32
engine's inside the body, and the process's peak RSS above its RSS before the model was built.
``--trained ENTRY`` also runs a phantom through a trained registry entry with each engine: random
weights amplify rounding far more than trained ones, so the HU difference that matters to a user
is that one (``hu_mae_vs_fp32_trained``).

    python -m bench.inference_speed --json outputs/bench/inference_speed.json
    python -m bench.inference_speed --trained outputs/demo/registry/demo     # + a trained model
    python -m bench.inference_speed --engines fp32,bf16-cl --batches 2        # quicker
    python -m bench.inference_speed --device cuda                             # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import MB, command_line, print_header, table, write_json
from hmss_ray import resources

NAME = "inference_speed"
BRAIN = resources.find(resources.CONFIGS, "brain")
# name -> serve.* overrides; "fp32" is the baseline every ratio is against
ENGINES = {
    "fp32": {"precision": "fp32", "channels_last": False, "compile": False},
    "fp32-cl": {"precision": "fp32", "channels_last": True, "compile": False},
    "fp32-compile": {"precision": "fp32", "channels_last": False, "compile": True},
    "bf16": {"precision": "bf16", "channels_last": False, "compile": False},
    "bf16-cl": {"precision": "bf16", "channels_last": True, "compile": False},
    "bf16-cl-compile": {"precision": "bf16", "channels_last": True, "compile": True},
}
DEFAULT = "fp32,fp32-cl,fp32-compile,bf16,bf16-cl,bf16-cl-compile"


def _facts(device: str) -> dict[str, Any]:
    try:
        from bench import machine_facts

        return machine_facts(device)
    except ImportError:  # no Ray here (a bare GPU machine): the facts that need none
        import torch

        return {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)),
            "cpu_model": platform.processor(),
            "memory_gib": None,
            "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "torch_threads": torch.get_num_threads(),
            "device": device,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "ray": None,
            "platform": platform.platform(),
        }


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _overrides(engine: str) -> dict[str, Any]:
    return {f"serve.{k}": v for k, v in ENGINES[engine].items()}


def _phantom_sct(synth, slices: int) -> tuple[np.ndarray, np.ndarray]:
    """A phantom head at the synthesizer's canvas size through it: (sCT HU, body mask)."""
    from hmss_ray.data.phantom.render import make_case
    from hmss_ray.data.synthrad import CaseId

    size = synth.cfg.data.image_size
    case = make_case(CaseId.parse("1BA001"), seed=0, shape=(size, size, slices))
    return synth(case.mr.astype(np.float32), case.mask, case.affine), case.mask


def _synthesizer(args: argparse.Namespace, engine: str):
    import torch

    from hmss_ray.config import load_config
    from hmss_ray.inference.synthesizer import ModelInfo, Synthesizer
    from hmss_ray.models.factory import build_generator, resolve_device

    overrides = _overrides(engine)
    if args.model:
        return Synthesizer.from_uri(args.model, args.device, args.batch, overrides)
    cfg = load_config(args.config, ["train.use_gpu=false"]).replace(overrides)
    torch.manual_seed(0)  # the same random weights in every process
    device = resolve_device(args.device)
    generator = build_generator(cfg).to(device).eval()
    info = ModelInfo("random", "-", "-", "-", 0, 0, None, {})
    return Synthesizer(generator, cfg, info, device, args.batch or cfg.serve.batch_slices)


def measure_one(args: argparse.Namespace, engine: str) -> dict[str, Any]:
    """One engine in this (fresh) process: speed, the phantom's sCT (saved) and peak RSS."""
    import torch

    from hmss_ray.inference.synthesizer import Synthesizer

    torch.set_num_threads(args.threads)
    before = _rss()
    synth = _synthesizer(args, engine)
    assert synth.engine is not None
    cfg, batch = synth.cfg, synth.batch_slices
    size, channels = cfg.data.image_size, 2 * cfg.data.context_slices + 1
    stack = np.random.default_rng(0).uniform(-1, 1, (batch, channels, size, size))
    stack = stack.astype(np.float32)
    sync = torch.cuda.synchronize if synth.device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    synth.engine(stack)  # warm-up (and the compile, when asked)
    sync()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.batches):
        synth.engine(stack)
    sync()
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    sct, mask = _phantom_sct(synth, args.phantom_slices)
    volume_s = time.perf_counter() - t1
    np.save(Path(args.out_dir) / f"{engine}.npy", sct)
    np.save(Path(args.out_dir) / "mask.npy", mask)
    if args.trained:
        trained = Synthesizer.from_uri(args.trained, args.device, None, _overrides(engine))
        sct, mask = _phantom_sct(trained, args.phantom_slices)
        np.save(Path(args.out_dir) / f"{engine}-trained.npy", sct)
        np.save(Path(args.out_dir) / "mask-trained.npy", mask)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cuda_peak = torch.cuda.max_memory_allocated() / MB if synth.device.type == "cuda" else None
    return {
        "engine": synth.engine.info.to_dict(),
        "batch": batch,
        "slices_per_s": batch * args.batches / seconds,
        "first_batch_s": first,
        "phantom_volume_s": volume_s,
        "peak_rss_mb": (peak - before) / MB,
        "cuda_peak_mb": cuda_peak,
    }


def run_engines(args: argparse.Namespace, names: list[str]) -> dict[str, dict[str, Any]]:
    rows = {}
    for name in names:
        cmd = [sys.executable, "-m", "bench.inference_speed", "--one", name,
               "--out-dir", args.out_dir, *_passed(args)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            rows[name] = {"error": done.stderr.strip().splitlines()[-1:]}
            print(f"{name}: failed: {done.stderr.strip()[-2000:]}", flush=True)
            continue
        rows[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name}: {rows[name]['slices_per_s']:.2f} slices/s", flush=True)
    return rows


def _passed(args: argparse.Namespace) -> list[str]:
    out = ["--config", args.config, "--device", args.device, "--threads", str(args.threads)]
    out += ["--batches", str(args.batches), "--phantom-slices", str(args.phantom_slices)]
    if args.batch:
        out += ["--batch", str(args.batch)]
    if args.model:
        out += ["--model", args.model]
    if args.trained:
        out += ["--trained", args.trained]
    return out


def compare(rows: dict[str, dict[str, Any]], out_dir: str) -> None:
    """HU MAE (inside the body) of each engine's phantom sCT against the fp32 one (and of the
    trained entry's, when there is one)."""
    out = Path(out_dir)
    for suffix in ("", "-trained"):
        if not (out / f"fp32{suffix}.npy").exists():
            continue
        mask = np.load(out / f"mask{suffix}.npy") > 0
        reference = np.load(out / f"fp32{suffix}.npy").astype(np.float32)
        key = suffix.replace("-", "_")
        for name, row in rows.items():
            if "error" in row:
                continue
            diff = np.abs(np.load(out / f"{name}{suffix}.npy").astype(np.float32) - reference)
            row[f"hu_mae_vs_fp32{key}"] = float(diff[mask].mean())
            row[f"hu_max_vs_fp32{key}"] = float(diff[mask].max())


def summarise(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    base = rows["fp32"]["slices_per_s"]
    for row in rows.values():
        if "error" not in row:
            row["speedup_vs_fp32"] = row["slices_per_s"] / base
    ok = {k: r for k, r in rows.items() if "error" not in r}
    best = max(ok, key=lambda k: ok[k]["slices_per_s"])
    return {
        "fp32_slices_per_s": base,
        "best": {
            "name": best,
            "slices_per_s": ok[best]["slices_per_s"],
            "speedup_vs_fp32": ok[best]["speedup_vs_fp32"],
            "hu_mae_vs_fp32": ok[best]["hu_mae_vs_fp32"],
            "hu_mae_vs_fp32_trained": ok[best].get("hu_mae_vs_fp32_trained"),
        },
        "engines": rows,
    }


def report(summary: dict[str, Any]) -> None:
    rows = []
    for name, r in summary["engines"].items():
        if "error" in r:
            rows.append([name, "failed", "-", "-", "-", "-", "-", " ".join(r["error"])])
            continue
        rows.append([
            name, f"{r['slices_per_s']:.2f}", f"{r['speedup_vs_fp32']:.2f}",
            f"{r['hu_mae_vs_fp32']:.2f}", f"{r['hu_max_vs_fp32']:.0f}", f"{r['first_batch_s']:.1f}",
            f"{r['peak_rss_mb']:.0f}", r["engine"]["fallback"] or "",
        ])  # fmt: skip
    headers = ["engine", "slices/s", "x fp32", "HU MAE vs fp32", "HU max", "first batch s",
               "peak RSS MB", "fallback"]  # fmt: skip
    trained = any("hu_mae_vs_fp32_trained" in r for r in summary["engines"].values())
    if trained:
        headers.insert(5, "HU MAE trained")
        for row, r in zip(rows, summary["engines"].values(), strict=True):
            row.insert(5, f"{r['hu_mae_vs_fp32_trained']:.2f}" if "error" not in r else "-")
    print(table(headers, rows, left=(0, len(headers) - 1)))
    best = summary["best"]
    print(f"\nbest: {best['name']} {best['slices_per_s']:.2f} slices/s = "
          f"{best['speedup_vs_fp32']:.2f}x fp32 (goal >= 2.5x), HU MAE vs fp32 "
          f"{best['hu_mae_vs_fp32']:.2f} with {summary['weights']} weights")  # fmt: skip
    if best["hu_mae_vs_fp32_trained"] is not None:
        print(f"      HU MAE vs fp32 with the trained entry: "
              f"{best['hu_mae_vs_fp32_trained']:.2f} (goal <= 2)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.inference_speed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default=str(BRAIN))
    parser.add_argument("--model", help="a registry entry instead of random weights")
    parser.add_argument("--trained", help="a trained registry entry whose sCT differences to "
                        "fp32 are measured too (each engine on it)")  # fmt: skip
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--engines", default=DEFAULT, help=f"comma list of {', '.join(ENGINES)}")
    parser.add_argument("--batch", type=int, help="slices per call (default serve.batch_slices)")
    parser.add_argument("--batches", type=int, default=3, help="timed batches per engine")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--phantom-slices", type=int, default=16)
    parser.add_argument("--json", default=f"outputs/bench/{NAME}.json", help="where figures go")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one engine, JSON on stdout
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args, args.one)))
        return 0
    names = ["fp32", *[n for n in args.engines.split(",") if n and n != "fp32"]]
    unknown = [n for n in names if n not in ENGINES]
    if unknown:
        parser.error(f"unknown engines {unknown}; choose from {', '.join(ENGINES)}")
    facts = _facts(args.device)
    print_header("inference speed per engine (full generator, served batch)", facts)
    with tempfile.TemporaryDirectory(prefix="hmss-inference-speed-") as out_dir:
        args.out_dir = out_dir
        rows = run_engines(args, names)
        if "error" in rows["fp32"]:
            print("the fp32 baseline failed: no ratios")
            return 1
        compare(rows, out_dir)
    summary = summarise(rows)
    summary["weights"] = args.model or "random"
    report(summary)
    payload = {**summary, "facts": facts, "command": command_line()}
    print(f"\nwrote {write_json(args.json, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
