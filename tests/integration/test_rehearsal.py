"""``make cluster-up`` / ``cluster-down`` as a user runs them, in under a minute: the rehearsal
starts with 0 worker nodes, a job asking for the cloud's accelerator (``accel`` here) brings one
up, it leaves when idle, and ``down`` stops exactly what ``up`` started.

The full search as a job (lost node, MLflow, S3) is test_cluster_job.py, marked ``slow``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile

import pytest
import ray

from infra.rehearsal.cluster import ROOT, Rehearsal, marked_pids, wait_until
from infra.rehearsal.jobs import NodeSampler, submit

pytestmark = [pytest.mark.integration, pytest.mark.own_ray]

# the task prints the type of the node it ran on, as the fake provider named it
JOB = (
    "import os, ray; ray.init(); "
    "f = ray.remote(num_cpus=1, resources={'accel': 1})(lambda: os.environ['RAY_NODE_TYPE_NAME']); "
    "print('ran on', ray.get(f.remote()))"
)


@pytest.fixture(autouse=True)
def _no_shared_ray():
    assert not ray.is_initialized(), "own_ray tests run in a pytest run without ray_session"


def _cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "infra.rehearsal", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_rehearsal_scales_a_gpu_type_from_zero_and_back_and_down_stops_it():
    state = tempfile.mkdtemp(prefix="hmss-rh-", dir="/tmp")  # short: socket paths < 107 chars
    try:
        assert "ray.head.default: 1 alive" in _cli("up", "--state", state,
                                                   "--idle-timeout-minutes", "0.1")  # fmt: skip
        rehearsal = Rehearsal.load(state)
        assert rehearsal is not None and not rehearsal.workers()
        with NodeSampler(rehearsal) as nodes:
            job = submit(rehearsal, ["python", "-c", JOB], {}, timeout=180)
            assert job.succeeded, job.output[-3000:]
            assert "ran on gpu.1x" in job.output  # the smallest type that has the resource
            wait_until(lambda: not rehearsal.workers(), 90, "0 worker nodes")
        assert nodes.peak == 1
        assert "gpu.1x: 0 alive, 1 removed" in _cli("status", "--state", state)
        assert marked_pids(state), "the rehearsal's processes carry its marker"
    finally:
        _cli("down", "--state", state)
    assert not marked_pids(state), "down left processes of the rehearsal behind"
