"""Training throughput: the plain single-process loop vs Ray Train with one worker (issue 4).

Same model (the demo config, 64x64 slices), batch size and shards, all measured in one run:

1. plain: ``run_local`` fed by ``iter_batches`` in this process, validating after every epoch on
   what the Ray loop validates on; before and after the Ray runs (their mean is the baseline;
   their spread shows how much the machine drifted meanwhile);
2. Ray Train, one worker holding ``--cpus-per-worker`` CPUs (the rest are Ray Data's), the same
   shards streamed by Ray Data: the LAST epoch's ``slices_per_s``, ``data_wait_frac`` and
   ``first_batch_s`` (the first epoch carries the start-up), its whole cycle (steps, validation,
   checkpoint and report) against the plain loop's steps + validation, and the fixed cost of a
   run (fit time outside the epoch cycles);
3. peak memory of the Ray Train worker (RSS, and RSS less shared pages: its private memory) on the
   shards and on the same shards duplicated ``--scale`` times: streaming keeps the private memory
   flat while the data grows ``--scale``-fold (the shared part is the object store it maps);
4. Ray Data alone in this process, no training: first-batch latency and slices/s per epoch with
   and without the local shuffle buffer, to show where the data wait comes from.

Both paths run ``--threads`` torch threads (default: the worker's whole CPUs), train the joint
stage every epoch, and augment only with ``--augment`` (the plain loop then applies the same
``BatchAugmenter`` that Ray Data runs).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import (
    DEMO,
    MB,
    RssSampler,
    command_line,
    deadline,
    machine_facts,
    print_header,
    table,
    write_json,
)
from hmss_ray import cli
from hmss_ray.config import ExperimentConfig, config_diff, load_config, parse_overrides

NAME = "train_throughput"
EXAMPLES = """examples:
  python -m bench.train_throughput                # 24 phantom cases, 3 epochs (2-4 min)
  python -m bench.train_throughput --quick        # 12 cases, 2 epochs (1.5-3 min)
  python -m bench.train_throughput --augment --json outputs/bench/train_augment.json
  python -m bench.train_throughput --data data/shards --set train.shuffle_buffer=0
"""


def bench_config(args: argparse.Namespace) -> ExperimentConfig:
    """The experiment config with what this bench fixes; ``--set`` overrides come last."""
    base = load_config(args.config)
    cfg = base.replace(
        {
            "data.image_size": 64,
            "augment.enabled": args.augment,
            "train.stage_epochs": [0, 0, args.epochs],  # every epoch the full cascade
            "train.steps_per_epoch": None,  # the whole train split per epoch
            "train.num_workers": 1,
            "train.use_gpu": False,
            "train.cpus_per_worker": args.cpus_per_worker,
            "train.keep_checkpoints": args.epochs + 1,  # every epoch's metrics come back
            "train.log_every": 10**6,
        }
    )
    return cfg.replace(parse_overrides(args.set)) if args.set else cfg


def make_shards(workdir: Path, cases: int, cfg: ExperimentConfig) -> str:
    from hmss_ray.data.phantom import COARSE_SHAPE, write_dataset
    from hmss_ray.data.prepare import prepare_dataset

    write_dataset(
        workdir / "raw",
        cases=cases,
        regions=cfg.data.regions,
        seed=cfg.train.seed,
        shape=COARSE_SHAPE,
    )
    prepare_dataset(workdir / "raw", str(workdir / "shards"), cfg)
    return str(workdir / "shards")


def duplicate_shards(src_uri: str, dst_uri: str, times: int) -> str:
    """A shard root whose train split is ``src_uri``'s, ``times`` over (other splits once)."""
    from dataclasses import replace

    from hmss_ray import storage
    from hmss_ray.data.manifest import read_manifest, write_manifest

    manifest = read_manifest(src_uri)
    entries = []
    for shard in manifest.shards:
        data = storage.read_bytes(storage.join(src_uri, shard.path))
        split, name = shard.path.split("/", 1)
        for copy in range(times if split == "train" else 1):
            path = f"{split}/{name}" if copy == 0 else f"{split}/copy{copy}-{name}"
            storage.write_bytes(storage.join(dst_uri, path), data)
            entries.append(replace(shard, path=path))
    write_manifest(dst_uri, replace(manifest, shards=entries))
    return dst_uri


def split_size(uri: str, split: str = "train") -> dict[str, float]:
    """Slices, shards and decoded float32 megabytes of one split, from the manifest alone."""
    from hmss_ray.data.manifest import read_manifest

    manifest = read_manifest(uri)
    listed = manifest.shards_of(split)
    rows = sum(s.rows for s in listed)
    per_row = 0
    for column in manifest.columns.values():
        values = 1
        for side in column["shape"]:
            values *= side
        per_row += 4 * values  # decode_batch turns every tensor column into float32
    return {"slices": rows, "shards": len(listed), "decoded_mb": rows * per_row / MB}


def plain_source(uri: str, cfg: ExperimentConfig):
    """epoch -> batches from ``iter_batches``, with the Ray path's channels and augmentation."""
    from hmss_ray.data.preprocess import centre_channels
    from hmss_ray.data.shards import iter_batches

    augmenter = None
    if cfg.augment.enabled:
        from hmss_ray.data.augment import BatchAugmenter

        augmenter = BatchAugmenter(cfg.augment, seed=cfg.train.seed)

    def batches(epoch: int):
        for batch in iter_batches(uri, "train", cfg.train.batch_size):
            batch["mr"] = centre_channels(batch["mr"], cfg.in_channels)
            yield augmenter(batch) if augmenter else batch

    return batches


def run_plain(cfg: ExperimentConfig, uri: str, epochs: int) -> dict[str, Any]:
    from hmss_ray.train.local import run_local

    print(f"[bench] plain loop: {epochs} epoch(s) in this process", flush=True)
    from hmss_ray.train.validation import validation_batches

    with RssSampler(None) as rss:
        start = time.perf_counter()
        run = run_local(
            cfg,
            plain_source(uri, cfg),
            lambda epoch: validation_batches(cfg, uri),  # what the Ray loop validates on
            epochs=epochs,
        )
        wall = time.perf_counter() - start
    keys = ("epoch", "slices", "slices_per_s", "epoch_time_s", "validation_s")
    per_epoch = [{k: e[k] for k in keys} for e in run.epochs]
    for e in per_epoch:
        e["cycle_s"] = e["epoch_time_s"] + e["validation_s"]
    return {
        "epochs": per_epoch,
        "last": per_epoch[-1],
        "wall_s": wall,
        "peak_rss_mb": rss.peak_bytes / MB,
        "peak_private_mb": rss.peak_private_bytes / MB,
    }


def run_ray(cfg: ExperimentConfig, uri: str, storage_uri: str, name: str) -> dict[str, Any]:
    """One TorchTrainer fit; per-epoch metrics come back with each epoch's checkpoint."""
    from hmss_ray.train.trainer import build_trainer

    print(
        f"[bench] Ray Train, 1 worker: {sum(cfg.train.stage_epochs)} epoch(s) on {uri}", flush=True
    )
    with RssSampler("RayTrainWorker", env_keys=("OMP_NUM_THREADS",)) as rss:
        start = time.perf_counter()
        result = build_trainer(cfg, uri, storage_uri, name).fit()
        wall = time.perf_counter() - start
    reported = sorted((m for _, m in result.best_checkpoints or []), key=lambda m: m["epoch"])
    if len(reported) != sum(cfg.train.stage_epochs):
        raise RuntimeError(f"expected metrics for every epoch, got {len(reported)}: {reported}")
    keys = ("epoch", "train_steps", "slices_per_s", "data_wait_frac", "first_batch_s")
    keys += ("epoch_time_s", "validation_s", "cycle_s")
    per_epoch = [{k: m[k] for k in keys} for m in reported]
    in_cycles = sum(e["cycle_s"] for e in per_epoch)
    return {
        "epochs": per_epoch,
        "last": per_epoch[-1],
        "wall_s": wall,
        "outside_cycles_s": wall - in_cycles,  # start-up, the last checkpoint, shut-down
        "peak_worker_rss_mb": rss.peak_bytes / MB,
        "peak_worker_private_mb": rss.peak_private_bytes / MB,
        "worker_omp_num_threads": rss.env.get("OMP_NUM_THREADS"),
        "rss_samples": rss.samples,
    }


def probe_data(cfg: ExperimentConfig, uri: str, cpus: float, epochs: int = 2) -> dict[str, Any]:
    """Ray Data alone, limited to the CPUs it has beside the worker: last of ``epochs``."""
    import ray.data
    import torch
    from ray.data import ExecutionResources

    from hmss_ray.data.stream import build_datasets

    options = ray.data.DataContext.get_current().execution_options
    saved, options.resource_limits = options.resource_limits, ExecutionResources(cpu=cpus)
    data_log = logging.getLogger("ray.data")
    level = data_log.level
    data_log.setLevel(logging.WARNING)  # one "execution started/finished" pair per epoch
    out: dict[str, Any] = {}
    try:
        dataset = build_datasets(uri, cfg, epochs=1)["train"]  # one pass per execution
        for buffer in (cfg.train.shuffle_buffer, 0):
            for _ in range(epochs):
                start, first, slices = time.perf_counter(), None, 0
                for batch in dataset.iter_torch_batches(
                    batch_size=cfg.train.batch_size,
                    dtypes=torch.float32,
                    local_shuffle_buffer_size=buffer or None,
                    drop_last=True,
                ):
                    first = time.perf_counter() - start if first is None else first
                    slices += len(batch["mr"])
                elapsed = time.perf_counter() - start
            out[f"shuffle_buffer_{buffer}"] = {
                "first_batch_s": first,
                "epoch_s": elapsed,
                "slices_per_s": slices / elapsed,
                "after_first_slices_per_s": slices / max(elapsed - (first or 0), 1e-9),
            }
    finally:
        options.resource_limits = saved
        data_log.setLevel(level)
    return out


def measure(args: argparse.Namespace, cfg: ExperimentConfig, workdir: Path) -> dict[str, Any]:
    """Every measurement in order: plain, Ray (x1 and x scale data), Ray Data alone, plain."""
    import ray

    from hmss_ray.cluster import init_ray

    uri = args.data or make_shards(workdir, args.cases, cfg)
    scaled_uri = duplicate_shards(uri, str(workdir / f"shards-x{args.scale}"), args.scale)
    out: dict[str, Any] = {
        "data": {"uri": uri, "x1": split_size(uri), "scaled": split_size(scaled_uri)}
    }
    load = out["load_1min_after"] = {}  # the machine may be shared: say how busy it was
    out["plain_before"] = run_plain(cfg, uri, args.epochs)
    load["plain before"] = os.getloadavg()[0]
    start = time.perf_counter()
    init_ray()
    out["ray_init_s"] = time.perf_counter() - start
    try:
        runs = str(workdir / "runs")
        out["ray"] = run_ray(cfg, uri, runs, "x1")
        load["Ray x1"] = os.getloadavg()[0]
        scaled_epochs = max(1, args.epochs // args.scale)  # about as many steps as the x1 run
        scaled_cfg = cfg.replace({"train.stage_epochs": [0, 0, scaled_epochs]})
        scaled_cfg = scaled_cfg.replace({"train.keep_checkpoints": scaled_epochs + 1})
        out["ray_scaled"] = run_ray(scaled_cfg, scaled_uri, runs, f"x{args.scale}")
        load[f"Ray x{args.scale}"] = os.getloadavg()[0]
        cpus = ray.cluster_resources().get("CPU", 2.0) - cfg.train.cpus_per_worker
        out["data_probe"] = probe_data(cfg, uri, max(cpus, 0.5))
        load["Ray Data alone"] = os.getloadavg()[0]
    finally:
        ray.shutdown()
    out["plain_after"] = run_plain(cfg, uri, args.epochs)
    load["plain after"] = os.getloadavg()[0]
    return out


def summarise(m: dict[str, Any]) -> dict[str, float]:
    before, after = m["plain_before"]["last"], m["plain_after"]["last"]
    plain = (before["slices_per_s"] + after["slices_per_s"]) / 2
    plain_cycle = (before["cycle_s"] + after["cycle_s"]) / 2
    ray, scaled = m["ray"]["last"], m["ray_scaled"]["last"]
    wait_s = ray["data_wait_frac"] * ray["epoch_time_s"]
    step_rate = ray["slices_per_s"] * ray["epoch_time_s"] / (ray["epoch_time_s"] - wait_s)
    rss, rss_scaled = m["ray"]["peak_worker_rss_mb"], m["ray_scaled"]["peak_worker_rss_mb"]
    own, own_scaled = m["ray"]["peak_worker_private_mb"], m["ray_scaled"]["peak_worker_private_mb"]
    return {
        "plain_slices_per_s": plain,
        "plain_drift": abs(before["slices_per_s"] - after["slices_per_s"]) / plain,
        "ray_slices_per_s": ray["slices_per_s"],
        "ray_over_plain": ray["slices_per_s"] / plain,
        "ray_overhead": 1 - ray["slices_per_s"] / plain,
        "ray_data_wait_frac": ray["data_wait_frac"],
        "ray_data_wait_s": wait_s,
        "ray_step_slices_per_s": step_rate,  # the same epoch without its data wait
        "ray_step_over_plain": step_rate / plain,
        "plain_cycle_s": plain_cycle,
        "plain_cycle_drift": abs(before["cycle_s"] - after["cycle_s"]) / plain_cycle,
        "ray_cycle_s": ray["cycle_s"],
        "ray_cycle_over_plain": ray["cycle_s"] / plain_cycle,
        "ray_cycle_overhead": 1 - plain_cycle / ray["cycle_s"],  # of the Ray epoch's time
        "ray_outside_cycles_s": m["ray"]["outside_cycles_s"],
        "ray_scaled_over_plain": scaled["slices_per_s"] / plain,
        "worker_rss_scaled_over_x1": rss_scaled / rss,
        "worker_rss_growth_mb": rss_scaled - rss,
        "worker_private_scaled_over_x1": own_scaled / own,
        "worker_private_growth_mb": own_scaled - own,
        "data_growth_mb": m["data"]["scaled"]["decoded_mb"] - m["data"]["x1"]["decoded_mb"],
    }


def _speed_rows(args: argparse.Namespace, m: dict, r: dict) -> list[list[str]]:
    b, a = m["plain_before"]["last"], m["plain_after"]["last"]
    ray, last, sc = m["ray"], m["ray"]["last"], m["ray_scaled"]["last"]
    return [
        ["plain loop slices/s", f"{r['plain_slices_per_s']:.1f}", "1.00",
         f"baseline: mean of before {b['slices_per_s']:.1f} / after {a['slices_per_s']:.1f} "
         f"(drift {r['plain_drift']:.0%})"],
        ["Ray Train slices/s", f"{r['ray_slices_per_s']:.1f}", f"{r['ray_over_plain']:.2f}",
         f"Ray / plain: overhead {r['ray_overhead']:.0%}"],
        ["Ray data wait", f"{r['ray_data_wait_frac']:.1%}", "-",
         f"of the epoch's steps spent waiting for a batch: {r['ray_data_wait_s']:.2f} s, "
         f"first batch {last['first_batch_s']:.2f} s"],
        ["Ray steps alone, slices/s", f"{r['ray_step_slices_per_s']:.1f}",
         f"{r['ray_step_over_plain']:.2f}", "the same epoch less its data wait"],
        ["plain epoch cycle", f"{r['plain_cycle_s']:.2f} s", "1.00",
         f"steps + validation: before {b['cycle_s']:.2f} / after {a['cycle_s']:.2f} s "
         f"(drift {r['plain_cycle_drift']:.0%})"],
        ["Ray epoch cycle", f"{r['ray_cycle_s']:.2f} s", f"{r['ray_cycle_over_plain']:.2f}",
         f"steps {last['epoch_time_s']:.2f} + validation {last['validation_s']:.2f} s + "
         f"checkpoint/report: overhead {r['ray_cycle_overhead']:.0%} of the cycle"],
        ["Ray fixed cost per run", f"{ray['outside_cycles_s']:.1f} s", "-",
         f"fit {ray['wall_s']:.1f} s - epoch cycles: start-up, last checkpoint, shut-down; "
         f"ray.init {m['ray_init_s']:.1f} s"],
        [f"Ray, x{args.scale} shards, slices/s", f"{sc['slices_per_s']:.1f}",
         f"{r['ray_scaled_over_plain']:.2f}",
         f"one {args.scale}x longer first epoch (start-up in it): data wait "
         f"{sc['data_wait_frac']:.0%}"],
    ]  # fmt: skip


def _memory_rows(args: argparse.Namespace, m: dict, r: dict) -> list[list[Any]]:
    x1, big = m["data"]["x1"], m["data"]["scaled"]
    ray, scaled = m["ray"], m["ray_scaled"]
    return [
        ["shards x1", x1["slices"], f"{x1['decoded_mb']:.0f}", len(ray["epochs"]),
         f"{ray['peak_worker_rss_mb']:.0f}", "1.00", f"{ray['peak_worker_private_mb']:.0f}",
         "1.00"],
        [f"shards x{args.scale} (duplicated)", big["slices"], f"{big['decoded_mb']:.0f}",
         len(scaled["epochs"]), f"{scaled['peak_worker_rss_mb']:.0f}",
         f"{r['worker_rss_scaled_over_x1']:.2f}", f"{scaled['peak_worker_private_mb']:.0f}",
         f"{r['worker_private_scaled_over_x1']:.2f}"],
        ["(plain loop process, x1)", x1["slices"], f"{x1['decoded_mb']:.0f}", args.epochs,
         f"{m['plain_before']['peak_rss_mb']:.0f}", "-",
         f"{m['plain_before']['peak_private_mb']:.0f}", "-"],
    ]  # fmt: skip


def _probe_rows(m: dict, r: dict) -> list[list[str]]:
    rate = r["plain_slices_per_s"]
    return [
        [f"local shuffle buffer {key.rsplit('_', 1)[1]}", f"{p['first_batch_s']:.2f}",
         f"{p['epoch_s']:.2f}", f"{p['slices_per_s']:.1f}", f"{p['slices_per_s'] / rate:.2f}",
         f"{p['after_first_slices_per_s']:.0f}"]
        for key, p in m["data_probe"].items()
    ]  # fmt: skip


def report(args: argparse.Namespace, cfg: ExperimentConfig, m: dict, r: dict, facts: dict) -> None:
    print_header("train throughput: plain single-process loop vs Ray Train, 1 worker", facts)
    x1, ray = m["data"]["x1"], m["ray"]
    print(
        f"workload: {args.config}, image {cfg.data.image_size}, batch {cfg.train.batch_size}, "
        f"{x1['slices']} train slices in {x1['shards']} shards ({m['data']['uri']}), "
        f"augmentation {'on' if cfg.augment.enabled else 'off'}, joint stage, {args.epochs} "
        f"epochs; torch threads {facts['torch_threads']} here, OMP_NUM_THREADS="
        f"{ray['worker_omp_num_threads']} in the Ray worker, which holds "
        f"{cfg.train.cpus_per_worker} of {facts['cpu_count']} CPUs"
    )
    loads = ", ".join(f"{k} {v:.1f}" for k, v in m["load_1min_after"].items())
    print(f"1-min load average at the end of each phase ({facts['cpu_count']} CPUs): {loads}")
    headers = ["steady state (last epoch)", "value", "ratio", "note"]
    print("\n" + table(headers, _speed_rows(args, m, r), left=(0, 3)))
    epochs = [
        f"{e['slices_per_s']:.1f} ({e['data_wait_frac']:.0%}, {e['first_batch_s']:.2f} s)"
        for e in ray["epochs"]
    ]
    print("\nRay epochs, slices/s (data wait, first batch): " + ", ".join(epochs))
    headers = ["peak memory, Ray Train worker", "slices", "decoded MB", "epochs", "RSS MB", "ratio"]
    headers += ["private MB", "ratio"]
    print("\n" + table(headers, _memory_rows(args, m, r)))
    print(
        f"worker RSS {r['worker_rss_growth_mb']:+.0f} MB, private "
        f"{r['worker_private_growth_mb']:+.0f} MB, while the decoded train split grew "
        f"{r['data_growth_mb']:+.0f} MB (private = RSS "
        "less shared pages: libraries and the object store's shared memory the worker mapped)"
    )
    headers = ["Ray Data alone (last of 2 epochs)", "first batch s", "epoch s", "slices/s"]
    headers += ["ratio to plain", "slices/s after 1st batch"]
    print("\n" + table(headers, _probe_rows(m, r)))


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser("bench.train_throughput", __doc__.split("\n\n")[0], EXAMPLES)
    parser.add_argument("--config", default=str(DEMO), help="experiment YAML (default: demo)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override applied last, repeatable (e.g. train.batch_size=16)",
    )
    parser.add_argument("--data", help="shard root (path or s3://) instead of fresh phantoms")
    parser.add_argument("--cases", type=int, default=24, help="phantom cases per region (24)")
    parser.add_argument(
        "--epochs", type=int, default=3, help="epochs per path; the last counts (3)"
    )
    parser.add_argument(
        "--scale", type=int, default=3, help="train shards duplicated for the memory run (3)"
    )
    parser.add_argument("--augment", action="store_true", help="paired augmentation on both paths")
    parser.add_argument(
        "--threads", type=int, help="torch threads on both paths (default: the worker's CPUs)"
    )
    parser.add_argument(
        "--cpus-per-worker", type=float, default=1.0, help="CPUs of the Ray Train worker (1.0)"
    )
    parser.add_argument("--quick", action="store_true", help="12 cases, 2 epochs (1.5-3 min)")
    parser.add_argument("--json", default=f"outputs/bench/{NAME}.json", help="where the figures go")
    parser.add_argument("--max-seconds", type=int, default=900, help="abort a hung run after this")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.cases, args.epochs = 12, 2
    if os.environ.get("RAY_ADDRESS"):
        raise SystemExit("unset RAY_ADDRESS: this bench starts its own local Ray and samples its "
                         "worker processes on this machine")  # fmt: skip
    threads = args.threads or max(1, int(args.cpus_per_worker))
    os.environ["OMP_NUM_THREADS"] = str(threads)  # inherited by the Ray processes started here
    os.environ.setdefault(
        "HMSS_RANDOM_FEATURES_OK", "1"
    )  # no pretrained VGG here: both paths alike
    import torch

    torch.set_num_threads(threads)
    cfg = bench_config(args)
    facts = machine_facts("cpu")
    changes = config_diff(cfg, load_config(args.config))
    print(f"[bench] {NAME}: changes to {args.config}: {changes}", flush=True)
    with tempfile.TemporaryDirectory(prefix="hmss-bench-") as tmp, deadline(args.max_seconds):
        measured = measure(args, cfg, Path(tmp))
    ratios = summarise(measured)
    facts["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report(args, cfg, measured, ratios, facts)
    payload = {"bench": NAME, "command": command_line(), "machine": facts,
               "config": cfg.to_dict(), "ratios": ratios, "measured": measured}  # fmt: skip
    out = write_json(args.json, payload)
    print(f"\nload average at end {facts['load_avg_at_end']}; figures written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
