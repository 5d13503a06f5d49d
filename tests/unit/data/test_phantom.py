"""Phantoms: deterministic, realistic HU, MR where bone and air are both dark, SynthRAD layout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from hmss_ray.data.phantom import CORRUPTIONS, make_case, write_dataset
from hmss_ray.data.synthrad import CaseId, find_cases, validate_case


def test_same_seed_same_volumes_other_seed_other_volumes() -> None:
    case_id = CaseId.parse("1BB002")
    a, b, c = make_case(case_id, seed=3), make_case(case_id, seed=3), make_case(case_id, seed=4)
    for name in ("ct", "mr", "mask"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.mr, c.mr)


def test_adding_cases_leaves_existing_files_byte_identical(tmp_path: Path) -> None:
    write_dataset(tmp_path / "a", cases=1, regions=["pelvis"], shape=(24, 24, 6))
    write_dataset(tmp_path / "b", cases=2, regions=["pelvis"], shape=(24, 24, 6))
    for name in ("mr", "ct", "mask"):
        rel = f"Task1/pelvis/1PA001/{name}.nii.gz"
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


@pytest.mark.parametrize("text", ["1BA001", "1PC002"])
def test_ct_has_realistic_hounsfield_units(text: str) -> None:
    case = make_case(CaseId.parse(text))
    ct, body = case.ct, case.mask > 0
    assert ct.dtype == np.int16
    assert abs(np.median(ct[~body]) + 1000) < 20  # air
    inside = ct[body]
    assert np.mean((inside > -130) & (inside < -70)) > 0.005  # fat
    assert np.mean((inside >= 20) & (inside <= 60)) > 0.2  # soft tissue / brain
    assert np.mean(inside > 300) > 0.01 and inside.max() <= 1900  # bone
    if case.id.region == "brain":  # sinuses: air inside the body
        inner = ndimage.binary_erosion(body, np.ones((3, 3, 1)), iterations=2)
        assert np.sum(inner & (ct < -800)) > 20


@pytest.mark.parametrize("text", ["1BA001", "1BC003", "1PA001"])
def test_bone_and_air_are_both_dark_on_mr(text: str) -> None:
    case = make_case(CaseId.parse(text), shape=(96, 96, 24))
    body = ndimage.binary_erosion(case.mask > 0, np.ones((3, 3, 1)), iterations=2)
    ct, mr = case.ct, case.mr
    soft = np.median(mr[body & (ct > 20) & (ct < 60)])
    assert np.median(mr[body & (ct > 700)]) < 0.35 * soft  # cortical bone
    assert np.median(mr[case.mask == 0]) < 0.1 * soft  # air outside
    gas = body & (ct < -800)
    if gas.sum() > 5:
        assert np.median(mr[gas]) < 0.35 * soft


def test_centres_differ_in_mr_contrast() -> None:
    levels = {}
    for text in ("1BA001", "1BB002", "1BC003"):
        case = make_case(CaseId.parse(text))
        levels[text] = float(np.median(case.mr[case.mask > 0]))
    assert len({round(v, -1) for v in levels.values()}) == 3, levels


def test_dataset_layout_matches_synthrad(tmp_path: Path) -> None:
    summary = write_dataset(tmp_path, cases=4, corrupt=2, mr_only=1, shape=(24, 24, 6))
    refs = find_cases(tmp_path)
    assert not any(r.id.region == "pelvis" and r.id.centre == "B" for r in refs)
    assert {r.id.centre for r in refs if r.id.region == "brain"} == {"A", "B", "C"}
    assert (tmp_path / "Task1" / "brain" / "overview").is_dir()
    assert summary.corrupt == {"1BC006": CORRUPTIONS[0], "1PC006": CORRUPTIONS[1]}
    assert summary.mr_only == ["1BB005", "1PA005"]
    zooms = {
        region: nib.load(tmp_path / "Task1" / region / case / "ct.nii.gz").header.get_zooms()
        for region, case in (("brain", "1BA001"), ("pelvis", "1PA001"))
    }
    assert zooms == {"brain": (1.0, 1.0, 1.0), "pelvis": (1.0, 1.0, 2.5)}
    good = [r for r in refs if str(r.id) not in summary.corrupt]
    assert all(validate_case(r) == [] for r in good)
    assert all(validate_case(r) for r in refs if str(r.id) in summary.corrupt)


def test_cli_writes_a_dataset_and_prints_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "phantom"
    cmd = [sys.executable, "-m", "hmss_ray.phantom", "--out", str(out), "--cases", "2"]
    cmd += ["--regions", "brain", "--corrupt", "1", "--shape", "24", "24", "6", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "brain   A           1       0       0" in done.stdout
    assert "corrupt 1BC003: truncated_gzip" in done.stdout
    assert sorted(p.name for p in (out / "Task1" / "brain").iterdir()) == [
        "1BA001",
        "1BB002",
        "1BC003",
        "overview",
    ]
