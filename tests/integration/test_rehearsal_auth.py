"""The rehearsal cluster runs with Ray token authentication, as every cluster the project builds.

Whoever reaches the ports of a cluster without its token can neither submit a job (dashboard /
job API) nor attach a driver (GCS); with the token, ``ray job submit`` works as the docs say.
One rehearsal head, no worker nodes: ~40 s on 2 cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import ray

from infra.rehearsal.cluster import LOOPBACK_ONLY, ROOT, down, up
from infra.rehearsal.jobs import submit

pytestmark = [pytest.mark.integration, pytest.mark.own_ray]


@pytest.fixture(autouse=True)
def _no_shared_ray():
    assert not ray.is_initialized(), "own_ray tests run in a pytest run without ray_session"


def _outsider_env(home: Path) -> dict[str, str]:
    """A user on the network: Ray's CLI, no token (and no ~/.ray/auth_token of this machine's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HMSS_"))}
    env["HOME"] = str(home)
    env[LOOPBACK_ONLY] = "0"  # the rehearsal's nodes are on 127.0.0.1: reach them there
    return env


def test_rehearsal_refuses_jobs_and_drivers_without_the_token(tmp_path):
    state = tempfile.mkdtemp(prefix="hmss-ra-", dir="/tmp")  # short: socket paths < 107 chars
    try:
        rehearsal = up(state)
        # its nodes run as the cluster image's: token auth, Serve's HAProxy through the guard
        head_env = dict(
            v.split(b"=", 1) for v in Path(f"/proc/{rehearsal.head_pid}/environ").read_bytes()
            .split(b"\0") if b"=" in v
        )  # fmt: skip
        assert head_env[b"RAY_AUTH_MODE"] == b"token"
        guard = head_env[b"RAY_SERVE_HAPROXY_BINARY_PATH"].decode()
        assert "hmss_ray.haproxy" in Path(guard).read_text()
        ray_cli = str(Path(sys.executable).parent / "ray")
        refused = subprocess.run(
            [ray_cli, "job", "submit", "--address", rehearsal.address, "--no-wait",
             "--", "python", "-c", "print('should never run')"],
            cwd=ROOT, env=_outsider_env(tmp_path), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        said = refused.stdout + refused.stderr
        assert refused.returncode != 0, said
        assert "401" in said or "Unauthorized" in said, said[-2000:]
        # the GCS (what `ray.init(address=...)` attaches to) refuses a driver without the token
        attach = subprocess.run(
            [sys.executable, "-c",
             f"import ray; ray.init(address='{rehearsal.gcs_address}'); print('attached')"],
            cwd=ROOT, env=_outsider_env(tmp_path), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert attach.returncode != 0 and "attached" not in attach.stdout, attach.stdout
        # with the cluster's token (RAY_AUTH_MODE=token + RAY_AUTH_TOKEN_PATH), the same job runs
        job = submit(rehearsal, ["python", "-c", "print('ran with the token')"], {}, timeout=180)
        assert job.succeeded and "ran with the token" in job.output, job.output[-3000:]
    finally:
        down(state)
