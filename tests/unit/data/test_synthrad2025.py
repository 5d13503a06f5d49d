"""The SynthRAD2025 task-1 layout: ids, finding cases, reading MetaImage, one test per corruption
kind in ``.mha``, the region choice in the config, and ``prepare`` on it.

Data: real ``.mha`` files written by ``hmss_ray.io`` in ``Task1/{HN,TH,AB}/<id>/`` (see
``tests/layout2025.py``), damaged here for the reader tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hmss_ray.config import ConfigError, Edition, ExperimentConfig, load_config
from hmss_ray.data import phantom
from hmss_ray.data.prepare import PrepareError, prepare_dataset
from hmss_ray.data.synthrad import (
    CaseError,
    CaseId,
    editions,
    find_cases,
    inspect_case,
    load_case,
    validate_case,
)
from hmss_ray.io import Volume, read_volume, write_volume
from tests.layout2025 import render, write_case, write_layout

ROOT = Path(__file__).parents[3]
SHAPE = (32, 32, 10)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 paired + 1 MR-only case per region, and a 2023 brain case beside them."""
    out = tmp_path_factory.mktemp("synthrad2025")
    write_layout(out, per_region=2, mr_only=1, shape=SHAPE)
    brain = CaseId(1, "brain", "A", 1)
    phantom.write_case(out / "Task1" / "brain" / str(brain), phantom.make_case(brain, shape=SHAPE))
    return out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1HNA001", (1, "HN", "A", 1)),
        ("1THE123", (1, "TH", "E", 123)),
        ("2ABC010", (2, "AB", "C", 10)),
        ("1BA001", (1, "brain", "A", 1)),
    ],
)
def test_case_ids_of_both_releases_parse(text: str, expected: tuple) -> None:
    case_id = CaseId.parse(text)
    assert (case_id.task, case_id.region, case_id.centre, case_id.number) == expected
    assert str(case_id) == text
    assert case_id.edition is (Edition.SYNTHRAD2023 if len(text) == 6 else Edition.SYNTHRAD2025)


@pytest.mark.parametrize("text", ["1HNF001", "1HN001", "1XYA001", "1hnA001", "overviews"])
def test_bad_2025_ids_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=f"case id {text!r} does not parse"):
        CaseId.parse(text)
    if text == "1HNF001":
        with pytest.raises(ValueError, match="SynthRAD2025 centres are A, B, C, D, E, not F"):
            CaseId.parse(text)


def test_find_cases_reads_the_2025_layout_and_skips_overviews(root: Path) -> None:
    refs = find_cases(root)
    ids = [str(r.id) for r in refs]
    assert len(ids) == len(set(ids)) == 10  # 3 per region + the 2023 brain case
    assert ids[:3] == ["1ABA001", "1ABB002", "1ABC003"] and ids[-1] == "1BA001"  # sorted by id
    assert {"1HNA001", "1HNB002", "1HNC003", "1THC003", "1ABA001"} <= set(ids)
    assert editions(refs) == [Edition.SYNTHRAD2023, Edition.SYNTHRAD2025]
    thorax = find_cases(root / "Task1" / "TH")  # a region folder alone
    assert [str(r.id) for r in thorax] == ["1THA001", "1THB002", "1THC003"]
    chosen = find_cases(root, regions=["HN", "AB"])
    assert {r.id.region for r in chosen} == {"HN", "AB"}
    assert editions(chosen) == [Edition.SYNTHRAD2025]
    mr_only = [r for r in refs if not r.paired]
    assert [str(r.id) for r in mr_only] == ["1ABC003", "1HNC003", "1THC003"]


def test_load_case_reads_metaimage_on_one_grid(root: Path) -> None:
    folder = root / "Task1" / "HN" / "1HNB002"
    case = load_case(folder)
    ct = read_volume(folder / "ct.mha")
    assert case.mr.shape == case.ct.shape == case.mask.shape == ct.shape
    assert case.mr.dtype == np.float32 and case.mask.dtype == np.uint8
    assert np.array_equal(case.ct, ct.array.astype(np.float32))
    written = render(CaseId.parse("1HNB002"), SHAPE)
    assert np.allclose(case.affine, written.affine)  # the LPS header read back as RAS
    assert np.array_equal(case.mask, written.mask)


def test_mr_only_metaimage_case_is_valid_for_inference(root: Path) -> None:
    (ref,) = [r for r in find_cases(root) if str(r.id) == "1THC003"]
    case, problems = inspect_case(ref)
    assert problems == [] and case is not None and case.ct is None


def _resave(path: Path, change, shift_mm: float = 0.0) -> None:
    volume = read_volume(path)
    affine = volume.affine.copy()
    affine[:3, 3] += shift_mm
    write_volume(Volume(change(np.asarray(volume.array)), affine), path)


def _with_nans(array: np.ndarray) -> np.ndarray:
    out = array.astype(np.float32)
    out[:4, :4, :2] = np.nan
    return out


def _too_bright(array: np.ndarray) -> np.ndarray:
    out = array.copy()
    out[out.shape[0] // 2, out.shape[1] // 2, :] = 12000
    return out


def _four_d(path: Path) -> None:
    array = np.asarray(read_volume(path).array).transpose(2, 1, 0)  # (z, y, x)
    image = sitk.GetImageFromArray(np.stack([array, array]), isVector=False)  # 4D, 2 frames
    sitk.WriteImage(image, str(path), useCompression=True)


def damage(folder: Path, kind: str) -> None:
    """Damage a written ``.mha`` case the ways real downloads and conversions go wrong."""
    mr, ct, mask = (folder / f"{name}.mha" for name in ("mr", "ct", "mask"))
    if kind == "truncated":
        data = ct.read_bytes()
        ct.write_bytes(data[: len(data) * 6 // 10])
    elif kind == "not_an_image":
        mr.write_bytes(b"this is not a MetaImage file\n" * 32)
    elif kind in ("missing_mr", "missing_mask"):
        (mr if kind == "missing_mr" else mask).unlink()
    elif kind == "not_3d":
        _four_d(mr)
    elif kind == "shape_mismatch":
        _resave(mask, lambda a: a[:, :, :-1])
    elif kind == "affine_mismatch":
        _resave(ct, lambda a: a, shift_mm=5.0)
    elif kind == "nan_voxels":
        _resave(mr, _with_nans)
    elif kind == "empty_mask":
        _resave(mask, np.zeros_like)
    elif kind == "ct_out_of_range":
        _resave(ct, _too_bright)
    else:
        raise ValueError(kind)


EXPECTED = {
    "truncated": ("ct.mha: unreadable (",),
    "not_an_image": ("mr.mha: unreadable (",),
    "missing_mr": ("missing mr.mha",),
    "missing_mask": ("missing mask.mha",),
    "not_3d": ("mr.mha: ", "3D"),
    "shape_mismatch": ("shape mismatch: mr (32", "mask (32"),
    "affine_mismatch": ("affine mismatch: ct differs from mr by up to 5 mm",),
    "nan_voxels": ("mr.mha: 32 non-finite voxels (NaN or inf)",),
    "empty_mask": ("mask: empty",),
    "ct_out_of_range": ("ct: HU outside the plausible range [-2048, 4000]", "max 12000)"),
}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_every_corruption_in_metaimage_is_reported(tmp_path: Path, kind: str) -> None:
    case_id = CaseId.parse("1THD004")
    folder = write_case(tmp_path / "Task1" / "TH" / str(case_id), case_id, SHAPE)
    assert validate_case(folder) == []  # intact before the damage
    damage(folder, kind)
    problems = validate_case(folder)
    assert problems and all(p.case_id == "1THD004" for p in problems)
    assert any(all(part in p.reason for part in EXPECTED[kind]) for p in problems), problems
    with pytest.raises(CaseError, match="1THD004: "):
        load_case(folder)


def test_regions_in_the_config_name_the_release_folders() -> None:
    cfg = ExperimentConfig().replace({"data.regions": ["HN", "TH", "AB"]})
    assert cfg.data.regions == ("HN", "TH", "AB")
    assert set(ExperimentConfig().data.regions) == {"brain", "pelvis", "HN", "TH", "AB"}
    with pytest.raises(ConfigError, match=r"items must be one of \['brain', 'pelvis', 'HN'"):
        ExperimentConfig().replace({"data.regions": ["head_neck"]})
    for name, region in (("head_neck", "HN"), ("thorax", "TH"), ("abdomen", "AB")):
        shipped = load_config(ROOT / "configs" / f"{name}.yaml")  # the GPU configs
        assert shipped.data.regions == (region,) and shipped.data.hu_range == (-1024.0, 3071.0)


def test_prepare_reads_the_2025_layout_and_reports_bad_cases(
    root: Path, small_cfg: ExperimentConfig, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    write_layout(data, per_region=3, regions=("HN", "AB"), mr_only=1, shape=SHAPE)
    damage(data / "Task1" / "AB" / "1ABB002", "truncated")
    cfg = small_cfg.replace({"data.regions": ["HN", "AB"]})
    report = prepare_dataset(data, str(tmp_path / "shards"), cfg)
    manifest = report.manifest
    assert [s.case_id for s in report.skipped] == ["1ABB002"]
    assert report.skipped[0].reasons[0].startswith("ct.mha: unreadable (")
    assert manifest.inference_only == ["1ABD004", "1HND004"]
    paired = {k: v for k, v in manifest.cases.items() if v.paired}
    assert sorted(paired) == ["1ABA001", "1ABC003", "1HNA001", "1HNB002", "1HNC003"]
    assert paired["1HNB002"].source == "HN/1HNB002" and paired["1HNB002"].centre == "B"
    assert set(manifest.counts["train"]) <= {"HN", "AB"}
    wrong = r"data.regions \['brain'\] under .*found: AB, HN; set data.regions"
    with pytest.raises(PrepareError, match=wrong):
        prepare_dataset(data, str(tmp_path / "none"), cfg.replace({"data.regions": ["brain"]}))
