"""A volume as a DICOM CT series (CT Image Storage) that a treatment planning system imports.

One file per slice (``CT_0001.dcm`` ...) in a folder or a ``.zip``. Each slice: a new
SOPInstanceUID in one new SeriesInstanceUID; Modality CT, ImageType DERIVED\\SECONDARY\\AXIAL;
ImagePositionPatient / ImageOrientationPatient / PixelSpacing / SliceThickness of the volume's grid
(LPS); int16 pixels with RescaleSlope/RescaleIntercept (HU = stored x slope + intercept); "synthetic
CT" in SeriesDescription, ImageComments and DerivationDescription. From a DICOM MR: its patient,
study and FrameOfReferenceUID are kept (the sCT registers with the MR), each slice references
its MR slice (SourceImageSequence; its frame for an Enhanced MR) and the series lists the MR
series' instances (ReferencedSeriesSequence, the Common Instance Reference). Otherwise: a new
study and frame of reference, and the patient fields given in :class:`PatientFields`.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hmss_ray.config import UserError
from hmss_ray.io.dicom_series import FRAME_TAGS, LPS_TO_RAS, PATIENT_TAGS, STUDY_TAGS, DicomSource
from hmss_ray.io.volume import Volume

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PATIENT_POSITIONS = ("", "HFS", "HFP", "FFS", "FFP", "HFDR", "HFDL", "FFDR", "FFDL")
SYNTHETIC_NOTE = "SYNTHETIC CT computed from MR; not an acquired CT"


@dataclass(frozen=True)
class PatientFields:
    """Patient tags for a series made from a non-DICOM MR (empty values stay empty, type 2)."""

    name: str = ""  # DICOM person name, e.g. "Doe^Jane"
    id: str = ""
    birth_date: str = ""  # YYYYMMDD
    sex: str = ""  # M, F, O
    position: str = ""  # PatientPosition: HFS, FFS, ... (the MR's when the input is DICOM)

    def __post_init__(self) -> None:
        if self.birth_date and not re.fullmatch(r"\d{8}", self.birth_date):
            raise UserError(f"patient birth date {self.birth_date!r} must be YYYYMMDD")
        if self.sex not in ("", "M", "F", "O"):
            raise UserError(f"patient sex {self.sex!r} must be M, F or O")
        if self.position not in PATIENT_POSITIONS:
            raise UserError(
                f"patient position {self.position!r} must be one of {list(PATIENT_POSITIONS[1:])}"
            )
        for key in ("name", "id"):
            value = getattr(self, key)
            if len(value) > 64:
                raise UserError(f"patient {key} is longer than 64 characters")
            if "\\" in value or any(not ch.isprintable() for ch in value):
                raise UserError(
                    f"patient {key} must be one value: no backslash, no control characters"
                )
        if self.name.count("^") > 4 or "=" in self.name:
            raise UserError("patient name must be Family^Given^Middle^Prefix^Suffix (no '=')")

    def given(self) -> bool:
        return any((self.name, self.id, self.birth_date, self.sex, self.position))


@dataclass(frozen=True)
class SeriesInfo:
    """What the written series says about itself beyond the grid and the pixels."""

    model: str = "hmss-ray"  # ManufacturerModelName; SeriesDescription names it with version
    version: str = ""
    patient: PatientFields = field(default_factory=PatientFields)
    source: DicomSource | None = None  # default: the volume's meta["dicom"], if any
    series_number: int = 901
    uid_root: str = ""  # io.uid_root: the root of new UIDs ("1.2.3."); empty: pydicom's

    @property
    def description(self) -> str:
        return f"Synthetic CT {self.model} {self.version}".strip()[:64]


def write_dicom_series(volume: Volume, path: str | Path, info: SeriesInfo | None = None) -> Path:
    """Write ``volume`` as a CT series into a new folder, or a ``.zip`` when ``path`` ends so.

    Both are written under a hidden temporary name next to ``path`` and renamed when complete:
    a planning system watching the folder never sees half a series.
    """
    path = check_series_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".zip":
        partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        try:
            partial.write_bytes(dicom_series_bytes(volume, info))
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return path
    partial = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        for name, blob in series_files(volume, info):
            (partial / name).write_bytes(blob)
        if path.is_dir():
            path.rmdir()  # new or empty: check_series_target; a file in it now fails here
        partial.rename(path)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return path


def check_series_target(path: str | Path) -> Path:
    """``path`` as a place for a new series: a ``.zip`` file, or a folder that is new or empty
    (so that one folder never mixes two series)."""
    path = Path(path)
    if path.suffix.lower() != ".zip" and path.is_dir() and any(path.iterdir()):
        raise UserError(f"{path} exists and is not empty: give a new folder for the DICOM series")
    if path.suffix.lower() != ".zip" and path.exists() and not path.is_dir():
        raise UserError(f"{path} is a file: give a folder (or a .zip) for the DICOM series")
    return path


def check_output_target(
    out: str | Path, inputs: list[str | Path | None], overwrite: bool = False
) -> Path:
    """``out`` as the place for a command's answer: never one of ``inputs`` (nor inside an input
    folder, nor a folder holding one), and an existing file only with ``overwrite``. A DICOM
    series folder must be new or empty (:func:`check_series_target`), overwrite or not."""
    out = Path(out)
    target = out.resolve()
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if target == source or source in target.parents or target in source.parents:
            raise UserError(f"{out} is (or holds) the input {given}: give another output")
    if out.is_file() and not overwrite:
        raise UserError(f"{out} exists: pass --overwrite to replace it")
    return out


def dicom_series_bytes(volume: Volume, info: SeriesInfo | None = None) -> bytes:
    """The series as the bytes of a zip (one ``.dcm`` per slice)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, blob in series_files(volume, info):
            archive.writestr(name, blob)
    return buffer.getvalue()


def series_files(volume: Volume, info: SeriesInfo | None = None) -> Iterator[tuple[str, bytes]]:
    """``(file name, DICOM bytes)`` per slice."""
    info = info or SeriesInfo()
    source = info.source or volume.meta.get("dicom")
    if source is not None and info.patient.given():
        raise UserError(
            "patient fields are taken from the DICOM MR; give them only for NIfTI/MetaImage input"
        )
    grid = lps_grid(volume)
    stored, slope, intercept = to_int16(np.asarray(volume.array))
    shared = _shared_dataset(info, source, grid, slope, intercept)
    for k in range(stored.shape[2]):
        plane = stored[:, :, k]
        yield f"CT_{k + 1:04d}.dcm", _slice_bytes(shared, grid, plane, k, source, info.uid_root)


def to_int16(array: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(stored, slope, intercept)`` with ``array == stored * slope + intercept``: exact for
    integer values that fit int16 (slope 1, intercept 0), else a linear map of the value range."""
    finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    integral = array.dtype.kind in "iub" or bool(np.all(np.rint(finite) == finite))
    if integral and lo >= -32768 and hi <= 32767:
        return array.astype(np.int16), 1.0, 0.0
    slope = (hi - lo) / 65534 if hi > lo else 1.0
    intercept = lo + 32767 * slope
    stored = np.rint((np.nan_to_num(array, nan=lo) - intercept) / slope)
    return np.clip(stored, -32767, 32767).astype(np.int16), slope, intercept


@dataclass(frozen=True)
class _Grid:
    row_dir: np.ndarray  # LPS unit vector along a row (array axis 0)
    col_dir: np.ndarray  # along a column (array axis 1)
    spacing: tuple[float, float, float]  # x, y, slice
    origin: np.ndarray  # LPS of voxel (0, 0, 0)
    step: np.ndarray  # LPS vector from one slice to the next
    normal: np.ndarray


def lps_grid(volume: Volume) -> _Grid:
    lps = LPS_TO_RAS @ np.asarray(volume.affine, dtype=np.float64)  # the flip is its own inverse
    axes = lps[:3, :3]
    spacing = np.sqrt((axes**2).sum(axis=0))
    units = axes / spacing
    normal = np.cross(units[:, 0], units[:, 1])
    tilt = max(abs(units[:, 0] @ units[:, 1]), float(np.linalg.norm(np.cross(normal, units[:, 2]))))
    if tilt > 1e-4:
        raise UserError(
            "a DICOM series needs orthogonal voxel axes; this grid is sheared "
            f"({np.degrees(np.arcsin(min(tilt, 1.0))):.2f} degrees): resample it first"
        )
    return _Grid(units[:, 0], units[:, 1], tuple(spacing), lps[:3, 3], axes[:, 2], normal)


def _shared_dataset(info: SeriesInfo, source: DicomSource | None, grid: _Grid, slope, intercept):
    from pydicom.dataset import Dataset

    generate_uid = uid_maker(info.uid_root)
    now = dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.Modality = "CT"
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]  # value 3 is required by the CT Image IOD
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = info.series_number
    ds.SeriesDescription = info.description
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.ContentDate, ds.ContentTime = date, time
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.Manufacturer = "hmss-ray"
    ds.ManufacturerModelName = info.model[:64]
    ds.SoftwareVersions = info.version[:64] or "unknown"
    ds.ImageComments = f"{SYNTHETIC_NOTE}. Model {info.model} version {info.version}."
    ds.DerivationDescription = (
        f"Synthetic CT generated by hmss-ray model {info.model} {info.version} from MR"
        + (f" series {source.series_uid}" if source else "")
    )[:1024]
    ds.BurnedInAnnotation = "NO"
    for keyword in (*PATIENT_TAGS, *STUDY_TAGS, *FRAME_TAGS):
        setattr(ds, keyword, "")
    if source is not None:
        for keyword, value in source.tags.items():
            setattr(ds, keyword, value)
        if source.sop_class_uid:  # Common Instance Reference: the series SourceImage points in
            ds.ReferencedSeriesSequence = [series_reference(source)]
    else:
        patient = info.patient
        ds.PatientName, ds.PatientID = patient.name, patient.id
        ds.PatientBirthDate, ds.PatientSex = patient.birth_date, patient.sex
        ds.PatientPosition = patient.position
        ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = generate_uid(), date, time
        ds.StudyDescription = "Synthetic CT"
    if not ds.FrameOfReferenceUID:
        ds.FrameOfReferenceUID = generate_uid()
    _pixel_module(ds, grid, slope, intercept)
    return ds


def _pixel_module(ds, grid: _Grid, slope: float, intercept: float) -> None:
    from pydicom.valuerep import format_number_as_ds as as_ds

    ds.ImageOrientationPatient = [as_ds(float(v)) for v in (*grid.row_dir, *grid.col_dir)]
    ds.PixelSpacing = [as_ds(grid.spacing[1]), as_ds(grid.spacing[0])]  # rows, then columns
    ds.SliceThickness = as_ds(grid.spacing[2])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1  # signed
    ds.RescaleSlope, ds.RescaleIntercept = as_ds(slope), as_ds(intercept)
    ds.RescaleType = "HU"
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    ds.KVP = ""
    ds.AcquisitionNumber = ""


def series_reference(source: DicomSource):
    """A Referenced Series item naming every instance of ``source`` once (an Enhanced MR: one
    instance, many frames)."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.SeriesInstanceUID = source.series_uid
    refs = []
    for uid in dict.fromkeys(source.sop_instance_uids):
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = source.sop_class_uid, uid
        refs.append(ref)
    item.ReferencedInstanceSequence = refs
    return item


def uid_maker(root: str):
    """``generate_uid`` under ``root`` (io.uid_root), or under pydicom's root when empty."""
    from pydicom.uid import PYDICOM_ROOT_UID, generate_uid

    return lambda: generate_uid(prefix=root or PYDICOM_ROOT_UID)


def _slice_bytes(shared, grid: _Grid, plane: np.ndarray, k: int, source, uid_root="") -> bytes:
    from pydicom.dataset import Dataset
    from pydicom.valuerep import format_number_as_ds as as_ds

    ds = Dataset()
    ds.update(shared)
    ds.SOPInstanceUID = uid_maker(uid_root)()
    ds.InstanceNumber = k + 1
    position = grid.origin + k * grid.step
    ds.ImagePositionPatient = [as_ds(float(v)) for v in position]
    ds.SliceLocation = as_ds(float(position @ grid.normal))
    ds.Rows, ds.Columns = int(plane.shape[1]), int(plane.shape[0])
    if source is not None and len(source.sop_instance_uids) > k and source.sop_class_uid:
        ref = Dataset()
        ref.ReferencedSOPClassUID = source.sop_class_uid
        ref.ReferencedSOPInstanceUID = source.sop_instance_uids[k]
        frame = source.frames[k] if len(source.frames) > k else None
        if frame is not None:  # a frame of an Enhanced MR
            ref.ReferencedFrameNumber = frame + 1
        ds.SourceImageSequence = [ref]
    ds.PixelData = np.ascontiguousarray(plane.T).astype("<i2").tobytes()  # rows are y
    return dataset_bytes(ds, CT_IMAGE_STORAGE)


def dataset_bytes(ds: Any, sop_class: str) -> bytes:
    """``ds`` (a pydicom Dataset) as the bytes of a DICOM file (Part 10 file meta, explicit VR
    little endian)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
