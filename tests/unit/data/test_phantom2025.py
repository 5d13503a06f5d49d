"""SynthRAD2025 phantoms: HN/TH/AB in the MetaImage layout, five centres, every corruption."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hmss_ray.data.phantom import (
    CORRUPTIONS,
    PhantomId,
    T,
    case_ids,
    corrupt_case,
    make_case,
    write_case,
    write_dataset,
)
from hmss_ray.io import UnreadableVolume, read_volume

SMALL = (24, 24, 8)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("synthrad2025")
    summary = write_dataset(root, cases=5, edition="2025", mr_only=1, corrupt=3, shape=SMALL)
    return root, summary


def test_layout_ids_and_files(dataset) -> None:
    root, summary = dataset
    task = root / "Task1"
    assert sorted(p.name for p in task.iterdir()) == ["AB", "HN", "TH"]
    for region in ("HN", "TH", "AB"):
        names = sorted(p.name for p in (task / region).iterdir())
        assert "overviews" in names
        paired = {f"1{region}{centre}{n:03d}" for n, centre in enumerate("ABCDE", start=1)}
        assert paired <= set(names)
    case = task / "HN" / "1HNA001"
    assert sorted(p.name for p in case.iterdir()) == ["ct.mha", "labels.mha", "mask.mha", "mr.mha"]
    assert not (task / "TH" / "1THA006" / "ct.mha").exists()  # MR-only
    assert summary.mr_only == ["1HNA006", "1THA006", "1ABA006"]
    assert summary.corrupt == {
        "1HNB007": "truncated_gzip",
        "1THB007": "not_gzip",
        "1ABB007": "missing_mr",
    }
    assert (task / "AB" / "overviews" / "1_AB_phantom.csv").read_text().startswith("case_id,")


def test_mha_volumes_share_one_grid_and_hold_real_values(dataset) -> None:
    root, _ = dataset
    for region in ("HN", "TH", "AB"):
        folder = root / "Task1" / region / f"1{region}A001"
        ct, mr, mask, labels = (
            read_volume(folder / f"{n}.mha") for n in ("ct", "mr", "mask", "labels")
        )
        assert ct.array.dtype == np.int16 and labels.array.dtype == np.uint8
        assert ct.shape == mr.shape == mask.shape == labels.shape
        assert max(ct.shape[:2]) <= 24 and ct.shape[2] <= 8
        for other in (mr, mask, labels):
            np.testing.assert_allclose(other.affine, ct.affine, atol=1e-4)
        assert ct.array.min() >= -1024 and ct.array.max() > 300  # air and bone
        assert mask.array.any() and mr.array.max() > 0


def test_each_region_has_its_anatomy() -> None:
    expected = {
        "HN": {T.TEETH, T.GAS, T.MARROW, T.CORD, T.GREY, T.WHITE},  # teeth, airway, spine
        "TH": {T.LUNG, T.BLOOD, T.FAT, T.CARTILAGE, T.CORTEX, T.MARROW},  # lungs, heart, ribs
        "AB": {T.LIVER, T.KIDNEY, T.GAS, T.BOWEL, T.MARROW, T.FAT},  # liver, kidneys, bowel gas
    }
    for region, tissues in expected.items():
        case = make_case(f"1{region}A001", spacing=(4, 4, 6))
        present = set(np.unique(case.labels).tolist())
        assert tissues <= present, (region, [t.name for t in tissues if t not in present])


def test_five_centres_five_mr_contrasts() -> None:
    for region in ("HN", "AB"):
        ids = case_ids(region, 5)
        assert [i.centre for i in ids] == list("ABCDE")
        cases = [make_case(i, shape=(32, 32, 12)) for i in ids]
        levels = [float(np.median(c.mr[c.mask > 0])) for c in cases]
        assert len({round(v, -1) for v in levels}) == 5, levels
        assert {c.sequence for c in cases} >= {"t1", "t2"}


def test_case_ids_parse_both_editions() -> None:
    assert str(PhantomId.parse("1HNA001")) == "1HNA001"
    assert PhantomId.parse("1ABE123").region == "AB"
    assert PhantomId.parse("1BA001").region == "brain"
    with pytest.raises(ValueError, match="does not parse"):
        PhantomId.parse("1XXA001")
    with pytest.raises(ValueError, match="no centre 'F'"):
        make_case("1THF001", shape=SMALL)


def _check_broken(folder: Path, kind: str) -> None:
    """What a reader of the 2025 layout sees in a case damaged with ``kind``."""
    mr, ct, mask = (folder / f"{n}.mha" for n in ("mr", "ct", "mask"))
    if kind in ("truncated_gzip", "not_gzip", "not_3d"):
        with pytest.raises(UnreadableVolume):
            read_volume(ct if kind == "truncated_gzip" else mr)
    elif kind in ("missing_mr", "missing_mask"):
        assert not (mr if kind == "missing_mr" else mask).exists()
    elif kind == "shape_mismatch":
        assert read_volume(mask).shape != read_volume(mr).shape
    elif kind == "affine_mismatch":
        shift = read_volume(ct).affine - read_volume(mr).affine
        assert np.abs(shift).max() == pytest.approx(5.0, abs=1e-3)
    elif kind == "nan_voxels":
        assert np.isnan(read_volume(mr).array).any()
    elif kind == "empty_mask":
        assert not read_volume(mask).array.any()
    elif kind == "ct_out_of_range":
        assert read_volume(ct).array.max() == 12000


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_every_corruption_kind_in_metaimage(tmp_path: Path, kind: str) -> None:
    folder = write_case(tmp_path / "1THA001", make_case("1THA001", shape=SMALL), suffix=".mha")
    corrupt_case(folder, kind)
    _check_broken(folder, kind)


def test_cli_2025_and_a_region_of_the_wrong_edition(tmp_path: Path) -> None:
    out = tmp_path / "p2025"
    cmd = [sys.executable, "-m", "hmss_ray.phantom", "--edition", "2025", "-o", str(out)]
    done = subprocess.run([*cmd, "--cases", "1", "--shape", "16", "16", "6", "--quiet"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "HN      A           1       0       0" in done.stdout
    assert (out / "Task1" / "AB" / "1ABA001" / "mr.mha").is_file()
    wrong = subprocess.run([*cmd, "--regions", "brain"], capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2
    assert wrong.stderr.strip().startswith("error:") and "HN, TH, AB" in wrong.stderr


def test_adding_cases_leaves_existing_mha_files_byte_identical(tmp_path: Path) -> None:
    write_dataset(tmp_path / "a", cases=1, regions=["HN"], edition="2025", shape=SMALL)
    write_dataset(tmp_path / "b", cases=2, regions=["HN"], edition="2025", shape=SMALL)
    for name in ("mr", "ct", "mask", "labels"):
        rel = f"Task1/HN/1HNA001/{name}.mha"
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
