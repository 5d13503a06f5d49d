"""DDP communication per stage: what each stage all-reduces against what it trains (issue 16).

Two processes (torch.distributed, gloo, CPU) train the demo cascade through the three stages
(``lrg``, ``hrg``, ``joint``), ``--steps`` steps each, on random batches of the config's shape,
in two designs measured in the same run:

1. per stage (what ``hmss_ray.train.distributed.StageParallel`` does): the generator re-wrapped
   in DDP when the stage changes, over the parameters that stage trains;
2. one wrap (the design before issue 16): the whole generator wrapped once with
   ``find_unused_parameters=True``, the stages only freezing parameters inside it.

A communication hook counts the gradient elements each design hands to the all-reduce. The
figures for the full brain model (``configs/brain.yaml``) are the parameters that require a
gradient in each stage, which is exactly what DDP registers: no training needed to count them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import DEMO, command_line, machine_facts, print_header, table, write_json
from hmss_ray import cli, resources

NAME = "ddp_comm"
STAGES = ("lrg", "hrg", "joint")
BRAIN = resources.find(resources.CONFIGS, "brain")
EXAMPLES = """examples:
  python -m bench.ddp_comm                       # demo model, 3 steps per stage (~30 s)
  python -m bench.ddp_comm --steps 5 --set train.grad_compression=bf16 --json out.json
"""


def _batch(cfg, seed: int) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed)
    n, size = cfg.train.batch_size, cfg.data.image_size
    mr = torch.rand(n, cfg.in_channels, size, size, generator=g) * 2 - 1
    mask = torch.zeros(n, 1, size, size)
    mask[..., size // 8 : -size // 8, size // 8 : -size // 8] = 1
    return {"mr": mr, "ct": mr[:, cfg.in_channels // 2 :][:, :1].tanh(), "mask": mask}


def _one_wrap(nets, cfg, log):
    """The design before issue 16: the whole generator in one DDP, unused parameters searched."""
    import torch

    from hmss_ray.train.distributed import wrap

    cpu, compression = torch.device("cpu"), cfg.train.grad_compression
    g = wrap(nets.generator, cpu, True, compression, log)
    d = wrap(nets.discriminator, cpu, False, compression, None)
    return g, d


def _measure(rank: int, cfg, steps: int, design: str) -> dict[str, Any]:
    import torch

    from hmss_ray.train import steps as train_steps
    from hmss_ray.train.distributed import CommLog, StageParallel

    torch.manual_seed(cfg.train.seed)
    nets = train_steps.build_training(cfg, "cpu")
    log = CommLog()
    if design == "per_stage":
        parallel = StageParallel(nets.generator, nets.discriminator, cfg, torch.device("cpu"), log)
    else:
        g, d = _one_wrap(nets, cfg, log)
    out: dict[str, Any] = {}
    step = 0
    for stage in STAGES:
        if design == "per_stage":
            parallel.set_stage(stage)
            g, d = parallel.g, parallel.d
        else:
            train_steps.set_stage(nets.generator, stage)
        g.train(), d.train()
        trainable = sum(p.numel() for p in nets.generator.parameters() if p.requires_grad)
        times = []
        for _ in range(steps + 1):  # the first step of a stage (a new wrapper) is not timed
            log.clear()
            batch = _batch(cfg, seed=100 * step + rank)
            start = time.perf_counter()
            train_steps.train_step(g, d, *nets.optimizers.values(), batch, cfg, stage, step)
            times.append(time.perf_counter() - start)
            step += 1
        out[stage] = {"allreduced": log.elements, "trainable": trainable,
                      "step_s": sum(times[1:]) / steps}  # fmt: skip
    return out


def _rank_main(rank: int, store: str, out_dir: str, cfg_dict: dict, steps: int) -> None:
    import torch
    import torch.distributed as dist

    from hmss_ray.config import ExperimentConfig

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        cfg = ExperimentConfig.from_dict(cfg_dict)
        result = {d: _measure(rank, cfg, steps, d) for d in ("per_stage", "one_wrap")}
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def brain_counts() -> dict[str, dict[str, int]]:
    """Per stage, the brain generator's parameters that require a gradient (= DDP registers)."""
    from hmss_ray.config import load_config
    from hmss_ray.models.factory import build_generator, count_parameters
    from hmss_ray.train.steps import set_stage

    generator = build_generator(load_config(BRAIN))
    counts = {}
    for stage in STAGES:
        set_stage(generator, stage)
        trainable = sum(p.numel() for p in generator.parameters() if p.requires_grad)
        counts[stage] = {"trainable": trainable, "one_wrap": count_parameters(generator)}
    return counts


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import torch.multiprocessing as mp

    from hmss_ray.config import load_config, parse_overrides

    cfg = load_config(args.config)
    cfg = cfg.replace(parse_overrides(args.set)) if args.set else cfg
    with tempfile.TemporaryDirectory(prefix="hmss-ddp-comm-") as tmp:
        start = time.perf_counter()
        mp.spawn(_rank_main, args=(f"{tmp}/store", tmp, cfg.to_dict(), args.steps), nprocs=2)
        wall = time.perf_counter() - start
        ranks = [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=True) for r in range(2)]
    counts = [{d: {s: (v["allreduced"], v["trainable"]) for s, v in r[d].items()} for d in r}
              for r in ranks]  # fmt: skip
    if counts[0] != counts[1]:
        raise RuntimeError(f"the two ranks counted differently: {counts}")
    mean = lambda design, s: sum(r[design][s]["step_s"] for r in ranks) / 2  # noqa: E731
    per, one = ranks[0]["per_stage"], ranks[0]["one_wrap"]
    stages = {
        s: {
            "allreduced": per[s]["allreduced"],
            "trainable": per[s]["trainable"],
            "allreduced_one_wrap": one[s]["allreduced"],
            "step_s": mean("per_stage", s),
            "step_s_one_wrap": mean("one_wrap", s),
        }
        for s in STAGES
    }
    return {"cfg": cfg, "stages": stages, "brain": brain_counts(), "wall_s": wall}


def report(args: argparse.Namespace, measured: dict[str, Any], facts: dict[str, Any]) -> None:
    cfg, stages, brain = measured["cfg"], measured["stages"], measured["brain"]
    print_header("DDP all-reduce per stage: per-stage wrap vs one wrap (2 ranks, gloo)", facts)
    print(
        f"workload: {args.config}, image {cfg.data.image_size}, batch {cfg.train.batch_size} per "
        f"rank, {args.steps} timed steps per stage, grad compression "
        f"{cfg.train.grad_compression}; spawn + run {measured['wall_s']:.1f} s"
    )
    rows = [
        [s, f"{v['trainable']:,}", f"{v['allreduced']:,}", f"{v['allreduced_one_wrap']:,}",
         f"{v['allreduced_one_wrap'] / v['allreduced']:.1f}x", f"{v['step_s'] * 1e3:.0f}",
         f"{v['step_s_one_wrap'] * 1e3:.0f}"]
        for s, v in stages.items()
    ]  # fmt: skip
    headers = ["stage (demo model)", "trainable", "all-reduced", "one wrap", "ratio"]
    print("\n" + table([*headers, "step ms", "one-wrap step ms"], rows))
    rows = [
        [s, f"{v['trainable']:,}", f"{v['one_wrap']:,}", f"{v['trainable'] * 4 / 2**20:.1f}",
         f"{v['one_wrap'] * 4 / 2**20:.1f}"]
        for s, v in brain.items()
    ]  # fmt: skip
    headers = ["stage (brain model)", "all-reduced", "one wrap", "MiB/step", "one-wrap MiB/step"]
    print("\n" + table(headers, rows))
    print("(brain: parameters requiring a gradient, which is what DDP registers; fp32 gradients)")


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser("bench.ddp_comm", __doc__.split("\n\n")[0], EXAMPLES)
    parser.add_argument("--config", default=str(DEMO), help="experiment YAML (default: demo)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override applied last, repeatable")  # fmt: skip
    parser.add_argument("--steps", type=int, default=3, help="timed steps per stage (3)")
    parser.add_argument("--json", default=f"outputs/bench/{NAME}.json", help="where figures go")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("HMSS_RANDOM_FEATURES_OK", "1")  # the demo model: random features
    facts = machine_facts("cpu (2 processes, gloo)")
    facts["torch_threads"] = 1  # per rank (the spawned processes set it)
    measured = run(args)
    report(args, measured, facts)
    payload = {
        "bench": NAME, "command": command_line(), "machine": facts,
        "config": measured["cfg"].to_dict(), "stages": measured["stages"],
        "brain": measured["brain"], "wall_s": measured["wall_s"],
    }  # fmt: skip
    out = write_json(args.json, payload)
    print(f"\nfigures written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
