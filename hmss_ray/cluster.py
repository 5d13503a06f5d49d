"""Where Ray runs: the cluster at ``RAY_ADDRESS`` when set, else a local Ray started here."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import ray

from hmss_ray import haproxy

MIN_LOCAL_CPUS = 4
# Ray Serve's HAProxy ingress (Ray >= 2.56): HTTP goes from HAProxy (C) to an HTTP server in the
# replica, instead of through the Python proxy actor, which pulls the body and pushes the answer
# back with actor calls. On the demo volume that path cost 35-45 ms a call, HAProxy's 8-12 ms;
# on a 240x240x180 brain 175 ms against 80 (README, bench.serve_latency). Read by Serve's
# controller, proxies and replicas when they start: set before a local Ray starts, and in a
# cluster's node environment. RAY_SERVE_ENABLE_HA_PROXY=0 in the environment keeps the proxy actor.
SERVE_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1"}


def local_cpus() -> int:
    """Logical CPUs for a local Ray: ``HMSS_RAY_NUM_CPUS``, else the cores but at least 4.

    On a small machine Ray Data's tasks need a whole logical CPU each while Train workers and Tune
    drivers hold fractions; a placement group released a little late (Ray Train's cleaner polls)
    can then leave 0.99 CPU free and the next trial's data pipeline waits forever. A few spare
    logical CPUs cost nothing: the work is the same, the scheduler just never deadlocks.
    """
    configured = os.environ.get("HMSS_RAY_NUM_CPUS")
    if configured:
        return int(configured)
    return max(MIN_LOCAL_CPUS, os.cpu_count() or 1)


def haproxy_wrapper(folder: Path | None = None) -> str | None:
    """Install the HAProxy guard (:mod:`hmss_ray.haproxy`) in a new private folder; its path, or
    None when no HAProxy binary is installed. ``folder`` must not exist yet."""
    return haproxy.install(folder)


def serve_env() -> None:
    """Put :data:`SERVE_ENV` in this process's environment (a value already there wins), for the
    local Ray started next: its workers inherit it. HAProxy starts through
    :func:`haproxy_wrapper` (stats and metrics off public interfaces, admin socket 0600, bounded
    client timeouts), unless ``RAY_SERVE_HAPROXY_BINARY_PATH`` names a binary already: the
    cluster image sets it to the guard installed at build time (infra/docker/Dockerfile)."""
    for key, value in SERVE_ENV.items():
        os.environ.setdefault(key, value)
    if (
        os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
        and "RAY_SERVE_HAPROXY_BINARY_PATH" not in os.environ
    ):
        wrapper = haproxy_wrapper()
        if wrapper:
            os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"] = wrapper


def init_ray(num_cpus: int | None = None) -> None:
    """Attach to ``RAY_ADDRESS`` (a cluster, or inside ``ray job submit``), else start Ray here.

    ``address="local"`` never attaches to a stale cluster left in Ray's temp folder. The dashboard
    (bound to 127.0.0.1) serves the state API that Ray Train's placement-group cleaner polls. A
    local Ray gets :data:`SERVE_ENV` (Serve's HAProxy ingress).
    """
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
    else:
        serve_env()
        ray.init(address="local", num_cpus=num_cpus or local_cpus(), dashboard_host="127.0.0.1")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process may still take it: retry on use)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
