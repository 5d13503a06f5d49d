"""Case ids, finding cases, per-case validation (one test per corruption) and the split."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from hmss_ray.config import DataConfig
from hmss_ray.data import phantom
from hmss_ray.data.split import split_cases
from hmss_ray.data.synthrad import (
    CaseError,
    CaseId,
    CaseRef,
    find_cases,
    inspect_case,
    load_case,
    validate_case,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1BA001", (1, "brain", "A", 1)),
        ("1PC123", (1, "pelvis", "C", 123)),
        ("2BB010", (2, "brain", "B", 10)),
    ],
)
def test_case_id_parses(text: str, expected: tuple) -> None:
    case_id = CaseId.parse(text)
    assert (case_id.task, case_id.region, case_id.centre, case_id.number) == expected
    assert str(case_id) == text


@pytest.mark.parametrize("text", ["BA001", "1XA001", "1BA01", "1ba001", "overview", ""])
def test_case_id_error_names_the_id(text: str) -> None:
    with pytest.raises(ValueError, match=f"case id {text!r} does not parse"):
        CaseId.parse(text)


def test_find_cases_accepts_parent_task_and_region_folders(phantom_root: Path) -> None:
    everything = [str(r.id) for r in find_cases(phantom_root)]
    assert everything == [str(r.id) for r in find_cases(phantom_root / "Task1")]
    assert len(everything) == 8  # 3 paired + 1 MR-only per region; overview/ is not a case
    brain = [str(r.id) for r in find_cases(phantom_root / "Task1" / "brain")]
    assert brain == ["1BA001", "1BA004", "1BB002", "1BC003"]
    pelvis_only = find_cases(phantom_root, regions=["pelvis"])
    assert {r.id.region for r in pelvis_only} == {"pelvis"}
    with pytest.raises(FileNotFoundError, match="not a directory"):
        find_cases(phantom_root / "nope")


def test_load_case_gives_volumes_on_one_grid(phantom_root: Path, small_shape) -> None:
    case = load_case(phantom_root / "Task1" / "pelvis" / "1PC002")
    assert str(case.id) == "1PC002"
    assert case.mr.shape == case.ct.shape == case.mask.shape
    assert case.mr.dtype == np.float32 and case.mask.dtype == np.uint8
    assert case.affine.shape == (4, 4)
    written = phantom.make_case("1PC002", seed=1, shape=small_shape)  # the fixture's case
    assert np.allclose(case.affine, written.affine) and np.array_equal(case.mask, written.mask)


def test_mr_only_case_is_valid_for_inference(phantom_root: Path) -> None:
    (ref,) = [r for r in find_cases(phantom_root) if str(r.id) == "1BA004"]
    assert not ref.paired
    case, problems = inspect_case(ref)
    assert problems == []
    assert case is not None and case.ct is None


def _write_corrupt(root: Path, kind: str) -> Path:
    case_id = CaseId(1, "brain", "A", 7)
    folder = root / str(case_id)
    phantom.write_case(folder, phantom.make_case(case_id, shape=(32, 32, 12)))
    phantom.corrupt_case(folder, kind)
    return folder


EXPECTED_REASONS = {
    "truncated_gzip": "ct.nii.gz: unreadable (",
    "not_gzip": "mr.nii.gz: unreadable",
    "missing_mr": "missing mr.nii.gz",
    "missing_mask": "missing mask.nii.gz",
    "not_3d": "mr.nii.gz: not 3D (shape",
    "shape_mismatch": "shape mismatch: mr",
    "affine_mismatch": "affine mismatch: ct differs from mr by up to 5 mm",
    "nan_voxels": "non-finite voxels (NaN or inf)",
    "empty_mask": "mask: empty",
    "ct_out_of_range": "ct: HU outside the plausible range [-2048, 4000]",
}


def test_every_corruption_kind_has_an_expected_reason() -> None:
    assert set(EXPECTED_REASONS) == set(phantom.CORRUPTIONS)


@pytest.mark.parametrize("kind", phantom.CORRUPTIONS)
def test_corruption_is_reported_with_case_id_and_reason(tmp_path: Path, kind: str) -> None:
    folder = _write_corrupt(tmp_path, kind)
    problems = validate_case(folder)
    assert len(problems) >= 1
    assert all(p.case_id == "1BA007" for p in problems)
    reason = EXPECTED_REASONS[kind]
    assert any(reason in p.reason for p in problems), [p.reason for p in problems]
    with pytest.raises(CaseError, match="1BA007: "):
        load_case(folder)
    if kind == "ct_out_of_range":  # the message gives the values found
        assert "max 12000)" in problems[0].reason


def test_validation_lists_every_problem_of_a_case(tmp_path: Path) -> None:
    folder = _write_corrupt(tmp_path, "empty_mask")
    phantom.corrupt_case(folder, "ct_out_of_range")
    reasons = [p.reason for p in validate_case(folder)]
    assert any("mask: empty" in r for r in reasons)
    assert any("HU outside" in r for r in reasons)


def test_hu_range_comes_from_config(tmp_path: Path) -> None:
    folder = _write_corrupt(tmp_path, "ct_out_of_range")
    assert validate_case(folder, DataConfig(max_ct_hu=20000.0)) == []


def test_missing_folder_files_are_all_listed(tmp_path: Path) -> None:
    folder = tmp_path / "1PA003"
    folder.mkdir()
    reasons = [p.reason for p in validate_case(CaseRef(CaseId.parse("1PA003"), folder))]
    assert reasons == ["missing mr.nii.gz", "missing mask.nii.gz"]
    shutil.rmtree(folder)


def _ids(region: str, centres: dict[str, int]) -> list[CaseId]:
    ids, number = [], 1
    for centre, count in centres.items():
        for _ in range(count):
            ids.append(CaseId(1, region, centre, number))
            number += 1
    return ids


SYNTHRAD_LIKE = _ids("brain", {"A": 60, "B": 60, "C": 60}) + _ids("pelvis", {"A": 120, "C": 60})


def test_split_is_by_patient_and_deterministic() -> None:
    split = split_cases(SYNTHRAD_LIKE)
    assert set(split) == {str(i) for i in SYNTHRAD_LIKE}  # every patient exactly once
    assert set(split.values()) == {"train", "val", "test"}
    assert split == split_cases(list(reversed(SYNTHRAD_LIKE)))
    other = split_cases(SYNTHRAD_LIKE, DataConfig(split_seed=1))
    assert other != split
    assert Counter(other.values()) == Counter(split.values())


def test_split_is_stratified_by_centre() -> None:
    cfg = DataConfig(split_fractions=(0.7, 0.15, 0.15))
    split = split_cases(SYNTHRAD_LIKE, cfg)
    per = Counter((CaseId.parse(k).region, CaseId.parse(k).centre, v) for k, v in split.items())
    sizes = Counter((i.region, i.centre) for i in SYNTHRAD_LIKE)
    for (region, centre), size in sizes.items():
        for name, frac in zip(("train", "val", "test"), cfg.split_fractions, strict=True):
            assert abs(per[region, centre, name] - size * frac) <= 1, (region, centre, name)


def test_small_regions_still_get_val_test_and_train_per_centre() -> None:
    split = split_cases(_ids("brain", {"A": 2, "B": 2, "C": 2}))
    assert sorted(Counter(split.values()).items()) == [("test", 1), ("train", 4), ("val", 1)]
    train_centres = {CaseId.parse(k).centre for k, v in split.items() if v == "train"}
    assert train_centres == {"A", "B", "C"}


def test_balance_centres_keeps_equal_training_patients_per_centre() -> None:
    split = split_cases(SYNTHRAD_LIKE, DataConfig(balance_centres=True))
    train = Counter(CaseId.parse(k).centre for k, v in split.items() if v == "train" and "P" in k)
    assert train["A"] == train["C"] == 42  # pelvis: 60 at C -> 42 train; A trimmed to match
    assert Counter(split.values())["unused"] == 120 - 18 - 18 - 42
