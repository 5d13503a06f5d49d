"""Commands run as a user runs them, each in its own process with its own Ray.

Marked ``own_ray``: ``make test`` runs them in a pytest run of their own, never beside the
session's shared Ray (with two Ray instances on one machine, Ray Train's placement-group cleaner
cannot tell which cluster to ask, never releases a finished run's CPUs, and the next trial's Ray
Data tasks wait forever).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray

from .conftest import ROOT, TINY, tiny_config

pytestmark = [pytest.mark.integration, pytest.mark.own_ray]


@pytest.fixture(autouse=True)
def _no_shared_ray():
    assert not ray.is_initialized(), "own_ray tests run in a pytest run without ray_session"


def _tune_command(data: str, tmp: Path) -> list[str]:
    # one trial at a time: the second is surely running when the first has finished (two at
    # once, with a full-epoch shuffle buffer, finish within a second of each other)
    search = [*TINY, "tune.num_samples=2", "tune.max_concurrent_trials=1"]
    sets = [arg for item in search for arg in ("--set", item)]
    return [
        sys.executable,
        "-m",
        "hmss_ray.tune",
        "--config",
        str(ROOT / "configs/demo.yaml"),
        "--space",
        str(ROOT / "tune_spaces/demo.yaml"),
        "--shards",
        data,
        "--storage",
        str(tmp / "tune"),
        "--name",
        "resume",
        "-o",
        str(tmp / "registry"),
        *sets,
    ]


def _finished_trials(search_dir: Path, epochs: int) -> list[Path]:
    results = search_dir.glob("*/result.json")
    return [p for p in results if len(p.read_text().splitlines()) >= epochs]


def test_interrupted_search_resumes_without_rerunning_finished_trials(local_shards, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    command = _tune_command(local_shards, tmp_path)
    epochs = sum(tiny_config().train.stage_epochs)
    search_dir = tmp_path / "tune" / "resume"
    first = subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not _finished_trials(search_dir, epochs):
        assert first.poll() is None, "the search ended before it could be interrupted"
        time.sleep(0.5)
    done = _finished_trials(search_dir, epochs)
    assert done, "no trial finished in time"
    os.killpg(first.pid, signal.SIGINT)  # what Ctrl-C does
    assert first.wait(timeout=120) != 0
    assert not (tmp_path / "registry" / "resume").exists(), "a partial search wrote a winner"
    lines_before = {p: p.read_text() for p in done}

    # the same name with another setting would mix two experiments: refused, state untouched
    other = [*command, "--set", "loss.lambda_l1=5"]
    refused = subprocess.run(other, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    error = refused.stderr.strip().splitlines()[-1]
    assert error.startswith("error: search resume at ") and "loss.lambda_l1: 20.0 -> 5.0" in error
    assert "Traceback" not in refused.stderr

    second = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resuming search resume" in second.stdout
    for path, text in lines_before.items():
        assert path.read_text() == text, f"{path.parent.name} was run again"
    trial_dirs = [p for p in search_dir.iterdir() if (p / "result.json").exists()]
    assert len(trial_dirs) == 2
    assert list((tmp_path / "registry" / "resume" / "versions").glob("*/winner.json"))
