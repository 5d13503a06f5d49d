"""The geometry contract's costs: inference memory on large volumes, and the pelvis spacing.

1. Memory: ``synthesize_volume`` on a synthetic 512x512x300 float32 MR (an ellipse body with a
   fat rim and a dark bone ring, noise), body mask derived, in a fresh process per case: peak RSS
   above the RSS before the input existed (so the input itself is counted), and the peak of
   numpy allocations during the call (tracemalloc; the input not counted), both as multiples of
   the float32 input. The generator is a pointwise stand-in (tanh of the centre MR channel): the
   network's own activations are one batch of slices (``serve.batch_slices``) and come on top
   (bench/serve_latency.py measures those).
2. Pelvis spacing: a real-size pelvis phantom (480x320 mm at 1x1x2.5 mm) taken to the contract
   grid at several in-plane spacings and back: what that costs before any network (MAE in HU and
   bone Dice inside the body against the original CT), and the canvas a 500 mm body needs.

    python -m bench.geometry                 # 512x512x300, about 4 minutes on 2 cores
    python -m bench.geometry --quick         # 512x512x60
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np

from bench import MB, command_line, machine_facts, print_header, table, write_json
from hmss_ray import resources

NAME = "geometry"
# name -> (input spacing mm, region, degrees of rotation about z)
CASES = {
    "brain, 1 mm in (reorientation only)": ((1.0, 1.0, 1.0), "brain", 0.0),
    "brain, 0.9x0.9x3 mm in (3x the voxels)": ((0.9, 0.9, 3.0), "brain", 0.0),
    "brain, 1 mm oblique 10 deg in": ((1.0, 1.0, 1.0), "brain", 10.0),
    "pelvis, 1x1x2.5 mm in (-> 2x2x2.5)": ((1.0, 1.0, 2.5), "pelvis", 0.0),
}
PELVIS_SPACINGS = (1.0, 1.25, 1.5, 2.0, 2.5)


def synthetic_mr(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """float32 (X, Y, Z): an elliptic body over 80% of the plane, a fat rim, a dark bone ring."""
    x = np.linspace(-1, 1, shape[0], dtype=np.float32)[:, None]
    y = np.linspace(-1, 1, shape[1], dtype=np.float32)[None, :]
    r = np.sqrt((x / 0.8) ** 2 + (y / 0.65) ** 2)
    plane = np.where(r < 1, 600.0, 0.0).astype(np.float32)
    plane[(r > 0.9) & (r < 1)] = 1000.0  # fat
    plane[(r > 0.45) & (r < 0.5)] = 60.0  # bone
    rng = np.random.default_rng(seed)
    volume = np.empty(shape, np.float32)
    for z in range(shape[2]):
        volume[:, :, z] = plane + rng.normal(0, 20, shape[:2]).astype(np.float32)
    np.abs(volume, out=volume)
    return volume


def _pointwise_synth(region: str):
    import torch

    from hmss_ray.config import load_config
    from hmss_ray.inference.synthesizer import ModelInfo, Synthesizer

    class Pointwise(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            centre = x.shape[1] // 2
            return {"high": torch.tanh(x[:, centre : centre + 1])}

    cfg = load_config(
        resources.find(resources.CONFIGS, region), ["serve.batch_slices=16", "train.use_gpu=false"]
    )
    info = ModelInfo("pointwise", "-", "-", "-", 0, 0, None, {})
    return Synthesizer(Pointwise(), cfg, info, torch.device("cpu"), cfg.serve.batch_slices)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure_one(name: str, shape: tuple[int, int, int]) -> dict[str, Any]:
    """Run one case in this (fresh) process: memory and time of ``synthesize_volume``."""
    import tracemalloc

    import torch

    from hmss_ray.data.preprocess import contract_map
    from hmss_ray.inference.synthesizer import synthesize_volume
    from hmss_ray.io import Volume
    from hmss_ray.io.geometry import Grid

    torch.set_num_threads(1)
    spacing, region, degrees = CASES[name]
    synth = _pointwise_synth(region)
    a = np.deg2rad(degrees)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])  # LPS storage, like SynthRAD
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    affine = rotation @ affine
    before = _rss()
    mr = Volume(synthetic_mr(shape), affine)
    plan = contract_map(Grid(shape, affine), synth.cfg.data, region)
    tracemalloc.start()
    t0 = time.perf_counter()
    sct = synthesize_volume(synth, mr, region=region)
    seconds = time.perf_counter() - t0
    numpy_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert sct.shape == shape
    return {
        "case": name,
        "input_shape": list(shape),
        "input_mb": mr.array.nbytes / MB,
        "contract_shape": list(plan.target.shape),
        "exact": plan.exact,
        "seconds": seconds,
        "peak_rss_mb": (peak - before) / MB,
        "peak_rss_x_input": (peak - before) / mr.array.nbytes,
        "numpy_peak_mb": numpy_peak / MB,
        "numpy_peak_x_input": numpy_peak / mr.array.nbytes,
    }


def memory(shape: tuple[int, int, int]) -> list[dict[str, Any]]:
    rows = []
    for name in CASES:
        cmd = [sys.executable, "-m", "bench.geometry", "--one", name, "--shape", *map(str, shape)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def pelvis_spacing(slices: int) -> list[dict[str, Any]]:
    """Real-size pelvis phantom CT -> contract grid -> back, per in-plane spacing."""
    from hmss_ray.data.phantom import make_case
    from hmss_ray.data.synthrad import CaseId
    from hmss_ray.io.geometry import Contract, Grid, GridMap

    case = make_case(CaseId.parse("1PA001"), seed=0, shape=(480, 320, slices))
    body = case.mask > 0
    ct = case.ct.astype(np.float32)
    width = float(np.ptp(np.flatnonzero(body.any(axis=(1, 2)))) + 1)
    rows = []
    for s in PELVIS_SPACINGS:
        gmap = GridMap.plan(Grid(ct.shape, case.affine), Contract("RAS", (s, s, 2.5)))
        back = gmap.inverse(gmap.forward(ct, order=1, cval=-1024), order=1, cval=-1024)
        bone, bone_back = ct >= 250, back >= 250
        dice = (
            2 * (bone & bone_back & body).sum() / ((bone & body).sum() + (bone_back & body).sum())
        )
        canvas = int(np.ceil(500 / s / 16) * 16)
        rows.append({
            "spacing_mm": s,
            "round_trip_mae_hu": float(np.abs(back - ct)[body].mean()),
            "bone_dice": float(dice),
            "canvas_for_500mm": canvas,
            "pixels_vs_256": canvas**2 / 256**2,
            "phantom_width_mm": width,
        })  # fmt: skip
    return rows


def report(mem: list[dict[str, Any]], pelvis: list[dict[str, Any]]) -> None:
    rows = [
        [r["case"], "x".join(map(str, r["contract_shape"])), "yes" if r["exact"] else "no",
         f"{r['input_mb']:.0f}", f"{r['peak_rss_mb']:.0f}", f"{r['peak_rss_x_input']:.2f}",
         f"{r['numpy_peak_x_input']:.2f}", f"{r['seconds']:.1f}"]
        for r in mem
    ]  # fmt: skip
    headers = ["input", "contract grid", "exact", "input MB", "peak RSS MB", "x input",
               "numpy peak x input", "s"]  # fmt: skip
    print("\ninference memory (synthesize_volume, mask derived, pointwise stand-in generator)")
    print(table(headers, rows))
    rows = [
        [f"{r['spacing_mm']:g}x{r['spacing_mm']:g}x2.5", f"{r['round_trip_mae_hu']:.1f}",
         f"{r['bone_dice']:.3f}", r["canvas_for_500mm"], f"{r['pixels_vs_256']:.2f}"]
        for r in pelvis
    ]  # fmt: skip
    print(f"\npelvis phantom {pelvis[0]['phantom_width_mm']:.0f} mm wide, CT to the contract grid "
          "and back (no network)")  # fmt: skip
    headers = ["contract mm", "MAE HU", "bone Dice", "canvas for 500 mm", "pixels vs 256^2"]
    print(table(headers, rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.geometry",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 300))
    parser.add_argument("--quick", action="store_true", help="512x512x60, 24 pelvis slices")
    parser.add_argument("--pelvis-slices", type=int, default=100)
    parser.add_argument("--json", default=f"outputs/bench/{NAME}.json", help="where figures go")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one case, JSON on stdout
    args = parser.parse_args(argv)
    shape = (512, 512, 60) if args.quick else tuple(args.shape)
    if args.one:
        print(json.dumps(measure_one(args.one, shape)))
        return 0
    facts = machine_facts()
    print_header("geometry contract: memory and pelvis spacing", facts)
    mem = memory(shape)
    pelvis = pelvis_spacing(24 if args.quick else args.pelvis_slices)
    report(mem, pelvis)
    payload = {"facts": facts, "command": command_line(), "memory": mem, "pelvis": pelvis}
    print(f"\nwrote {write_json(args.json, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
