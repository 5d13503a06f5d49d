"""Test helpers: DICOM files that pydicom ships, and series built from them.

Nothing here is written by us from scratch: every slice starts as pydicom's shipped ``MR_small.dcm``
or ``CT_small.dcm`` (real scanner files); a series changes only positions, UIDs and pixels.
"""

from __future__ import annotations

import copy
import io
import zipfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"  # Enhanced MR Image Storage
DICOMDIR_TESTS = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests"


def shipped(name: str) -> Path:
    return Path(get_testdata_file(name))


def write_series(
    folder: Path,
    positions: list[float],
    template: str = "MR_small.dcm",
    pixels: np.ndarray | None = None,
    series_uid: str | None = None,
    shift_mm: float = 0.0,
    order: list[int] | None = None,
    pixel_spacing: float | None = None,
) -> list[pydicom.Dataset]:
    """One series from a shipped slice: slice k at ``positions[k]`` mm along the normal.

    Args:
        folder: where the ``.dcm`` files go (created).
        positions: offsets along the template's slice normal, one per slice.
        template: the shipped file every slice copies.
        pixels: (columns, rows, slices) values stored as the template's dtype (default: its own).
        series_uid: default a new one; the study, patient and frame of reference stay the file's.
        shift_mm: in-plane shift added per slice along the row direction (a gantry tilt).
        order: the order files are written in (file names), to prove sorting by position.
        pixel_spacing: replaces the template's PixelSpacing (mm, both directions).
    """
    base = pydicom.dcmread(shipped(template))
    folder.mkdir(parents=True, exist_ok=True)
    iop = np.asarray([float(v) for v in base.ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    origin = np.asarray([float(v) for v in base.ImagePositionPatient])
    series_uid = series_uid or generate_uid()
    written = []
    for rank, k in enumerate(order or range(len(positions))):
        ds = copy.deepcopy(base)
        position = origin + positions[k] * normal + k * shift_mm * iop[:3]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        if pixel_spacing is not None:
            ds.PixelSpacing = [pixel_spacing, pixel_spacing]
        if pixels is not None:
            plane = np.ascontiguousarray(pixels[:, :, k].T).astype(base.pixel_array.dtype)
            ds.PixelData = plane.tobytes()
            ds.Rows, ds.Columns = plane.shape
        ds.save_as(folder / f"file{rank:03d}.dcm")
        written.append(ds)
    return written


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    """A deflated zip in memory: entry name -> bytes (names taken as given, even unsafe ones)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def write_enhanced(
    path: Path,
    positions: list[float],
    pixels: np.ndarray,
    pixel_spacing: float | None = None,
    **tags,
) -> Dataset:
    """One Enhanced MR Image Storage file holding ``write_series``' slices as frames: the
    geometry in functional groups (orientation and spacing shared, a position per frame), frames
    written in reverse position order (a reader must sort them)."""
    base = pydicom.dcmread(shipped("MR_small.dcm"))
    iop = [float(v) for v in base.ImageOrientationPatient]
    normal = np.cross(iop[:3], iop[3:])
    origin = np.asarray([float(v) for v in base.ImagePositionPatient])
    ds = copy.deepcopy(base)
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                    "SliceThickness", "SliceLocation", "InstanceNumber"):  # fmt: skip
        if keyword in ds:
            delattr(ds, keyword)
    ds.SOPClassUID = ENHANCED_MR
    ds.file_meta.MediaStorageSOPClassUID = ENHANCED_MR
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = tags.pop("series_uid", generate_uid())
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    order = list(range(len(positions)))[::-1]
    ds.NumberOfFrames = len(order)
    measures, plane = Dataset(), Dataset()
    measures.PixelSpacing = [pixel_spacing] * 2 if pixel_spacing else list(base.PixelSpacing)
    measures.SliceThickness = base.get("SliceThickness", 1.0)
    plane.ImageOrientationPatient = iop
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([plane])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for k in order:
        where = Dataset()
        where.ImagePositionPatient = [f"{v:.4f}" for v in origin + positions[k] * normal]
        item = Dataset()
        item.PlanePositionSequence = Sequence([where])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    dtype = base.pixel_array.dtype
    ds.PixelData = b"".join(np.ascontiguousarray(pixels[:, :, k].T).astype(dtype).tobytes()
                            for k in order)  # fmt: skip
    ds.Rows, ds.Columns = pixels.shape[1], pixels.shape[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)
    return ds
