"""GPU check: speed and MFU of the full brain model, and a 200-slice volume's inference (issue 16).

On one CUDA device, the generator and discriminator of ``configs/brain.yaml`` (45.8 M + 5.5 M
parameters, 256x256 slices, 2.5D context), in four variants:

- ``fp32``: no autocast (PyTorch's defaults: cuDNN convolutions may use TF32);
- ``bf16``: bf16 autocast, what training uses on a GPU (``train.mixed_precision``);
- ``bf16_cl``: bf16 and channels_last memory format;
- ``bf16_cl_compile``: bf16, channels_last and ``torch.compile`` (compile time reported apart).

For each: a whole training step of the joint stage (G step and D step, ``steps.train_step``) and
generator inference, as slices/s and model FLOPs utilisation (MFU): the FLOPs of one step or
forward counted from the model itself (``torch.utils.flop_counter``, eager fp32, once) times the
rate, over the device's dense bf16 peak (a table by device name, or ``--peak-tflops``). Then a
200-slice brain volume (a phantom head) through ``Synthesizer``, the path Serve runs: seconds in
fp32 and bf16, and how far the bf16 sCT lands from the fp32 one in HU. The networks are seeded and
untrained unless ``--model`` names a registry entry; the perceptual loss uses the seeded random
features unless pretrained weights are installed. Without CUDA it prints why and exits 0.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import command_line, deadline, machine_facts, print_header, table, write_json
from hmss_ray import cli, resources

NAME = "gpu_check"
BRAIN = resources.find(resources.CONFIGS, "brain")
VARIANTS = ("fp32", "bf16", "bf16_cl", "bf16_cl_compile")
# dense bf16 tensor-core peaks (TFLOP/s) from NVIDIA's data sheets, by device name
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4), ("GH200", 989.4),
                    ("A100", 312.0), ("L40S", 362.1), ("L4", 121.0))  # fmt: skip
EXAMPLES = """examples:
  make gpu-check                                  # venv, gpu tests, this bench (one GPU)
  python -m bench.gpu_check --json outputs/bench/gpu_check.json
  python -m bench.gpu_check --variants bf16,bf16_cl --model s3://hmss-models/registry/brain
  python -m bench.gpu_check --device cpu --config configs/demo.yaml --quick   # dry run, no GPU
"""


def peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in name), None)


class Clock:
    """Wall time of device work: synchronises CUDA before reading the clock."""

    def __init__(self, device) -> None:
        import torch

        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def __call__(self) -> float:
        self.sync()
        return time.perf_counter()


def _networks(cfg, device, variant: str):
    import torch

    from hmss_ray.train import steps

    torch.manual_seed(0)
    nets = steps.build_training(cfg, device)
    if variant.startswith("bf16_cl"):
        nets.generator.to(memory_format=torch.channels_last)
        nets.discriminator.to(memory_format=torch.channels_last)
    if variant.endswith("compile"):
        nets.generator.compile()
        nets.discriminator.compile()
    steps.set_stage(nets.generator, "joint")
    return nets


def _batch(cfg, device, n: int, channels_last: bool) -> dict:
    import torch

    g = torch.Generator().manual_seed(0)
    size = cfg.data.image_size
    mr = torch.rand(n, cfg.in_channels, size, size, generator=g) * 2 - 1
    mask = torch.zeros(n, 1, size, size)
    mask[..., size // 8 : -size // 8, size // 8 : -size // 8] = 1
    batch = {"mr": mr, "ct": mr[:, cfg.in_channels // 2 :][:, :1].tanh(), "mask": mask}
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return {k: v.to(device).contiguous(memory_format=layout) for k, v in batch.items()}


def count_flops(cfg, device, batch_size: int) -> dict[str, float]:
    """FLOPs per slice of one joint training step and one generator forward (eager, fp32)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from hmss_ray.train import steps

    nets = _networks(cfg, device, "fp32")
    batch = _batch(cfg, device, batch_size, False)
    opt_g, opt_d = nets.optimizers["g"], nets.optimizers["d"]
    with FlopCounterMode(display=False) as train:
        steps.train_step(nets.generator, nets.discriminator, opt_g, opt_d, batch, cfg, "joint", 0)
    with torch.no_grad(), FlopCounterMode(display=False) as infer:
        nets.generator.eval()(batch["mr"])
    return {"train": train.get_total_flops() / batch_size,
            "infer": infer.get_total_flops() / batch_size}  # fmt: skip


def _rate(run, clock: Clock, warmup: int, seconds: float, min_iters: int) -> tuple[float, float]:
    """(seconds per call, seconds of the first warm-up call) of ``run()``."""
    start = clock()
    run()
    first = clock() - start
    for _ in range(warmup - 1):
        run()
    iters, start = 0, clock()
    while iters < min_iters or clock() - start < seconds:
        run()
        iters += 1
    return (clock() - start) / iters, first


def measure_variant(cfg, device, variant: str, args) -> dict[str, Any]:
    import gc

    import torch

    from hmss_ray.train import steps

    gc.collect()  # the previous variant's networks are not this one's peak memory
    if device.type == "cuda":
        torch.cuda.empty_cache()
    clock = Clock(device)
    amp = None if variant == "fp32" else torch.bfloat16
    nets = _networks(cfg, device, variant)
    batch = _batch(cfg, device, args.batch, variant.startswith("bf16_cl"))
    opt_g, opt_d = nets.optimizers["g"], nets.optimizers["d"]
    g, d = nets.generator, nets.discriminator
    counter = iter(range(10**9))
    train = lambda: steps.train_step(g, d, opt_g, opt_d, batch, cfg, "joint", next(counter), amp)  # noqa: E731
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_s, first_train = _rate(train, clock, args.warmup, args.seconds, args.min_iters)
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    g.eval()

    def infer() -> None:
        with torch.no_grad(), steps.amp(device, amp):
            g(batch["mr"])

    forward_s, first_infer = _rate(infer, clock, args.warmup, args.seconds, args.min_iters)
    return {
        "train_slices_per_s": args.batch / step_s,
        "infer_slices_per_s": args.batch / forward_s,
        "first_train_step_s": first_train,  # includes torch.compile for the compiled variant
        "first_forward_s": first_infer,
        "peak_memory_gib": memory,
    }


def volume_inference(cfg, device, args, workdir: Path) -> dict[str, Any]:
    """A 200-slice head through Synthesizer (what Serve runs), fp32 then bf16."""
    import numpy as np
    import torch

    from hmss_ray.data.phantom import case_ids, make_case
    from hmss_ray.inference.synthesizer import Synthesizer
    from hmss_ray.models import build_generator
    from hmss_ray.models import checkpoint as ckpt
    from hmss_ray.train.steps import amp

    uri = args.model
    if uri is None:
        torch.manual_seed(0)
        uri = str(ckpt.save_checkpoint(workdir / "ckpt", generator=build_generator(cfg), cfg=cfg))
    synth = Synthesizer.from_uri(uri, device=device.type)
    reps = -(-args.volume_slices // 50)
    head = make_case(case_ids("brain", 1)[0], shape=(args.volume_side, args.volume_side, 50))
    mr = np.tile(head.mr, (1, 1, reps))[..., : args.volume_slices].astype(np.float32)
    mask = np.tile(head.mask, (1, 1, reps))[..., : args.volume_slices]
    clock, out = Clock(device), {"slices": int(mr.shape[2]), "shape": list(mr.shape)}
    synth(mr[..., :8], mask[..., :8])  # warm-up: cuDNN set-up is not the volume's time
    results = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        start = clock()
        with amp(device, dtype):
            results[name] = synth(mr, mask).astype(np.float64)
        out[f"{name}_s"] = clock() - start
    inside = mask > 0
    diff = np.abs(results["bf16"] - results["fp32"])[inside]
    out["model"] = args.model or "untrained brain generator (seeded)"
    out["bf16_vs_fp32_mean_hu"] = float(diff.mean())
    out["bf16_vs_fp32_p99_hu"] = float(np.percentile(diff, 99))
    out["fp32_sct_std_hu"] = float(results["fp32"][inside].std())
    return out


def measure(args, cfg, device) -> dict[str, Any]:
    started = time.perf_counter()
    flops = count_flops(cfg, device, args.batch)
    variants = {}
    for variant in args.variants:
        if variant.endswith("compile") and time.perf_counter() - started > args.compile_budget:
            print(f"[bench] {variant} skipped: past --compile-budget {args.compile_budget} s")
            continue
        print(f"[bench] {variant} ...", flush=True)
        variants[variant] = measure_variant(cfg, device, variant, args)
    with tempfile.TemporaryDirectory(prefix="hmss-gpu-check-") as tmp:
        volume = volume_inference(cfg, device, args, Path(tmp))
    return {"flops_per_slice": flops, "variants": variants, "volume": volume}


def summarise(m: dict[str, Any], peak: float | None) -> None:
    """Adds MFU (fraction of the bf16 peak) and ratios to fp32 to each variant, in place."""
    flops, base = m["flops_per_slice"], m["variants"].get("fp32")
    for v in m["variants"].values():
        for kind in ("train", "infer"):
            rate = v[f"{kind}_slices_per_s"]
            v[f"{kind}_mfu"] = rate * flops[kind] / (peak * 1e12) if peak else None
            if base:
                v[f"{kind}_over_fp32"] = rate / base[f"{kind}_slices_per_s"]


def report(args, cfg, m: dict[str, Any], facts: dict[str, Any], peak: float | None) -> None:
    print_header("GPU check: the full brain model on one device", facts)
    flops = m["flops_per_slice"]
    size = cfg.data.image_size
    print(f"workload: {args.config}, {size}x{size} slices, batch {args.batch}, joint stage; model "
          f"FLOPs per slice: train step {flops['train'] / 1e9:.4g} G, forward "
          f"{flops['infer'] / 1e9:.4g} G; MFU against a bf16 dense peak of "
          f"{f'{peak:g} TFLOP/s' if peak else 'unknown (pass --peak-tflops)'}")  # fmt: skip
    pct = lambda x: "n/a" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    rows = [
        [name, f"{v['train_slices_per_s']:.1f}", pct(v["train_mfu"]),
         f"{v.get('train_over_fp32', 1):.2f}", f"{v['infer_slices_per_s']:.1f}",
         pct(v["infer_mfu"]), f"{v.get('infer_over_fp32', 1):.2f}",
         f"{v['first_train_step_s']:.1f}",
         "n/a" if v["peak_memory_gib"] is None else f"{v['peak_memory_gib']:.1f}"]
        for name, v in m["variants"].items()
    ]  # fmt: skip
    headers = ["variant", "train slices/s", "MFU", "x fp32", "infer slices/s", "MFU", "x fp32"]
    print("\n" + table([*headers, "first step s", "peak GiB"], rows))
    v = m["volume"]
    print(f"\n{v['slices']}-slice volume {v['shape']} through Synthesizer ({v['model']}): fp32 "
          f"{v['fp32_s']:.2f} s, bf16 {v['bf16_s']:.2f} s; bf16 vs fp32 inside the body: mean "
          f"{v['bf16_vs_fp32_mean_hu']:.1f} HU, p99 {v['bf16_vs_fp32_p99_hu']:.0f} HU (fp32 sCT "
          f"std {v['fp32_sct_std_hu']:.0f} HU)")  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser("bench.gpu_check", __doc__.split("\n\n")[0], EXAMPLES)
    add = parser.add_argument
    add("--config", default=str(BRAIN), help="experiment YAML (default: configs/brain.yaml)")
    add("--device", default="cuda", help="cuda[:N]; cpu only for a dry run of this script")
    add("--batch", type=int, help="slices per step (default: train.batch_size)")
    add("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {VARIANTS}")
    add("--seconds", type=float, default=4.0, help="timed seconds per measurement (4)")
    add("--warmup", type=int, default=3, help="untimed calls first (3)")
    add("--min-iters", type=int, default=5, help="timed calls at least (5)")
    add("--volume-slices", type=int, default=200, help="slices of the timed volume (200)")
    add("--volume-side", type=int, default=240, help="in-plane voxels of the volume (240)")
    add("--model", help="registry entry for the volume (default: an untrained brain generator)")
    add("--peak-tflops", type=float, help="the device's dense bf16 peak, if not in the table")
    add("--compile-budget", type=float, default=150.0,
        help="skip torch.compile when this many seconds have passed before it (150)")  # fmt: skip
    add("--quick", action="store_true", help="1 s per measurement, 2 calls, a 16-slice volume")
    add("--json", default=f"outputs/bench/{NAME}.json", help="where the figures go")
    add("--max-seconds", type=int, default=420, help="abort after this (420)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import torch

    from hmss_ray.config import load_config

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        reason = (f"no CUDA device (torch {torch.__version__}, built for CUDA "
                  f"{torch.version.cuda or 'none'}): nothing measured")  # fmt: skip
        print(f"[bench] {NAME} skipped: {reason}")
        write_json(args.json, {"bench": NAME, "skipped": reason, "command": command_line()})
        return 0
    if args.quick:
        args.seconds, args.warmup, args.min_iters, args.volume_slices = 1.0, 1, 2, 16
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"error: unknown variants {unknown}; choose from {VARIANTS}")
    os.environ.setdefault("HMSS_RANDOM_FEATURES_OK", "1")
    cfg = load_config(args.config)
    args.batch = args.batch or cfg.train.batch_size
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = peak_tflops(name, args.peak_tflops)
    facts = machine_facts(name)
    if device.type == "cuda":
        facts.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                     tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                     tf32_cudnn=torch.backends.cudnn.allow_tf32)  # fmt: skip
    with deadline(args.max_seconds):
        measured = measure(args, cfg, device)
    summarise(measured, peak)
    report(args, cfg, measured, facts, peak)
    payload = {"bench": NAME, "command": command_line(), "machine": facts, "device": name,
               "peak_bf16_tflops": peak, "batch": args.batch, **measured}  # fmt: skip
    out = write_json(args.json, payload)
    print(f"\nfigures written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
