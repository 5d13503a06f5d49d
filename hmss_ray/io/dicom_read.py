"""One DICOM image series (a folder, a ``.zip``, its bytes, or one file) as a :class:`Volume`.

Two passes, so that nothing large is allocated before the series is known to be one volume within
the ``io`` limits: headers only (pydicom ``stop_before_pixels``), grouped by SeriesInstanceUID,
sorted by position along the slice normal (ImageOrientationPatient row x column), checked for
one plane, one grid, no missing or uneven positions; then the pixels, slice by slice, into one
array with RescaleSlope/Intercept applied. Geometry: ImagePositionPatient, ImageOrientationPatient
and PixelSpacing are LPS+; the affine is flipped to RAS+. Compressed transfer syntaxes that pydicom
cannot decode here (JPEG, JPEG 2000, JPEG-LS) are decoded with SimpleITK's GDCM.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from hmss_ray.config import IOConfig
from hmss_ray.io import dicom_file
from hmss_ray.io.dicom_enhanced import frame_headers, is_enhanced
from hmss_ray.io.dicom_file import member_bytes
from hmss_ray.io.dicom_select import SeriesRule, choose_series
from hmss_ray.io.dicom_series import DicomSource, SliceHeader, stack_geometry
from hmss_ray.io.limits import MIB, check_voxels, open_zip
from hmss_ray.io.volume import (
    LimitExceeded,
    SeriesError,
    UnreadableVolume,
    Volume,
    check_affine,
    library_failure,
)


@dataclass(frozen=True)
class Member:
    """One file of a candidate series: a name for messages, its size, how to open it."""

    name: str
    size: int
    open: Callable[[], BinaryIO]
    path: Path | None = None  # on disk (lets SimpleITK decode it in place)


def read_dicom(path: str | Path, limits: IOConfig, rule: SeriesRule | None = None) -> Volume:
    """A DICOM series from a folder (searched recursively), a ``.zip`` or a single file; of
    several series, the one ``rule`` chooses (:mod:`hmss_ray.io.dicom_select`)."""
    path = Path(path)
    if path.is_dir():
        return read_series(_folder_members(path, limits), limits, f"folder {path}", rule)
    if path.suffix.lower() == ".zip":
        with path.open("rb") as handle:
            archive = open_zip(handle, limits, f"zip {path.name}")
            return read_series(_zip_members(archive), limits, f"zip {path.name}", rule)
    return read_series([_file_member(path, path.name)], limits, str(path), rule)


def dicom_from_bytes(data: bytes, limits: IOConfig, what: str = "upload") -> Volume:
    """A zip of one DICOM series (or one DICOM file) sent as bytes."""
    if data[128:132] == b"DICM":
        return read_series([Member(what, len(data), lambda: io.BytesIO(data))], limits, what)
    archive = open_zip(io.BytesIO(data), limits, f"{what} zip")
    return read_series(_zip_members(archive), limits, f"{what} zip")


def read_series(
    members: list[Member], limits: IOConfig, where: str, rule: SeriesRule | None = None
) -> Volume:
    """The image series among ``members``, checked and stacked (see the module docstring): the
    only one, or the one ``rule`` (by default: the only MR volume) chooses of several."""
    if len(members) > limits.max_files:
        raise LimitExceeded(
            f"{where} has {len(members)} files, over the limit of {limits.max_files} (io.max_files)"
        )
    for member in members:
        if member.size > limits.max_file_bytes:
            raise LimitExceeded(
                f"{where}: {member.name} is {member.size / MIB:,.0f} MiB, over the limit of "
                f"{limits.max_file_mb:g} MiB per file (io.max_file_mb)"
            )
    budget = dicom_file.Budget(limits)  # parsing cost of all the files, both passes
    slices, skipped = _headers(members, limits, where, budget)
    groups = _by_series(slices, skipped, where)
    if len(groups) == 1 and rule is None:  # one series: whatever it is (an MR, a CT to score)
        geometry, reason = stack_geometry(next(iter(groups.values())), where), None
    else:
        choice = choose_series(groups, rule or SeriesRule(), where)
        geometry, reason = choice.geometry, choice.reason
    check_affine(geometry.affine, f"the series in {where}")
    first = geometry.slices[0]
    check_voxels((first.columns, first.rows, len(geometry.slices)), 4, limits, f"series in {where}")
    array = _pixels(geometry.slices, limits, where, budget)
    meta: dict = {"dicom": DicomSource.from_slices(geometry.slices)}
    if reason:
        meta["series_choice"] = reason
    return Volume(array, geometry.affine, meta)


def _headers(
    members: list[Member], limits: IOConfig, where: str, budget: dicom_file.Budget
) -> tuple[list[SliceHeader], dict[str, int]]:
    slices: list[SliceHeader] = []
    skipped: dict[str, int] = {}
    for member in members:
        data = member_bytes(member.open, limits, where)
        try:
            ds = dicom_file.parse(data, limits, where, False, budget)
        except dicom_file.NotDicom:
            skipped["not DICOM"] = skipped.get("not DICOM", 0) + 1
            continue
        headers = (
            frame_headers(ds, member) if is_enhanced(ds) else SliceHeader.from_dataset(ds, member)
        )
        if isinstance(headers, str):
            skipped[headers] = skipped.get(headers, 0) + 1
        else:
            slices.extend(headers if isinstance(headers, list) else [headers])
    return slices, skipped


def _by_series(
    slices: list[SliceHeader], skipped: dict[str, int], where: str
) -> dict[str, list[SliceHeader]]:
    if not slices:
        found = ", ".join(f"{n} {why}" for why, n in sorted(skipped.items())) or "no files"
        raise UnreadableVolume(f"{where} holds no DICOM image slice ({found})")
    by_series: dict[str, list[SliceHeader]] = {}
    for header in slices:
        by_series.setdefault(header.series_uid, []).append(header)
    return by_series


def _pixels(
    slices: list[SliceHeader], limits: IOConfig, where: str, budget: dicom_file.Budget
) -> np.ndarray:
    scaled = any((s.slope, s.intercept) != (1.0, 0.0) for s in slices)
    array: np.ndarray | None = None
    frames: dict[str, tuple[np.ndarray, bool]] = {}  # a multi-frame file, decoded once
    for k, header in enumerate(slices):
        if header.frame is None:
            values, rescaled = _decode(header, limits, where, budget)
        else:
            if header.member.name not in frames:
                frames.clear()  # one multi-frame file held at a time
                frames[header.member.name] = _decode(header, limits, where, budget)
            stack, rescaled = frames[header.member.name]
            values = stack[header.frame] if stack.ndim == 3 else stack
        if values.shape != (header.rows, header.columns):
            raise SeriesError(
                f"{where}: {header.member.name} has pixels {values.shape}, its header says "
                f"{(header.rows, header.columns)}"
            )
        if array is None:
            dtype = np.float32 if scaled else values.dtype
            array = np.empty((header.columns, header.rows, len(slices)), dtype=dtype)
        if scaled and not rescaled:
            values = values.astype(np.float32) * np.float32(header.slope) + header.intercept
        array[:, :, k] = values.T  # DICOM rows are y, columns x
    assert array is not None
    return array


def _decode(
    header: SliceHeader, limits: IOConfig, where: str, budget: dicom_file.Budget
) -> tuple[np.ndarray, bool]:
    """The slice's pixels, and whether the rescale is already applied (by GDCM)."""
    data = member_bytes(header.member.open, limits, where)
    try:
        ds = dicom_file.parse(data, limits, where, True, budget)
    except dicom_file.NotDicom:  # it was DICOM a moment ago: the file changed under us
        raise UnreadableVolume(f"{where}: a slice changed while it was read") from None
    syntax = ds.file_meta.get("TransferSyntaxUID")
    compressed = syntax is not None and syntax.is_transfer_syntax and syntax.is_compressed
    if compressed:
        _check_frame_size(ds, header, where)
    try:
        return np.asarray(ds.pixel_array), False
    except Exception as exc:  # a missing codec, corrupt pixel data: either way not decodable
        if not compressed:
            raise library_failure(f"{where}: a slice's pixel data is not readable", exc) from None
        return _decode_with_itk(header, data, getattr(syntax, "name", "compressed"), where), True


def _check_frame_size(ds, header: SliceHeader, where: str) -> None:
    """A compressed frame must not declare more pixels than the slice's Rows x Columns: the
    decoder would allocate what the frame says."""
    from pydicom.encaps import generate_frames

    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    except Exception as exc:  # no pixel data, broken encapsulation
        raise library_failure(
            f"{where}: a slice's compressed pixel data is malformed", exc
        ) from None
    size = dicom_file.frame_size(frame[:65536])
    if size is not None and size[0] * size[1] > header.rows * header.columns:
        raise UnreadableVolume(
            f"{where}: a slice's compressed frame declares {size[0]}x{size[1]} pixels, its "
            f"header {header.rows}x{header.columns}"
        )


def _decode_with_itk(header: SliceHeader, data: bytes, syntax: str, where: str) -> np.ndarray:
    """GDCM (in SimpleITK) decodes JPEG, JPEG 2000 and JPEG-LS; it applies the rescale itself."""
    import SimpleITK as sitk

    def read(path: Path) -> np.ndarray:
        reader = sitk.ImageFileReader()
        reader.SetImageIO("GDCMImageIO")
        reader.SetFileName(str(path))
        frames = sitk.GetArrayFromImage(reader.Execute())
        return frames if header.frame is not None else frames[0]

    try:
        if header.member.path is not None:
            return read(header.member.path)
        with tempfile.TemporaryDirectory(prefix="hmss-dcm-") as tmp:
            path = Path(tmp) / "slice.dcm"
            path.write_bytes(data)
            return read(path)
    except RuntimeError as exc:
        raise library_failure(
            f"{where}: cannot decode a slice's {syntax} pixel data", exc
        ) from None


def _folder_members(folder: Path, limits: IOConfig) -> list[Member]:
    members: list[Member] = []
    for path in _walk(folder):
        if len(members) >= limits.max_files:
            raise LimitExceeded(
                f"folder {folder} has more than {limits.max_files} files (io.max_files)"
            )
        members.append(_file_member(path, str(path.relative_to(folder))))
    return sorted(members, key=lambda m: m.name)


def _file_member(path: Path, name: str) -> Member:
    return Member(name, path.stat().st_size, lambda: path.open("rb"), path)


def _walk(folder: Path) -> Iterator[Path]:
    for path in folder.rglob("*"):  # lazily: a huge tree stops at io.max_files
        if path.is_file() and not path.name.startswith(".") and not path.is_symlink():
            yield path


def _zip_members(archive: zipfile.ZipFile) -> list[Member]:
    def opener(info: zipfile.ZipInfo) -> Callable[[], BinaryIO]:
        return lambda: archive.open(info)

    return [
        Member(info.filename, info.file_size, opener(info))
        for info in archive.infolist()
        if not info.is_dir() and not Path(info.filename).name.startswith(".")
    ]
