"""Serve on the rehearsal (token auth on) keeps HAProxy's stats and metrics off the network.

The endpoint is deployed as a pod runs it, on every interface (``0.0.0.0``, with an API token as
the app then requires); Ray 2.60's template binds the stats page (8404) and the Prometheus
exporter (9101) on every interface too. Through the guard, this machine's non-loopback address
answers on the endpoint's port and refuses every other port HAProxy listens on, while each of
those answers on 127.0.0.1 (so they are up, only not reachable from the network); and no socket
of the cluster's HAProxy processes is on a wildcard address but the endpoint's. The rest of the
cluster's listeners are checked too (see the last helper). One rehearsal head, one ``accel``
worker node for the replica: ~40-50 s on 2 cores.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest
import ray

from hmss_ray.cluster import free_port
from infra.rehearsal import serving
from infra.rehearsal.cluster import down, marked_pids, up, wait_until

from .conftest import tiny_config

pytestmark = [pytest.mark.integration, pytest.mark.own_ray]
TOKEN = "rehearsal-endpoint-token-0123456789"
WILDCARDS = {"0.0.0.0", "::"}


@pytest.fixture(autouse=True)
def _no_shared_ray():
    assert not ray.is_initialized(), "own_ray tests run in a pytest run without ray_session"


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine other than loopback: the one its default route uses (a
    UDP connect sends no packet), else the first of ``hostname -I``; None when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("198.51.100.1", 9))  # TEST-NET-2: picks the default route's interface
            found = [s.getsockname()[0]]
        except OSError:
            done = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False)
            found = [a for a in done.stdout.split() if "." in a]
    return next((a for a in found if not a.startswith("127.")), None)


def _hex_address(text: str) -> str:
    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))  # /proc's per-word order
    return socket.inet_ntop(socket.AF_INET6, words)


def listeners(pid: int) -> set[tuple[str, int]]:
    """The (address, port) of every TCP socket ``pid`` listens on (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                host, port = cols[1].rsplit(":", 1)
                found.add((_hex_address(host), int(port, 16)))
    return found


def haproxy_pids(state: str) -> list[int]:
    return [
        p for p in marked_pids(state) if Path(f"/proc/{p}/comm").read_text().strip() == "haproxy"
    ]


def cluster_listeners(state: str) -> list[tuple[str, str, int]]:
    """(process, address, port) of every TCP listener of the rehearsal's processes; a process
    by its argv[0] (Ray names its workers ``ray::<actor>``, HAProxy is the real binary's path)."""
    found = []
    for pid in marked_pids(state):
        try:
            name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            found += [(name, host, port) for host, port in listeners(pid)]
        except OSError:
            continue  # gone meanwhile
    return found


def refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=3).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture
def entry(tmp_path) -> str:
    import torch

    from hmss_ray.models import checkpoint as ckpt
    from hmss_ray.models.factory import build_generator

    torch.manual_seed(0)
    cfg = tiny_config()
    directory = ckpt.save_checkpoint(
        tmp_path / "ckpt", generator=build_generator(cfg), cfg=cfg, epoch=1, metrics={"ssim": 0.5}
    )
    return ckpt.write_registry_entry(
        directory, str(tmp_path / "registry"), "tiny", metrics={"ssim": 0.5}, winner={}
    )


def test_serve_on_the_rehearsal_keeps_stats_and_metrics_off_the_network(entry):
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to probe")
    state = tempfile.mkdtemp(prefix="hmss-rl-", dir="/tmp")  # short: socket paths < 107 chars
    port = free_port()
    try:
        rehearsal = up(state)
        config = serving.serve_config(entry, port, {"HMSS_API_TOKEN": TOKEN}, max_replicas=1)
        config["http_options"]["host"] = "0.0.0.0"  # as in a pod: the Service reaches it
        serving.deploy(rehearsal, config)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        model = f"http://{address}:{port}/v1/model"
        wait_until(lambda: httpx.get(model, headers=auth, timeout=5).status_code == 200, 150,
                   "the endpoint on the network address")  # fmt: skip
        assert httpx.get(model, timeout=5).status_code == 401  # the token is required there

        (pid,) = haproxy_pids(state)
        bound = listeners(pid)
        assert ("0.0.0.0", port) in bound, bound  # the endpoint: where it was configured
        others = {(host, p) for host, p in bound if p != port}
        assert {8404, 9101} <= {p for _, p in others}, bound  # Ray's stats and exporter are up
        assert not {h for h, _ in others} & WILDCARDS, f"a wildcard listener remains: {bound}"
        for _, other in sorted(others):
            assert refused(address, other), f"port {other} answers on {address}"
            socket.create_connection(("127.0.0.1", other), timeout=3).close()
        stats = httpx.get("http://127.0.0.1:9101/metrics", timeout=5)
        assert stats.status_code == 200 and "haproxy_" in stats.text  # the exporter, on loopback
        _only_serves_paths_to_the_app_off_loopback(state, address, port)
    finally:
        down(state)


def _only_serves_paths_to_the_app_off_loopback(state: str, address: str, port: int) -> None:
    """What else of the cluster listens off loopback, as Ray 2.60 runs it with HAProxy: GCS,
    raylets, dashboard and agents stay on 127.0.0.1; on every interface are only the endpoint,
    Serve's fallback proxy (port 8500, on the endpoint's host), each replica's direct-ingress
    HTTP port (which Ray binds on every interface so that HAProxy on another node reaches it) and
    its inter-deployment gRPC port (Ray's token interceptor). The HTTP ones reach the app, which
    asks for the token."""
    from ray.serve._private import constants as serve

    direct = range(serve.RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT,
                   serve.RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT)  # fmt: skip
    every = cluster_listeners(state)
    assert not [row for row in every if row[1] == address], every
    http = []
    for name, host, bound in every:
        if host not in WILDCARDS:
            assert host.removeprefix("::ffff:").startswith("127.") or host == "::1", (name, host)
        elif name.endswith("haproxy"):
            assert bound == port, (name, bound)
        elif name == "ray::ProxyActor":
            assert bound == serve.RAY_SERVE_FALLBACK_PROXY_HTTP_PORT, (name, bound)
            http.append(bound)
        else:
            assert name.startswith("ray::ServeReplica:"), f"{name} listens on {host}:{bound}"
            http += [bound] if bound in direct else []
    assert http, every  # the fallback proxy and the replica's HTTP port were found
    for bound in http:
        answer = httpx.get(f"http://{address}:{bound}/v1/model", timeout=5)
        assert answer.status_code == 401, (bound, answer.status_code)
