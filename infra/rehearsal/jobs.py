"""Using a running rehearsal: submit a job with the ``ray`` CLI, and watch its worker nodes.

Shared by ``bench/autoscale.py`` and ``tests/integration/test_cluster_job.py``, which drive the
cluster exactly as the README tells a person to.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from infra.rehearsal.cluster import ROOT, Rehearsal
from infra.rehearsal.provider import nodes_dir


@dataclass
class Job:
    """A finished ``ray job submit``: its exit status, output and wall time."""

    returncode: int
    output: str
    seconds: float

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0 and "succeeded" in self.output.lower()


def submit(
    rehearsal: Rehearsal,
    entrypoint: Sequence[str],
    env_vars: dict[str, str],
    timeout: float = 600,
    cwd: Path = ROOT,
) -> Job:
    """``ray job submit --address ... --working-dir . --runtime-env-json ... -- <entrypoint>``.

    Blocks until the job ends (the CLI follows its logs). ``env_vars`` reach the job's driver and
    every task and actor it starts, on whichever node: the only way S3 settings get there.
    """
    ray_cli = str(Path(sys.executable).parent / "ray")
    command = [
        ray_cli, "job", "submit", "--address", rehearsal.address, "--working-dir", ".",
        "--runtime-env-json", json.dumps({"env_vars": env_vars}), "--", *entrypoint,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(rehearsal.cli_env())
    t0 = time.monotonic()
    try:
        done = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:  # what it printed so far says where it stood
        partial = "".join(_text(x) for x in (exc.stdout, exc.stderr))
        return Job(-1, f"{partial}\n[ray job submit still running after {timeout:.0f} s]", timeout)
    return Job(done.returncode, done.stdout + done.stderr, time.monotonic() - t0)


def _text(data: str | bytes | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


@dataclass
class Sample:
    t: float  # seconds since the sampler started
    workers: int
    by_type: dict[str, int] = field(default_factory=dict)
    replicas: int | None = None


class NodeSampler:
    """Counts the alive worker nodes (and Serve replicas, when asked) every ``interval`` s.

    A context manager; ``samples`` is the time series, ``mark(name)`` records an event time on
    the same clock (e.g. when a job was submitted) for :meth:`first` / :meth:`last` queries.
    """

    def __init__(self, rehearsal: Rehearsal, interval: float = 1.0, app: str | None = None):
        self.rehearsal, self.interval, self.app = rehearsal, interval, app
        self.samples: list[Sample] = []
        self.marks: dict[str, float] = {}
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="node-sampler", daemon=True)

    def now(self) -> float:
        return time.monotonic() - self._t0

    def mark(self, name: str) -> float:
        self.marks[name] = self.now()
        return self.marks[name]

    def sample(self) -> Sample:
        workers = self.rehearsal.workers()
        by_type: dict[str, int] = {}
        for node in workers:
            by_type[node.node_type] = by_type.get(node.node_type, 0) + 1
        replicas = serve_replicas(self.rehearsal, self.app) if self.app else None
        return Sample(self.now(), len(workers), by_type, replicas)

    def _run(self) -> None:
        while not self._stop.is_set():
            # a busy dashboard just misses a sample
            with contextlib.suppress(httpx.HTTPError, OSError, KeyError, ValueError):
                self.samples.append(self.sample())
            self._stop.wait(self.interval)

    @property
    def peak(self) -> int:
        return max((s.workers for s in self.samples), default=0)

    @property
    def peak_replicas(self) -> int:
        return max((s.replicas or 0 for s in self.samples), default=0)

    def first(self, after: float, predicate) -> float | None:
        """The time of the first sample after ``after`` for which ``predicate(sample)`` holds."""
        return next((s.t for s in self.samples if s.t >= after and predicate(s)), None)

    def __enter__(self) -> NodeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def serve_replicas(rehearsal: Rehearsal, app: str) -> int:
    """RUNNING replicas of every deployment of Serve application ``app`` (0 when absent)."""
    details = rehearsal.get("/api/serve/applications/")
    application = (details.get("applications") or {}).get(app) or {}
    return sum(
        1
        for deployment in (application.get("deployments") or {}).values()
        for replica in deployment.get("replicas") or []
        if replica.get("state") == "RUNNING"
    )


def actor_nodes(rehearsal: Rehearsal, class_name: str, alive: bool = False) -> list[str]:
    """The node ids of every actor of ``class_name`` the cluster ran, one per actor (finished
    ones included, unless ``alive``)."""
    rows = rehearsal.get("/api/v0/actors?limit=10000&detail=1")["data"]["result"]["result"]
    return [
        row["node_id"]
        for row in rows
        if row.get("class_name") == class_name and (row.get("state") == "ALIVE" or not alive)
    ]


def node_holders(rehearsal: Rehearsal) -> dict[str, list[str]]:
    """For each alive worker node (by type and id), the actors alive on it: what keeps it busy."""
    rows = rehearsal.get("/api/v0/actors?limit=10000&detail=1")["data"]["result"]["result"]
    alive = {n.node_id: f"{n.node_type} {n.node_id[-5:]}" for n in rehearsal.workers()}
    held: dict[str, list[str]] = {name: [] for name in alive.values()}
    for row in rows:
        if row.get("state") != "DEAD" and row.get("node_id") in alive:
            held[alive[row["node_id"]]].append(row.get("class_name", "?"))
    return held


def kill_node(rehearsal: Rehearsal, node_id: str) -> int:
    """SIGKILL a worker node's raylet and agents, as if its machine were lost; how many processes.

    Found by the node's own temp dir in their command lines (``provider.py`` gives each node one);
    the node's workers notice their raylet is gone and exit, and the GCS marks the node dead.
    """
    temp_dir = f"{nodes_dir(rehearsal.state_dir) / node_id[-5:]}/".encode()
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if temp_dir in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue  # gone, or not ours to read
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)
