"""DICOM out: a CT series that pydicom and SimpleITK read back with the input's grid and the HU."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from hmss_ray.config import UserError
from hmss_ray.io import Volume, read_volume, write_volume
from hmss_ray.io.align import align_to
from hmss_ray.io.dicom_write import CT_IMAGE_STORAGE, PatientFields, SeriesInfo, to_int16
from hmss_ray.io.itk import affine_from_itk
from tests.dicom_helpers import write_enhanced, write_series

# an oblique grid, 0.9 x 0.8 x 2.5 mm, x and z stored reversed (left-handed, as many NIfTIs)
ANGLE = np.deg2rad(12)
ROTATION = np.array(
    [[np.cos(ANGLE), 0, np.sin(ANGLE)], [0, 1, 0], [-np.sin(ANGLE), 0, np.cos(ANGLE)]]
)
AFFINE = np.eye(4)
AFFINE[:3, :3] = ROTATION @ np.diag([-0.9, 0.8, -2.5])
AFFINE[:3, 3] = [40.0, -30.0, 12.0]
INFO = SeriesInfo(model="brain", version="0123456789ab", patient=PatientFields("Doe^Jane", "P42"))


def _sct() -> Volume:
    rng = np.random.default_rng(0)
    return Volume(rng.integers(-1024, 3000, (12, 10, 6)).astype(np.int16), AFFINE.copy())


def _datasets(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(folder.iterdir())]


def test_written_series_reads_back_in_pydicom_and_simpleitk(tmp_path: Path) -> None:
    sct = _sct()
    write_volume(sct, tmp_path / "sct", series=INFO)
    datasets = _datasets(tmp_path / "sct")
    assert len(datasets) == sct.shape[2]
    assert len({ds.SOPInstanceUID for ds in datasets}) == len(datasets)
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    for k, ds in enumerate(datasets):
        assert ds.SOPClassUID == CT_IMAGE_STORAGE == ds.file_meta.MediaStorageSOPClassUID
        assert ds.Modality == "CT" and list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert ds.SeriesDescription == "Synthetic CT brain 0123456789ab"
        assert "SYNTHETIC CT" in ds.ImageComments
        assert (ds.PatientName, ds.PatientID) == ("Doe^Jane", "P42")
        assert ds.BitsAllocated == 16 and ds.PixelRepresentation == 1
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(hu, sct.array[:, :, k].T)  # rows are y
        assert float(ds.SliceThickness) == pytest.approx(2.5)
        assert [float(v) for v in ds.PixelSpacing] == pytest.approx([0.8, 0.9])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "sct")))
    image = reader.Execute()
    from_itk = Volume(sitk.GetArrayFromImage(image).transpose(2, 1, 0), affine_from_itk(image))
    back = align_to(from_itk, sct.affine, sct.shape, tolerance_mm=1e-3)  # same world grid
    np.testing.assert_array_equal(back.array, sct.array)
    ours = align_to(read_volume(tmp_path / "sct"), sct.affine, sct.shape, tolerance_mm=1e-3)
    np.testing.assert_array_equal(ours.array, sct.array)


def test_series_from_a_dicom_mr_keeps_its_patient_study_and_frame(tmp_path: Path) -> None:
    """The MR series is pydicom's shipped MR_small.dcm stacked three times."""
    written = write_series(tmp_path / "mr", [0, 1, 2])
    mr = read_volume(tmp_path / "mr")
    sct = mr.like(np.full(mr.shape, -1000, np.int16))
    write_volume(sct, tmp_path / "sct.zip", series=SeriesInfo(model="brain", version="v1"))
    with zipfile.ZipFile(tmp_path / "sct.zip") as archive:
        names = archive.namelist()
        datasets = [pydicom.dcmread(archive.open(name)) for name in names]
    assert names == ["CT_0001.dcm", "CT_0002.dcm", "CT_0003.dcm"]
    source = written[0]
    for ds, mr_slice in zip(datasets, sorted(written, key=lambda d: d.InstanceNumber), strict=True):
        for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID"):
            assert ds[keyword].value == source[keyword].value, keyword
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == mr_slice.SOPInstanceUID
        position = [float(v) for v in mr_slice.ImagePositionPatient]
        assert [float(v) for v in ds.ImagePositionPatient] == pytest.approx(position, abs=1e-4)
        (series,) = ds.ReferencedSeriesSequence  # the Common Instance Reference: the MR series
        assert series.SeriesInstanceUID == source.SeriesInstanceUID
        listed = {r.ReferencedSOPInstanceUID for r in series.ReferencedInstanceSequence}
        assert listed == {w.SOPInstanceUID for w in written}
    with pytest.raises(UserError, match="taken from the DICOM MR"):
        write_volume(sct, tmp_path / "again", series=INFO)


def test_float_volumes_keep_their_values_through_slope_and_intercept(tmp_path: Path) -> None:
    values = np.linspace(-1000.25, 2999.5, 12 * 10 * 6).reshape(12, 10, 6)
    stored, slope, intercept = to_int16(values)
    assert stored.dtype == np.int16 and slope != 1
    np.testing.assert_allclose(stored * slope + intercept, values, atol=slope / 2 + 1e-9)
    write_volume(Volume(values, AFFINE.copy()), tmp_path / "f")
    back = align_to(read_volume(tmp_path / "f"), AFFINE, values.shape)
    np.testing.assert_allclose(back.array, values, atol=slope)


def test_bad_targets_and_patient_fields_are_refused(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.dcm").write_bytes(b"x")
    with pytest.raises(UserError, match="not empty"):
        write_volume(_sct(), tmp_path / "full")
    with pytest.raises(UserError, match="cannot tell the output format"):
        write_volume(_sct(), tmp_path / "sct.png")
    with pytest.raises(UserError, match="YYYYMMDD"):
        PatientFields(birth_date="1970-01-01")
    with pytest.raises(UserError, match="M, F or O"):
        PatientFields(sex="male")
    sheared = _sct()
    sheared.affine[0, 2] += 0.5
    with pytest.raises(UserError, match="sheared"):
        write_volume(sheared, tmp_path / "sheared")


def test_a_series_from_an_enhanced_mr_references_each_slice_s_frame(tmp_path: Path) -> None:
    pixels = np.arange(64 * 64 * 4, dtype=np.int16).reshape(64, 64, 4)
    enhanced = write_enhanced(tmp_path / "mr.dcm", [0.0, 2.0, 4.0, 6.0], pixels)
    mr = read_volume(tmp_path / "mr.dcm")
    write_volume(mr.like(np.zeros(mr.shape, np.int16)), tmp_path / "sct", series=SeriesInfo())
    datasets = sorted(_datasets(tmp_path / "sct"), key=lambda d: d.InstanceNumber)
    frames = []
    for ds in datasets:
        (ref,) = ds.SourceImageSequence
        assert ref.ReferencedSOPInstanceUID == enhanced.SOPInstanceUID
        frames.append(int(ref.ReferencedFrameNumber))
        (series,) = ds.ReferencedSeriesSequence
        assert len(series.ReferencedInstanceSequence) == 1  # one file, listed once
    assert sorted(frames) == [1, 2, 3, 4] and frames != [1, 2, 3, 4]  # written in reverse order
