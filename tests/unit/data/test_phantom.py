"""Phantoms: tissues at their HU and MR order, physical scale, determinism, the 2023 layout.

Whole patients are rendered at 2-4 mm (a second each); thin structures (bone cortex, teeth) at
1 mm in a small field of view around their landmark. Tissue statistics use "pure" voxels: those
whose 3x3x3 neighbourhood is all the same tissue (no partial volume).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from hmss_ray.data.phantom import (
    CORRUPTIONS,
    REGIONS,
    T,
    anatomy_of,
    box_around,
    make_case,
    write_dataset,
)
from hmss_ray.data.synthrad import CaseId, find_cases, validate_case

# (id, spacing mm): every region, every MR sequence (brain A T1, B T1c; pelvis T1 and T2, ...)
RENDERED = {
    "1BA001": (2, 2, 3),
    "1BB002": (2, 2, 3),
    "1PA001": (3, 3, 4),
    "1PC002": (3, 3, 4),
    "1HNC003": (2, 2, 3),
    "1THA001": (3, 3, 4),
    "1ABB002": (3, 3, 4),
}
# tissue -> (low, high) of the median HU of its pure voxels (clinical ranges, unenhanced CT)
HU_RANGES = {
    T.AIR: (-1010, -990),
    T.FAT: (-120, -80),
    T.MUSCLE: (40, 60),
    T.CSF: (0, 15),
    T.GREY: (35, 46),
    T.WHITE: (20, 34),
    T.GAS: (-1000, -950),
    T.EYE: (0, 20),
    T.BLADDER: (0, 20),
    T.LUNG: (-900, -800),
    T.LIVER: (50, 70),
    T.KIDNEY: (25, 45),
    T.SPLEEN: (40, 55),
    T.BLOOD: (30, 55),
    T.MARROW: (150, 450),
    T.CORD: (25, 40),
}


class Rendered:
    """A rendered case and, per tissue present, its pure voxels."""

    def __init__(self, case) -> None:
        self.case, labels = case, case.labels
        pure = ndimage.minimum_filter(labels, 3) == ndimage.maximum_filter(labels, 3)
        self.pure = {T(v): pure & (labels == v) for v in np.unique(labels)}

    def medians(self, volume: np.ndarray, least: int = 20) -> dict[T, float]:
        """Median of ``volume`` over the pure voxels of each tissue with at least ``least``."""
        return {t: float(np.median(volume[m])) for t, m in self.pure.items() if m.sum() >= least}


@pytest.fixture(scope="module")
def cases() -> dict[str, Rendered]:
    return {cid: Rendered(make_case(cid, spacing=spacing)) for cid, spacing in RENDERED.items()}


def test_every_tissue_has_its_hounsfield_range(cases: dict) -> None:
    seen = set()
    for cid, rendered in cases.items():
        assert rendered.case.ct.dtype == np.int16
        medians = rendered.medians(rendered.case.ct)
        for tissue, median in medians.items():
            if tissue in HU_RANGES:
                low, high = HU_RANGES[tissue]
                assert low <= median <= high, (cid, tissue.name, median)
                seen.add(tissue)
        if T.GREY in medians:
            assert medians[T.GREY] > medians[T.WHITE] + 5, cid  # grey-white contrast on CT
    assert seen == set(HU_RANGES)  # every tissue of the table shows up in some region


@pytest.mark.parametrize(
    ("cid", "landmark", "tissue", "low"),
    [("1BA001", "teeth", T.TEETH, 1500), ("1PA001", "femoral_head", T.CORTEX, 1000),
     ("1BB002", "skull_vertex", T.CORTEX, 900)],
)  # fmt: skip
def test_dense_bone_and_teeth_at_one_millimetre(cid, landmark, tissue, low) -> None:
    # the skull's tables are 1-2 mm thick: every cortex voxel there shares some partial volume
    centre = anatomy_of(cid).landmarks[landmark]
    if landmark == "femoral_head":  # the femoral shaft's thick cortex, below the head
        centre = (centre[0] + 40, centre[1], -80.0)
    case = make_case(cid, spacing=(1, 1, 1), fov=box_around(centre, (60, 60, 20)))
    voxels = case.labels == tissue
    ct = case.ct[voxels if landmark == "skull_vertex" else ndimage.binary_erosion(voxels)]
    assert ct.size > 20
    assert np.median(ct) > low and ct.max() <= 3071


@pytest.mark.parametrize("cid", list(RENDERED))
def test_mr_intensity_order_follows_the_sequence(cases: dict, cid: str) -> None:
    case = cases[cid].case
    mr = cases[cid].medians(case.mr)
    soft = mr[T.MUSCLE]
    for dark in (T.AIR, T.GAS, T.LUNG, T.CORTEX, T.TEETH):  # dark on every sequence
        if dark in mr:
            assert mr[dark] < 0.35 * soft, (dark.name, mr[dark], soft)
    if case.sequence in ("t1", "t1c"):
        chain = [T.FAT, T.WHITE, T.GREY, T.CSF]  # fat bright, white > grey > CSF
        present = [mr[t] for t in chain if t in mr]
        assert present == sorted(present, reverse=True), {t.name: mr.get(t) for t in chain}
        assert mr[T.FAT] > 1.8 * soft
        if T.MARROW in mr:
            assert mr[T.MARROW] > 1.5 * soft  # fatty marrow brighter than muscle and cortex
    else:  # T2: fluid brightest, grey above white
        fluids = [mr[t] for t in (T.CSF, T.BLADDER, T.EYE, T.FLUID) if t in mr]
        assert fluids and min(fluids) > 0.8 * max(mr.values())
        assert mr.get(T.GREY, 1) > mr.get(T.WHITE, 0)
    brightest = np.percentile(case.mr[case.mask > 0], 95)
    assert np.median(case.mr[case.mask == 0]) < 0.06 * brightest  # background: Rician floor


def test_mr_has_a_smooth_bias_field_that_keeps_the_local_contrast(cases: dict) -> None:
    rendered = cases["1BA001"]
    mr, white, grey = rendered.case.mr, rendered.pure[T.WHITE], rendered.pure[T.GREY]
    middle = mr.shape[0] // 2
    halves = []
    for side in (slice(None, middle), slice(middle, None)):  # the two hemispheres
        halves.append(np.median(mr[side][white[side]]))
        assert np.median(mr[side][white[side]]) > 1.2 * np.median(mr[side][grey[side]])
    assert max(halves) / min(halves) > 1.02  # the same tissue, brighter on one side


def test_heads_and_bodies_have_real_sizes(cases: dict) -> None:
    def width_mm(case) -> float:  # widest left-right extent of the body on an axial slice
        columns = np.any(case.mask > 0, axis=1)  # (x, z)
        return float(columns.sum(axis=0).max() * case.spacing[0])

    for cid in ("1BA001", "1BB002", "1HNC003"):
        assert 140 <= width_mm(cases[cid].case) <= 200, cid
    for cid in ("1PA001", "1PC002"):
        assert 350 <= width_mm(cases[cid].case) <= 500, cid
    brain = REGIONS["brain"].fov
    assert min(hi - lo for lo, hi in brain[:2]) > 200  # a 200+ mm field of view
    assert REGIONS["brain"].spacing == (1.0, 1.0, 1.0)
    assert REGIONS["pelvis"].spacing == (1.0, 1.0, 2.5)


@pytest.mark.parametrize(
    ("cid", "landmark", "tissue"),
    [("1BA001", "eye", T.EYE), ("1BA001", "ventricle", T.CSF),
     ("1BC003", "maxillary_sinus", T.GAS), ("1HNA001", "airway", T.GAS),
     ("1PC002", "bladder", T.BLADDER), ("1PA001", "femoral_head", T.MARROW),
     ("1THA001", "lung", T.LUNG), ("1ABB002", "liver", T.LIVER)],
)  # fmt: skip
def test_the_same_patient_at_any_voxel_size(cid, landmark, tissue) -> None:
    centre = anatomy_of(cid, seed=2).landmarks[landmark]
    for spacing in ((1, 1, 1), (3, 3, 3)):
        box = box_around(centre, [3 * s for s in spacing])
        case = make_case(cid, seed=2, spacing=spacing, fov=box)
        assert case.labels.shape == (3, 3, 3)
        assert case.labels[1, 1, 1] == tissue, (spacing, T(case.labels[1, 1, 1]).name)


def test_same_seed_same_volumes_other_seed_other_patient() -> None:
    case_id = CaseId.parse("1BB002")
    a, b = make_case(case_id, seed=3, shape=(32, 32, 12)), make_case("1BB002", 3, (32, 32, 12))
    c = make_case(case_id, seed=4, shape=(32, 32, 12))
    for name in ("ct", "mr", "mask", "labels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.labels, c.labels)
    assert anatomy_of("1BB002", 3).landmarks == anatomy_of("1BB002", 3).landmarks


def test_adding_cases_leaves_existing_files_byte_identical(tmp_path: Path) -> None:
    write_dataset(tmp_path / "a", cases=1, regions=["pelvis"], shape=(24, 24, 6))
    write_dataset(tmp_path / "b", cases=2, regions=["pelvis"], shape=(24, 24, 6))
    for name in ("mr", "ct", "mask", "labels"):
        rel = f"Task1/pelvis/1PA001/{name}.nii.gz"
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_centres_differ_in_mr_contrast() -> None:
    levels = {}
    for text in ("1BA001", "1BB002", "1BC003"):
        case = make_case(text, shape=(32, 32, 12))
        levels[text] = float(np.median(case.mr[case.mask > 0]))
    assert len({round(v, -1) for v in levels.values()}) == 3, levels


def test_dataset_layout_matches_synthrad2023(tmp_path: Path) -> None:
    summary = write_dataset(tmp_path, cases=4, corrupt=2, mr_only=1, shape=(24, 24, 6))
    refs = find_cases(tmp_path)
    assert not any(r.id.region == "pelvis" and r.id.centre == "B" for r in refs)
    assert {r.id.centre for r in refs if r.id.region == "brain"} == {"A", "B", "C"}
    overview = tmp_path / "Task1" / "brain" / "overview"
    assert "white" in (overview / "tissues.csv").read_text()
    assert summary.corrupt == {"1BC006": CORRUPTIONS[0], "1PC006": CORRUPTIONS[1]}
    assert summary.mr_only == ["1BB005", "1PA005"]
    folder = tmp_path / "Task1" / "brain" / "1BA001"
    assert sorted(p.name for p in folder.iterdir()) == [
        "ct.nii.gz", "labels.nii.gz", "mask.nii.gz", "mr.nii.gz"
    ]  # fmt: skip
    labels = nib.load(folder / "labels.nii.gz")
    assert labels.get_data_dtype() == np.uint8
    assert np.array_equal(labels.affine, nib.load(folder / "ct.nii.gz").affine)
    good = [r for r in refs if str(r.id) not in summary.corrupt]
    assert all(validate_case(r) == [] for r in good)  # labels beside them are ignored
    assert all(validate_case(r) for r in refs if str(r.id) in summary.corrupt)


def test_cli_writes_a_dataset_and_prints_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "phantom"
    cmd = [sys.executable, "-m", "hmss_ray.phantom", "-o", str(out), "--cases", "2"]
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
    spacing = nib.load(out / "Task1/brain/1BA001/ct.nii.gz").header.get_zooms()
    assert spacing[0] == spacing[1] == pytest.approx(256 / 24)  # the whole head in 24 voxels
