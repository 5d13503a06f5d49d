"""`make demo`'s pipeline, end to end, on a smaller schedule (`--quick`) so it cannot rot."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import ray

from .conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.own_ray]


@pytest.fixture(autouse=True)
def _no_shared_ray():
    # its own Ray must be the only one on the machine (see test_cli_tune_resume.py)
    assert not ray.is_initialized(), "run this before any test that uses ray_session"


def test_demo_runs_end_to_end(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = tmp_path / "demo"
    # what an earlier run leaves: its served sCTs (a second make demo refused to replace them)
    earlier = out / "served_sct"
    earlier.mkdir(parents=True)
    for name in [f"1B{c}{i:03d}" for c in "ABC" for i in range(1, 10)] + ["gone"]:
        (earlier / f"{name}.nii.gz").write_bytes(b"an earlier run's sCT")
    done = subprocess.run(
        [sys.executable, "-m", "hmss_ray.demo", "--quick", "--cases", "9", "-o", str(out)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-5000:]
    for step in range(1, 7):
        assert f"[{step}/6]" in done.stdout
    assert "1BA010" in log  # the corrupt case is reported, not fatal
    assert (out / "registry" / "demo" / "aliases" / "production").exists()
    assert list((out / "registry" / "demo" / "versions").glob("*/winner.json"))
    served = sorted((out / "served_sct").glob("*.nii.gz"))
    assert served, "no sCT came back from the endpoint"
    rows = list(csv.DictReader((out / "report" / "per_patient.csv").open()))
    assert {r["case_id"] for r in rows} == {p.name.removesuffix(".nii.gz") for p in served}
    assert all(float(r["mae"]) > 0 for r in rows)
    assert (out / "report" / "report.md").exists()
    assert list((out / "report").glob("panel_*.png"))
    assert str(out / "report" / "report.md") in done.stdout
