"""The used-by command, as the README writes it: `ray start --head`, then `ray job submit`."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import ray

from hmss_ray.cluster import free_port

from .conftest import ROOT, TINY

pytestmark = [pytest.mark.integration, pytest.mark.own_ray]


@pytest.fixture(autouse=True)
def _no_shared_ray():
    # its own Ray must be the only one on the machine (see test_cli_tune_resume.py)
    assert not ray.is_initialized(), "run this before any test that uses ray_session"


def _ray(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    ray_cli = str(Path(sys.executable).parent / "ray")
    return subprocess.run(
        [ray_cli, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def _wait_for_dashboard(port: int, head: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert head.poll() is None, "ray start --head exited"
        try:
            # any answer will do: the job server answers 401 until it is given the token
            httpx.get(f"http://127.0.0.1:{port}/api/version", timeout=2)
            return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError("the Ray dashboard (job server) never came up")


def test_ray_job_submit_runs_the_search_and_fills_the_registry(local_shards, tmp_path):
    # the job's `python` is the one on the cluster's PATH: put the venv first, as the README says
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        HOME=str(tmp_path / "home"),
        RAY_AUTH_MODE="token",  # Ray 2.59+: the CLI and the head share a token
        RAY_AUTH_TOKEN=secrets.token_hex(32),
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    )
    (tmp_path / "home").mkdir()
    gcs, dashboard = free_port(), free_port()
    # --block keeps the head in this process group, so the test stops exactly this cluster
    # (`ray stop` would also stop the test session's own Ray); a short temp dir keeps Ray's
    # socket paths under the 107-character limit
    head = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={gcs}",
            "--num-cpus=2",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--temp-dir={tempfile.mkdtemp(prefix='hmss-ray-', dir='/tmp')}",
        ],
        env=env,
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_dashboard(dashboard, head)
        sets = [arg for item in [*TINY, "tune.num_samples=1"] for arg in ("--set", item)]
        job = _ray(
            env,
            "job",
            "submit",
            f"--address=http://127.0.0.1:{dashboard}",
            "--working-dir",
            ".",
            "--",
            "python",
            "-m",
            "hmss_ray.tune",
            "--config",
            "configs/demo.yaml",
            "--space",
            "tune_spaces/demo.yaml",
            "--data",
            local_shards,
            "--storage",
            str(tmp_path / "tune"),
            "--registry",
            str(tmp_path / "registry"),
            "--name",
            "job",
            *sets,
            timeout=420,
        )
        assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-4000:]
        assert "succeeded" in (job.stdout + job.stderr).lower()
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
    entry = tmp_path / "registry" / "job"
    assert (entry / "generator.safetensors").exists() and (entry / "winner.json").exists()
