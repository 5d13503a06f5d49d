"""Start, inspect and stop the rehearsal cluster (and, optionally, an S3 server) on this machine.

Everything a rehearsal starts is its own: a head on free loopback ports, a temp dir inside its
state dir (``/tmp/hmss-rehearsal`` by default), a token of its own, and the marker variable
``HMSS_REHEARSAL=<state dir>`` in the environment of every process (the fake worker nodes, their
workers and the job drivers inherit it). ``down`` stops the head's process group, then every
process that still carries the marker: never another Ray on the machine, and never by name.

The head runs with no ``AWS_*`` variable, so S3 reaches a job only through its ``runtime_env``,
as on a real cluster, where nodes get credentials from their IAM role.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from infra.rehearsal.config import FAKE_HEAD_TYPE, REHEARSAL_CLUSTER, ROOT, runtime_config
from infra.rehearsal.provider import nodes_dir

DEFAULT_STATE = Path("/tmp/hmss-rehearsal")
MARKER = "HMSS_REHEARSAL"
STATE_FILE = "state.json"
TOKEN_FILE = "auth_token"
# The autoscaler looks every 5 s by default; 2 s makes a one-machine rehearsal snappier.
UPDATE_INTERVAL_S = "2"
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray uses 127.0.0.1 as the node address


class RehearsalError(RuntimeError):
    """The rehearsal cluster could not be started or reached; the message says why."""


@dataclass(frozen=True)
class Node:
    """One Ray node of the rehearsal as the dashboard's state API lists it."""

    node_id: str
    node_type: str
    alive: bool
    resources: dict[str, float] = field(default_factory=dict)

    @property
    def is_head(self) -> bool:
        return self.node_type == FAKE_HEAD_TYPE


@dataclass
class Rehearsal:
    """A running rehearsal: where its state lives, its ports and the pids it started."""

    state_dir: str
    gcs_port: int
    dashboard_port: int
    head_pid: int
    s3_port: int | None = None
    s3_pid: int | None = None
    started_at: float = 0.0

    @property
    def address(self) -> str:
        """The dashboard / job API, what ``ray job submit --address`` takes."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def token_path(self) -> Path:
        return Path(self.state_dir) / TOKEN_FILE

    @property
    def s3_endpoint(self) -> str | None:
        return f"http://127.0.0.1:{self.s3_port}" if self.s3_port else None

    def cli_env(self) -> dict[str, str]:
        """What Ray's CLIs and drivers need to reach this cluster (no secret: the token's path).

        ``RAY_ADDRESS`` is the GCS, for ``ray.init`` / ``ray status`` / our commands (which then
        attach, as inside a job); the job CLI takes ``RAY_API_SERVER_ADDRESS`` first and the
        Serve CLI ``RAY_DASHBOARD_ADDRESS``, both the dashboard.
        """
        env = {
            "RAY_ADDRESS": self.gcs_address,
            "RAY_API_SERVER_ADDRESS": self.address,
            "RAY_DASHBOARD_ADDRESS": self.address,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.token_path),
            # as on the nodes: 127.0.0.1 stays 127.0.0.1 (Ray would swap in the host's address)
            LOOPBACK_ONLY: "0",
        }
        if self.s3_endpoint:  # moto's region; credentials: any pair (moto checks none)
            env.update(AWS_ENDPOINT_URL=self.s3_endpoint, AWS_DEFAULT_REGION="us-east-1")
        return env

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token_path.read_text().strip()}"}

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        """``method path`` on the dashboard with the cluster's token; the decoded JSON, if any."""
        reply = httpx.request(
            method, f"{self.address}{path}", json=body, headers=self.headers(), timeout=timeout
        )
        reply.raise_for_status()
        return reply.json() if reply.content else None

    def get(self, path: str, timeout: float = 10) -> Any:
        return self.request("GET", path, timeout=timeout)

    def node_types(self) -> dict[str, dict[str, Any]]:
        """The node types of the config this cluster runs (``<state dir>/cluster.yaml``)."""
        cfg = yaml.safe_load((Path(self.state_dir) / "cluster.yaml").read_text())
        return cfg["available_node_types"]

    def nodes(self) -> list[Node]:
        """Every node the cluster has known, alive or not, from the state API."""
        rows = self.get("/api/v0/nodes?limit=1000&detail=1")["data"]["result"]["result"]
        types = self.node_types()
        return [_node(row, types) for row in rows]

    def workers(self) -> list[Node]:
        """The worker nodes alive now (the autoscaler's doing: there are none at start)."""
        return [n for n in self.nodes() if n.alive and not n.is_head]

    def save(self) -> None:
        path = Path(self.state_dir) / STATE_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: str | Path = DEFAULT_STATE) -> Rehearsal | None:
        path = Path(state_dir) / STATE_FILE
        return cls(**json.loads(path.read_text())) if path.exists() else None


def _node(row: dict[str, Any], types: dict[str, dict[str, Any]]) -> Node:
    resources = {k: float(v) for k, v in (row.get("resources_total") or {}).items()}
    if row.get("is_head_node"):
        kind = FAKE_HEAD_TYPE
    else:
        # the fake provider names a node's type only in its environment: find the type whose
        # declared resources the node has (the rehearsal's types differ in their accelerators)
        kind = next(
            (
                name
                for name, spec in types.items()
                if name != FAKE_HEAD_TYPE
                and all(resources.get(k) == float(v) for k, v in spec["resources"].items())
            ),
            "unknown",
        )
    return Node(row["node_id"], kind, row.get("state") == "ALIVE", resources)


def free_port() -> int:
    from hmss_ray.cluster import free_port as _free_port

    return _free_port()


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, interval: float = 1.0
) -> float:
    """Poll ``check`` until it is true; the seconds it took. RehearsalError after ``timeout``."""
    start = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - start
        except (httpx.HTTPError, OSError, KeyError, ValueError):
            pass  # not up yet
        if time.monotonic() - start > timeout:
            raise RehearsalError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _node_env(state_dir: Path, token_path: Path, metrics_port: int) -> dict[str, str]:
    """The environment of the head and so of every node: the checkout importable, no AWS_*;
    Ray token auth and Serve's HAProxy front through the guard, as the cluster image sets them."""
    from hmss_ray import haproxy
    from hmss_ray.cluster import SERVE_ENV

    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_"))
    }  # S3 access comes from each job's runtime_env; a stale RAY_ADDRESS must not leak in
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        {
            MARKER: str(state_dir),
            "RAY_FAKE_CLUSTER": "1",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token_path),
            "AUTOSCALER_UPDATE_INTERVAL_S": UPDATE_INTERVAL_S,
            # Ray's laptop mode: every node (the fake workers too) binds 127.0.0.1, never the
            # machine's network address
            LOOPBACK_ONLY: "0",
            "AUTOSCALER_METRIC_PORT": str(metrics_port),
            # what `ray up` does with file_mounts + `pip install -e`: nodes import this checkout,
            # and a job's `python` is the one of this environment
            "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
            **SERVE_ENV,
        }
    )
    guard = haproxy.install(state_dir / "haproxy")
    if guard:
        env["RAY_SERVE_HAPROXY_BINARY_PATH"] = guard
    return env


def _head_command(cfg_path: Path, temp_dir: Path, gcs: int, dashboard: int) -> list[str]:
    ray = str(Path(sys.executable).parent / "ray")
    return [
        ray, "start", "--head", "--block",
        f"--autoscaling-config={cfg_path}",
        "--num-cpus=0",  # the rehearsal YAML's head has CPU 0 too: no training on the head
        f"--port={gcs}",
        "--node-ip-address=127.0.0.1",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        f"--object-store-memory={300 * 2**20}",
        f"--temp-dir={temp_dir}",
    ]  # fmt: skip


def up(
    state_dir: str | Path = DEFAULT_STATE,
    *,
    s3: bool = False,
    idle_timeout_minutes: float | None = None,
    timeout: float = 180,
) -> Rehearsal:
    """Start the rehearsal head (and an S3 server on loopback when ``s3``); wait until it answers.

    Args:
        state_dir: where the config, token, logs and Ray's temp dir go; one cluster per dir. Keep
            it short: Ray's socket paths under it must stay below 107 characters.
        s3: also start moto's S3 server on a free loopback port (in-memory: gone at ``down``).
        idle_timeout_minutes: overrides the YAML's (worker nodes leave after this long idle).
        timeout: seconds to wait for the dashboard and the head node.
    """
    state = Path(state_dir).resolve()
    running = Rehearsal.load(state)
    if running is not None and _alive(running.head_pid):
        raise RehearsalError(f"a rehearsal is already up in {state}: `down` it first")
    if running is not None:
        down(state)  # a crashed one: its leftovers go first
    elif state.exists() and any(state.iterdir()):
        raise RehearsalError(f"{state} is not empty and holds no rehearsal: choose another --state")
    (state / "ray").mkdir(parents=True)
    token_path = state / TOKEN_FILE
    token_path.touch(mode=0o600)
    token_path.write_text(secrets.token_hex(32))
    gcs, dashboard = free_port(), free_port()
    cfg_path = state / "cluster.yaml"
    cfg = runtime_config(REHEARSAL_CLUSTER.read_text(), gcs, nodes_dir(state), idle_timeout_minutes)
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = _node_env(state, token_path, free_port())
    with open(state / "head.log", "ab") as log:
        head = subprocess.Popen(
            _head_command(cfg_path, state / "ray", gcs, dashboard),
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    rehearsal = Rehearsal(str(state), gcs, dashboard, head.pid, started_at=time.time())
    rehearsal.save()
    try:
        if s3:
            rehearsal.s3_port, rehearsal.s3_pid = _start_s3(state, env)
            rehearsal.save()
        wait_until(lambda: _head_ready(rehearsal, head), timeout, "the rehearsal head")
    except BaseException:
        down(state)
        raise
    return rehearsal


def _head_ready(rehearsal: Rehearsal, head: subprocess.Popen) -> bool:
    if head.poll() is not None:
        log = Path(rehearsal.state_dir) / "head.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RehearsalError(f"`ray start --head` exited with {head.returncode}:\n{tail}")
    return any(n.is_head and n.alive for n in rehearsal.nodes())


def _start_s3(state: Path, env: dict[str, str]) -> tuple[int, int]:
    port = free_port()
    with open(state / "s3.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    wait_until(
        lambda: httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code < 500,
        60,
        "the S3 server",
        interval=0.5,
    )
    return port, proc.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def marked_pids(state_dir: str | Path) -> list[int]:
    """Pids of processes whose environment carries this rehearsal's marker (Linux ``/proc``)."""
    wanted = f"{MARKER}={Path(state_dir).resolve()}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue  # gone, or not ours to read
    return [pid for pid in found if pid != os.getpid()]


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def down(state_dir: str | Path = DEFAULT_STATE, *, grace: float = 5, keep: bool = False) -> int:
    """Stop the rehearsal in ``state_dir``; how many of its processes had to be killed.

    The head's process group gets SIGTERM and ``grace`` seconds; then SIGKILL goes to what is
    left of it and to every process carrying the marker (job drivers start their own sessions).
    ``keep`` leaves the state dir (logs) in place.
    """
    state = Path(state_dir).resolve()
    rehearsal = Rehearsal.load(state)
    if rehearsal is None:
        return 0
    for pid in (rehearsal.head_pid, rehearsal.s3_pid):
        if pid:
            _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while marked_pids(state) and time.monotonic() < deadline:
        time.sleep(0.5)
    leftovers = set(marked_pids(state))
    for pid in (rehearsal.head_pid, rehearsal.s3_pid):
        if pid:
            _signal_group(pid, signal.SIGKILL)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _reap(rehearsal.head_pid)
    if not keep:
        shutil.rmtree(state, ignore_errors=True)
    else:
        (state / STATE_FILE).unlink(missing_ok=True)
    return len(leftovers)


def _reap(pid: int) -> None:
    # a head started by this very process would stay a zombie until waited for
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
