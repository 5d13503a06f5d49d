"""Autoscaling on the rehearsal cluster: a search job from 0 worker nodes and back, then Serve
from min to max replicas under a bounded load and back (issue 17).

1. ``python -m infra.rehearsal``'s cluster (the cloud's node types, GPUs as ``accel``) and an S3
   server (moto, in its own process) start on loopback; phantom shards go to the bucket.
2. A small search is submitted with ``ray job submit --working-dir .`` (S3 settings only in its
   runtime_env, MLflow tracking into a SQLite store); the node count is sampled every second:
   scale-up (submit -> peak) and scale-down (job end -> 0 worker nodes) times.
3. The winner is deployed with Serve (``serve/hmss-gpu.yaml``, each replica on an ``accel``
   node); ``--clients`` threads POST a phantom MR (at most ``--max-requests``, ``--load-seconds``)
   until the replicas reach the maximum; then the load stops and the replicas go back to the
   minimum, sampled the same way.
4. Serve is shut down and the worker nodes go back to 0.
5. ``prepare`` is submitted as a job on the same phantom folder (every case a Ray task on the
   worker nodes it brings up): its nodes, its time, and whether its shards are byte-identical to
   the ones prepared locally in step 1. Then everything is torn down.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench import DEMO, command_line, deadline, machine_facts, print_header, table, write_json
from hmss_ray import cli
from hmss_ray.cluster import free_port

NAME = "autoscale"
SEARCH = "autoscale"
APP = "hmss"
TINY = [
    "train.batch_size=4",
    "train.steps_per_epoch=3",
    "train.val_max_slices=16",
    "train.stage_epochs=[1, 0, 1]",
    "metrics.fid_max_slices=16",
]
EXAMPLES = """examples:
  python -m bench.autoscale                      # 2 trials at a time, 4 clients (about 4-6 min)
  python -m bench.autoscale --trials 3 --json outputs/bench/autoscale.json
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser("bench.autoscale", __doc__.split("\n\n")[0], EXAMPLES)
    parser.add_argument("--trials", type=int, default=2, help="search trials (all at once)")
    parser.add_argument("--cases", type=int, default=9, help="phantom brain cases")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--max-requests", type=int, default=600, help="load: at most this many")
    parser.add_argument("--load-seconds", type=float, default=120, help="load: at most this long")
    parser.add_argument("--idle-minutes", type=float, default=0.1, help="node idle timeout")
    parser.add_argument("--json", default=f"outputs/bench/{NAME}.json", help="figures as JSON")
    parser.add_argument("--max-seconds", type=int, default=600, help="abort after this long")
    parser.add_argument(
        "--keep", action="store_true", help="keep the work dir (phantoms, mlflow.db) and logs"
    )
    return parser


def s3_settings(endpoint: str) -> dict[str, str]:
    """This run's S3 variables: moto checks no credentials, so a throwaway pair made here."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": secrets.token_hex(8),
        "AWS_SECRET_ACCESS_KEY": secrets.token_hex(16),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }


def make_shards(workdir: Path, bucket: str, cases: int) -> tuple[str, Path]:
    """Phantom brain cases prepared in this process into ``bucket``; (shards URI, an MR file)."""
    import boto3

    from hmss_ray.config import load_config
    from hmss_ray.data.phantom import write_dataset
    from hmss_ray.data.prepare import prepare_dataset

    boto3.client("s3").create_bucket(Bucket=bucket)
    write_dataset(workdir / "phantom", cases=cases, regions=["brain"])
    shards = f"s3://{bucket}/shards"
    prepare_dataset(workdir / "phantom", shards, load_config(DEMO), workers=1)
    return shards, next((workdir / "phantom").glob("Task1/brain/*/mr.nii.gz"))


def tune_command(bucket: str, trials: int, mlflow_uri: str) -> list[str]:
    sets = [
        *TINY,
        f"tune.num_samples={trials}",
        f"tune.max_concurrent_trials={trials}",
        "train.use_gpu=true",
        "train.accelerator_resource=accel",
        # no VGG/Inception weights on this machine; a GPU run refuses random features otherwise
        "train.allow_random_features=true",
        "train.cpus_per_worker=1.5",  # one Train worker per (2-CPU) node, as with 1 GPU per node
        f"tune.mlflow_uri={mlflow_uri}",
    ]
    return [
        "python", "-m", "hmss_ray.tune", "--config", "configs/demo.yaml",
        "--space", "tune_spaces/demo.yaml", "--shards", f"s3://{bucket}/shards",
        "--storage", f"s3://{bucket}/tune", "-o", f"s3://{bucket}/registry",
        "--name", SEARCH, *[arg for item in sets for arg in ("--set", item)],
    ]  # fmt: skip


def prepare_phase(rehearsal, env: dict, workdir: Path, bucket: str) -> dict[str, Any]:
    """``prepare`` as a job from 0 worker nodes; its shards against the locally prepared ones."""
    from hmss_ray.data.manifest import read_manifest
    from infra.rehearsal.cluster import wait_until
    from infra.rehearsal.jobs import submit

    command = [
        "python", "-m", "hmss_ray.prepare", "--data", str(workdir / "phantom"),
        "-o", f"s3://{bucket}/shards-ray", "--config", "configs/demo.yaml",
        "--workers", "2", "--quiet",
    ]  # fmt: skip
    job = submit(rehearsal, command, env, timeout=300)
    if not job.succeeded:
        raise SystemExit(f"error: the prepare job failed:\n{job.output[-4000:]}")
    ran = re.search(r"(\d+) case task\(s\) ran on (\d+) Ray node", job.output)
    wait_until(lambda: not rehearsal.workers(), 180, "worker nodes back to 0 after prepare")
    local = read_manifest(f"s3://{bucket}/shards")
    on_ray = read_manifest(f"s3://{bucket}/shards-ray")
    return {
        "prepare_s": round(job.seconds, 1),
        "prepare_case_tasks": int(ran.group(1)) if ran else None,
        "prepare_nodes": int(ran.group(2)) if ran else None,
        "prepare_identical": on_ray.content_hash == local.content_hash,
    }


def mlflow_statuses(uri: str) -> list[str]:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(SEARCH)
    return [r.info.status for r in client.search_runs([experiment.experiment_id])]


class Load:
    """``clients`` threads POSTing ``body`` until stopped, at most ``max_requests`` in all."""

    def __init__(self, url: str, body: bytes, clients: int, max_requests: int) -> None:
        self.url, self.body, self.max_requests = url, body, max_requests
        self.latencies: list[float] = []
        self.errors = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def _client(self) -> None:
        headers = {"Content-Type": "application/gzip"}
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                with self._lock:
                    if len(self.latencies) + self.errors >= self.max_requests:
                        return
                t0 = time.perf_counter()
                try:
                    ok = client.post(self.url, content=self.body, headers=headers).status_code
                    ok = ok == 200
                except httpx.HTTPError:
                    ok = False
                with self._lock:
                    if ok:
                        self.latencies.append(time.perf_counter() - t0)
                    else:
                        self.errors += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def serve_phase(rehearsal, sampler, model: str, env: dict, mr: Path, args) -> dict[str, Any]:
    """Deploy the winner, load it until the replicas peak, stop, wait for the minimum."""
    from infra.rehearsal import serving
    from infra.rehearsal.cluster import wait_until

    port = free_port()
    config = serving.serve_config(model, port, env)
    low, high = serving.replica_bounds(config)
    serving.deploy(rehearsal, config)
    wait_until(
        lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200,
        240,
        "the Serve endpoint",
    )
    url = f"http://127.0.0.1:{port}/v1/synthesize"
    start = sampler.mark("load started")
    with Load(url, mr.read_bytes(), args.clients, args.max_requests) as load:
        deadline_at = time.monotonic() + args.load_seconds
        while (
            time.monotonic() < deadline_at
            and sampler.first(start, lambda s: s.replicas == high) is None
        ):
            time.sleep(1)
        time.sleep(3)  # a few requests answered at the maximum
    stop = sampler.mark("load stopped")
    wait_until(
        lambda: sampler.samples[-1].replicas == low and sampler.samples[-1].t > stop,
        180,
        "Serve back to its minimum",
    )
    up_at = sampler.first(start, lambda s: s.replicas == high)
    down_at = sampler.first(stop, lambda s: s.replicas == low)
    serving.shutdown(rehearsal)
    lat = sorted(load.latencies)
    return {
        "serve_replicas_min": low,
        "serve_replicas_max": high,
        "serve_scale_up_s": round(up_at - start, 1) if up_at is not None else None,
        "serve_scale_down_s": round(down_at - stop, 1) if down_at is not None else None,
        "serve_requests": len(lat),
        "serve_errors": load.errors,
        "serve_p50_s": round(statistics.median(lat), 3) if lat else None,
        "serve_p95_s": round(lat[int(0.95 * (len(lat) - 1))], 3) if lat else None,
        "serve_load_s": round(stop - start, 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from infra.rehearsal.cluster import down, up, wait_until
    from infra.rehearsal.jobs import NodeSampler, submit

    workdir = Path(tempfile.mkdtemp(prefix="hmss-autoscale-"))
    state = tempfile.mkdtemp(prefix="hmss-rh-", dir="/tmp")  # short: Ray's socket paths
    t_up = time.monotonic()
    rehearsal = up(state, s3=True, idle_timeout_minutes=args.idle_minutes)
    figures: dict[str, Any] = {"cluster_up_s": round(time.monotonic() - t_up, 1)}
    try:
        env = s3_settings(rehearsal.s3_endpoint)
        os.environ.update(env)  # this process writes the shards and reads the results
        bucket = f"hmss-{secrets.token_hex(4)}"
        _, mr = make_shards(workdir, bucket, args.cases)
        mlflow_uri = f"sqlite:///{workdir}/mlflow.db"
        with NodeSampler(rehearsal, app=APP) as sampler:
            submitted = sampler.mark("search submitted")
            job = submit(rehearsal, tune_command(bucket, args.trials, mlflow_uri), env, timeout=480)
            if not job.succeeded:
                raise SystemExit(f"error: the search job failed:\n{job.output[-4000:]}")
            ended = sampler.mark("search ended")
            # a sample taken after the job's end, at 0 (the nodes may be gone already: the
            # driver writes the report and registry after the last trial)
            wait_until(
                lambda: sampler.samples[-1].t > ended and sampler.samples[-1].workers == 0,
                180,
                "worker nodes back to 0",
            )
            peak = max((s.workers for s in sampler.samples if s.t <= ended), default=0)
            figures.update(
                search_s=round(job.seconds, 1),
                peak_worker_nodes=peak,
                peak_by_type=max(
                    (s.by_type for s in sampler.samples if s.workers == peak), key=len, default={}
                ),
                scale_up_s=_since(sampler, submitted, lambda s: s.workers == peak),
                scale_down_s=_since(sampler, ended, lambda s: s.workers == 0),
            )
            statuses = mlflow_statuses(mlflow_uri)
            figures.update(
                mlflow_runs=len(statuses),
                trials_completed=statuses.count("FINISHED"),
                trials_failed=len(statuses) - statuses.count("FINISHED"),
            )
            model = f"s3://{bucket}/registry/{SEARCH}"
            figures.update(serve_phase(rehearsal, sampler, model, env, mr, args))
            wait_until(lambda: not rehearsal.workers(), 180, "worker nodes back to 0 after Serve")
            figures.update(prepare_phase(rehearsal, env, workdir, bucket))
            figures["final_worker_nodes"] = len(rehearsal.workers())
        figures["serve_replicas_peak"] = sampler.peak_replicas
        figures["timeline"] = [(round(s.t, 1), s.workers, s.replicas) for s in sampler.samples]
        figures["marks"] = {k: round(v, 1) for k, v in sampler.marks.items()}
    finally:
        down(state, keep=args.keep)
        if args.keep:
            print(f"kept: {workdir} (mlflow.db, phantom/), cluster logs in {state}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return figures


def _since(sampler, after: float, predicate) -> float | None:
    at = sampler.first(after, predicate)
    return round(at - after, 1) if at is not None else None


def report(figures: dict[str, Any], args: argparse.Namespace) -> str:
    f = figures
    rows = [
        ("cluster up (head + S3 server)", f"{f['cluster_up_s']} s", "0 worker nodes"),
        ("search job", f"{f['search_s']} s", f"{args.trials} trials at once, tiny demo config"),
        ("peak worker nodes", f["peak_worker_nodes"], _types(f["peak_by_type"])),
        ("scale up: submit -> peak", f"{f['scale_up_s']} s", "autoscaler from 0"),
        ("scale down: job end -> 0", f"{f['scale_down_s']} s", f"idle {args.idle_minutes} min"),
        ("trials completed / failed", f"{f['trials_completed']} / {f['trials_failed']}", ""),
        ("MLflow runs", f["mlflow_runs"], "one per trial"),
        (
            "Serve replicas min -> peak",
            f"{f['serve_replicas_min']} -> {f['serve_replicas_peak']}",
            f"max {f['serve_replicas_max']}, one accel node each",
        ),
        (
            "Serve scale up under load",
            f"{f['serve_scale_up_s']} s",
            f"{args.clients} clients, {f['serve_requests']} requests, {f['serve_errors']} errors",
        ),
        ("Serve back to min after load", f"{f['serve_scale_down_s']} s", ""),
        ("request latency p50 / p95", f"{f['serve_p50_s']} / {f['serve_p95_s']} s", ""),
        (
            "prepare as a job",
            f"{f['prepare_s']} s",
            f"{f['prepare_case_tasks']} case tasks on {f['prepare_nodes']} nodes; "
            f"byte-identical: {f['prepare_identical']}",
        ),
        ("final worker nodes", f["final_worker_nodes"], "after Serve and prepare"),
    ]
    timeline = " ".join(str(w) for _, w, _ in f["timeline"][:: max(1, len(f["timeline"]) // 60)])
    return table(["rehearsal", "value", "note"], rows) + f"\n\nworker nodes over time: {timeline}"


def _types(by_type: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(by_type.items()))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if os.environ.get("RAY_ADDRESS"):
        print(
            "error: unset RAY_ADDRESS: the bench starts its own rehearsal cluster", file=sys.stderr
        )
        return 2
    facts = machine_facts()
    print_header("autoscaling on the rehearsal cluster", facts)
    t0 = time.monotonic()
    with deadline(args.max_seconds):
        figures = run(args)
    figures["bench_s"] = round(time.monotonic() - t0, 1)
    print(report(figures, args))
    print(f"bench wall time {figures['bench_s']} s")
    out = write_json(args.json, {"command": command_line(), "machine": facts, **figures})
    print(f"figures: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
