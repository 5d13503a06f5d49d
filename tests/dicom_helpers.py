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
from pydicom.uid import generate_uid

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
