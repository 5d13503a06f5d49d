"""``python -m hmss_ray.demo --edition 2025``, end to end, quick schedule (slow: its own Ray,
about 2.5 minutes each): on SynthRAD2025-layout data given with ``--data``, and on the 2025
phantoms the demo writes itself.

    flock /tmp/hmss-ray.lock python -m pytest -m slow tests/integration/test_demo_2025.py
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from tests.layout2025 import write_layout

from .conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.own_ray, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _no_shared_ray():
    assert not ray.is_initialized(), "run this before any test that uses ray_session"


def _demo(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    argv = [
        sys.executable,
        "-m",
        "hmss_ray.demo",
        "--edition",
        "2025",
        "--quick",
        "-o",
        str(out),
    ]
    return subprocess.run(
        [*argv, *extra], env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200
    )


def _check(done: subprocess.CompletedProcess, out: Path) -> None:
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-5000:]
    for step in range(1, 7):
        assert f"[{step}/6]" in done.stdout
    served = sorted((out / "served_sct").glob("*.nii.gz"))
    assert served, "no sCT came back from the endpoint"
    rows = list(csv.DictReader((out / "report" / "per_patient.csv").open()))
    assert {r["case_id"] for r in rows} == {p.name.removesuffix(".nii.gz") for p in served}
    assert {r["case_id"][1:3] for r in rows} == {"HN", "TH", "AB"}
    for row in rows:
        assert 0 <= float(row["ms_ssim"]) <= 1 and 0 <= float(row["dice"]) <= 1
        assert float(row["hd95"]) >= 0 and float(row["mae"]) > 0
    md = (out / "report" / "report.md").read_text()
    assert "| MS-SSIM | Dice | HD95 (mm) |" in md and "SynthRAD2025 (from the layout)" in md


def test_demo_2025_on_given_data(tmp_path):
    write_layout(tmp_path / "data", per_region=4, shape=(64, 56, 16))
    broken = tmp_path / "data" / "Task1" / "AB" / "1ABE005"
    broken.mkdir()
    (broken / "mr.mha").write_bytes(b"not a MetaImage\n")
    done = _demo(tmp_path / "demo", "--data", str(tmp_path / "data"))
    _check(done, tmp_path / "demo")
    assert "1ABE005  mr.mha: unreadable" in done.stdout  # reported by prepare, not fatal


def test_demo_2025_on_phantoms(tmp_path):
    _check(_demo(tmp_path / "demo"), tmp_path / "demo")
