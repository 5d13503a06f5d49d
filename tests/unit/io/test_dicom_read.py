"""DICOM in: pydicom's shipped files read with the geometry pydicom and SimpleITK report; series
that are not one volume refused with what was found."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from hmss_ray.config import IOConfig
from hmss_ray.io import SeriesError, UnreadableVolume, read_volume, volume_from_bytes
from hmss_ray.io.dicom_select import SeriesRule
from hmss_ray.io.itk import affine_from_itk
from tests.dicom_helpers import DICOMDIR_TESTS, shipped, write_enhanced, write_series

CT5N = DICOMDIR_TESTS / "98892001" / "CT5N"  # a real 5-slice CT series, listed out of order


def _sitk_series(path: Path) -> sitk.Image:
    if path.is_file():
        return sitk.ReadImage(str(path))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path)))
    return reader.Execute()


@pytest.mark.parametrize("path", [shipped("CT_small.dcm"), shipped("MR_small.dcm"), CT5N])
def test_shipped_files_read_with_the_geometry_simpleitk_reports(path: Path) -> None:
    volume = read_volume(path)
    image = _sitk_series(path)
    expected = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    assert volume.shape == expected.shape
    np.testing.assert_array_equal(volume.array, expected)  # HU / signal, rescale applied
    ours, theirs = volume.affine, affine_from_itk(image)
    if volume.shape[2] == 1:  # one slice has no slice step: compare the in-plane grid
        ours, theirs = ours[:, [0, 1, 3]], theirs[:, [0, 1, 3]]
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_shipped_file_matches_what_pydicom_reads() -> None:
    ds = pydicom.dcmread(shipped("CT_small.dcm"))
    volume = read_volume(shipped("CT_small.dcm"))
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(volume.array[:, :, 0], hu.T)
    x, y, z = (float(v) for v in ds.ImagePositionPatient)  # LPS
    np.testing.assert_allclose(volume.affine[:3, 3], [-x, -y, z])
    assert volume.spacing[:2] == pytest.approx([float(v) for v in ds.PixelSpacing])
    source = volume.meta["dicom"]
    assert source.tags["PatientName"] == str(ds.PatientName)
    assert source.tags["StudyInstanceUID"] == ds.StudyInstanceUID


def test_jpeg2000_lossless_file_decodes_like_the_uncompressed_one() -> None:
    """pydicom has no JPEG 2000 codec here: SimpleITK's GDCM decodes it."""
    plain = read_volume(shipped("MR_small.dcm"))
    j2k = read_volume(shipped("MR_small_jp2klossless.dcm"))
    np.testing.assert_array_equal(j2k.array, plain.array)
    np.testing.assert_allclose(j2k.affine, plain.affine)


def test_slices_are_sorted_by_position_along_the_normal(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 3000, (64, 64, 5)).astype(np.int16)
    write_series(tmp_path / "s", [0, 2, 4, 6, 8], pixels=pixels, order=[3, 0, 4, 1, 2])
    volume = read_volume(tmp_path / "s")
    np.testing.assert_array_equal(volume.array, pixels)
    assert volume.spacing == pytest.approx((0.3125, 0.3125, 2.0))
    image = _sitk_series(tmp_path / "s")
    np.testing.assert_allclose(volume.affine, affine_from_itk(image), atol=1e-4)
    zipped = tmp_path / "s.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        for path in sorted((tmp_path / "s").iterdir()):
            archive.write(path, f"nested/{path.name}")
    for again in (read_volume(zipped), volume_from_bytes(zipped.read_bytes(), IOConfig())):
        np.testing.assert_array_equal(again.array, pixels)
        np.testing.assert_allclose(again.affine, volume.affine)


@pytest.mark.parametrize(
    ("path", "error", "words"),
    [
        (DICOMDIR_TESTS / "77654033" / "CT2", SeriesError, "161 slice position(s) missing"),
        (DICOMDIR_TESTS / "98892003" / "MR2", SeriesError, "holds no MR volume"),
        (DICOMDIR_TESTS / "98892003" / "MR700", SeriesError, "mixes 7 image orientations"),
        (DICOMDIR_TESTS / "98892001" / "CT2N", SeriesError, "mixes 2 image orientations"),
        (DICOMDIR_TESTS / "77654033" / "CR1", UnreadableVolume, "without ImagePositionPatient"),
        (shipped("rtdose.dcm"), UnreadableVolume, "multi-frame image (RTDOSE)"),
        (DICOMDIR_TESTS / "TINY_ALPHA", UnreadableVolume, "no DICOM image slice"),
    ],
)
def test_shipped_files_that_are_not_one_volume_are_refused(path, error, words) -> None:
    with pytest.raises(error) as caught:
        read_volume(path)
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("positions", "shift", "words"),
    [
        ([0, 2, 4, 9, 11], 0.0, "uneven slice spacing: gaps from 2 to 5 mm"),
        ([0, 2, 6, 8, 10], 0.0, "1 slice position(s) missing (every 2 mm expected"),
        ([0, 2, 2, 4, 6], 0.0, "2 slices share a position"),
        ([0, 2, 4, 6, 8], 0.5, "not stacked along their normal"),
    ],
)
def test_irregular_series_are_refused(tmp_path: Path, positions, shift, words) -> None:
    write_series(tmp_path / "s", positions, shift_mm=shift)
    with pytest.raises(SeriesError) as caught:
        read_volume(tmp_path / "s")
    assert words in str(caught.value)


def _study(folder: Path) -> None:
    """A study as a scanner exports it: a localiser (1 slice), a T1 (3 slices), a T2 (4 slices)
    and a CT (2 slices), in subfolders."""
    write_series(folder / "loc", [0], series_uid="1.2.3.1")
    write_series(folder / "t1", [0, 1, 2], series_uid="1.2.3.4")
    write_series(folder / "t2", [0, 1, 2, 3], series_uid="1.2.3.6")
    write_series(folder / "ct", [0, 1], template="CT_small.dcm", series_uid="1.2.3.5")
    for name, description in (("t1", "T1 MPRAGE"), ("t2", "t2 tse ax"), ("loc", "LOCALIZER")):
        for path in (folder / name).iterdir():
            ds = pydicom.dcmread(path)
            ds.SeriesDescription = description
            ds.save_as(path)


def test_a_study_with_several_mr_volumes_names_them_and_asks_for_a_rule(tmp_path: Path) -> None:
    _study(tmp_path / "s")
    with pytest.raises(SeriesError) as caught:
        read_volume(tmp_path / "s")
    text = str(caught.value)
    assert "holds 2 MR series: choose one with --series-uid or --series-description" in text
    assert "1.2.3.4 (MR, 64x64, 'T1 MPRAGE', 3 slice(s))" in text
    assert "1.2.3.6 (MR, 64x64, 't2 tse ax', 4 slice(s))" in text
    assert "1.2.3.5" not in text  # the CT is no candidate


@pytest.mark.parametrize(
    ("rule", "uid", "depth"),
    [
        (SeriesRule(description="^t1"), "1.2.3.4", 3),
        (SeriesRule(description="T2 TSE"), "1.2.3.6", 4),  # case-insensitive
        (SeriesRule(series_uid="1.2.3.6"), "1.2.3.6", 4),
    ],
)
def test_a_rule_chooses_the_series_and_the_choice_is_recorded(
    tmp_path: Path, rule: SeriesRule, uid: str, depth: int
) -> None:
    _study(tmp_path / "s")
    volume = read_volume(tmp_path / "s", series=rule)
    assert volume.shape[2] == depth and volume.meta["dicom"].series_uid == uid
    reason = volume.meta["series_choice"]
    assert reason.startswith(f"series {uid} (MR") and "chosen by" in reason
    assert "1.2.3.1 (MR, 64x64, 'LOCALIZER', 1 slice(s)): 1 slice(s), not a volume" in reason
    assert "1.2.3.5 (CT, 128x128, 2 slice(s)): modality CT" in reason


def test_the_only_mr_volume_of_a_study_is_chosen_without_a_rule(tmp_path: Path) -> None:
    _study(tmp_path / "s")
    shutil.rmtree(tmp_path / "s" / "t2")
    volume = read_volume(tmp_path / "s")
    assert volume.meta["dicom"].series_uid == "1.2.3.4"
    assert "chosen by the only candidate" in volume.meta["series_choice"]
    with pytest.raises(SeriesError, match="no series matches SeriesDescription ~ /flair/"):
        read_volume(tmp_path / "s", series=SeriesRule(description="flair"))


def test_non_dicom_files_beside_a_series_are_skipped(tmp_path: Path) -> None:
    write_series(tmp_path / "s", [0, 1, 2])
    (tmp_path / "s" / "README.txt").write_text("not an image")
    assert read_volume(tmp_path / "s").shape == (64, 64, 3)


def test_an_enhanced_multi_frame_mr_reads_as_the_same_classic_series(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 3000, (64, 64, 6)).astype(np.int16)
    positions = [0, 2, 4, 6, 8, 10]
    write_series(tmp_path / "classic", positions, pixels=pixels)
    write_enhanced(tmp_path / "enhanced" / "mr.dcm", positions, pixels, series_uid="1.2.7")
    classic, enhanced = read_volume(tmp_path / "classic"), read_volume(tmp_path / "enhanced")
    np.testing.assert_array_equal(enhanced.array, classic.array)
    np.testing.assert_allclose(enhanced.affine, classic.affine, atol=1e-4)
    assert enhanced.meta["dicom"].series_uid == "1.2.7"
    one = read_volume(tmp_path / "enhanced" / "mr.dcm")  # the file alone, or zipped
    np.testing.assert_array_equal(one.array, classic.array)


def test_an_enhanced_mr_with_two_frames_at_one_position_is_refused(tmp_path: Path) -> None:
    pixels = np.zeros((64, 64, 4), np.int16)
    write_enhanced(tmp_path / "e" / "mr.dcm", [0, 2, 2, 4], pixels)  # two echoes at 2 mm
    with pytest.raises(SeriesError, match="share a position"):
        read_volume(tmp_path / "e")
