"""NIfTI (``.nii``, ``.nii.gz``; NIfTI-1 and NIfTI-2) read and written with nibabel, bounded.

The header (its first 348 or 540 bytes) is decompressed and checked against the ``io`` limits
before the voxel data: a gzip of a 1024^3 header costs a few hundred bytes to refuse.
"""

from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path

import nibabel as nib
import numpy as np

from hmss_ray.config import IOConfig
from hmss_ray.io.limits import BoundedReader, check_voxels
from hmss_ray.io.volume import UnreadableVolume, Volume

HEADER_CLASSES = {348: nib.Nifti1Header, 540: nib.Nifti2Header}
IMAGE_CLASSES = {348: nib.Nifti1Image, 540: nib.Nifti2Image}


def read_nifti(path: str | Path, limits: IOConfig) -> Volume:
    """A ``.nii``/``.nii.gz`` file: header checked against ``limits``, then the data read."""
    try:
        image = nib.load(str(path))
        header = image.header
        check_voxels(header.get_data_shape(), header.get_data_dtype().itemsize, limits, "volume")
        array = np.asanyarray(image.dataobj)  # read now: a truncated file fails here, not later
    except UnreadableVolume:
        raise
    except Exception as exc:  # nibabel raises ImageFileError, EOFError, zlib.error, ...
        why = f"{type(exc).__name__}: {exc}"
        raise UnreadableVolume(f"{path}: not a readable volume ({why})") from None
    return Volume(array, np.asarray(image.affine, dtype=np.float64), {"nifti_header": header})


def nifti_from_bytes(data: bytes, limits: IOConfig, what: str = "volume") -> Volume:
    """Bytes of a ``.nii``/``.nii.gz`` -> :class:`Volume`, decompressing no more than needed.

    Args:
        data: the file's bytes, gzipped or not.
        limits: the ``io`` section; the header's grid is checked before its data is inflated.
        what: names the input in error messages ("MR", "mask").
    """
    reader = BoundedReader(data, limits.max_bytes, what)
    head = reader.read(540)
    sizeof_hdr = _header_size(head, what)
    try:
        header = HEADER_CLASSES[sizeof_hdr].from_fileobj(io.BytesIO(head[:sizeof_hdr]))
        shape, dtype = header.get_data_shape(), header.get_data_dtype()
        offset = int(header.get_data_offset())
    except Exception as exc:  # a header nibabel refuses: bad dims, unknown datatype, ...
        raise UnreadableVolume(f"the {what} is not a readable NIfTI file: {exc}") from None
    check_voxels(shape, dtype.itemsize, limits, what)
    needed = max(offset, sizeof_hdr) + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    body = data if not reader.gzipped else head + reader.read(max(0, needed - len(head)))
    if len(body) < needed:
        raise UnreadableVolume(
            f"the {what} is not a readable NIfTI file: truncated ({len(body)} of {needed} bytes)"
        )
    slope, inter = header.get_slope_inter()
    if (slope in (None, 1.0) and inter in (None, 0.0)) and dtype.kind in "iuf":
        # no scaling: the voxels are a read-only view of the bytes (a .nii upload is not copied)
        count = int(np.prod(shape, dtype=np.int64))
        array = np.frombuffer(body, dtype, count, offset).reshape(shape, order="F")
        affine = np.asarray(header.get_best_affine(), dtype=np.float64)
        return Volume(array, affine, {"nifti_header": header})
    try:
        image = IMAGE_CLASSES[sizeof_hdr].from_bytes(body)
        array = np.asanyarray(image.dataobj)
    except Exception as exc:  # untrusted bytes: any failure to parse means "not a NIfTI"
        raise UnreadableVolume(f"the {what} is not a readable NIfTI file: {exc}") from None
    return Volume(array, np.asarray(image.affine, dtype=np.float64), {"nifti_header": image.header})


def nifti_bytes(volume: Volume, compresslevel: int = 1) -> bytes:
    """``volume`` as gzipped NIfTI bytes (level 1: most of the size gain for little CPU)."""
    return gzip.compress(to_nifti(volume).to_bytes(), compresslevel=compresslevel)


def to_nifti(volume: Volume) -> nib.Nifti1Image:
    """``volume`` as a NIfTI image; a source NIfTI header's geometry fields are kept."""
    source = volume.meta.get("nifti_header")
    header = source.copy() if isinstance(source, nib.Nifti1Header) else None
    if isinstance(source, nib.Nifti2Header):
        header = None  # a NIfTI-2 header does not fit a NIfTI-1 image: geometry from the affine
    image = nib.Nifti1Image(volume.array, volume.affine, header)
    image.header.set_data_dtype(volume.array.dtype)
    if header is None:
        image.header.set_qform(volume.affine, code=1)
        image.header.set_sform(volume.affine, code=1)
    image.header.set_slope_inter(1, 0)
    return image


def write_nifti(volume: Volume, path: str | Path) -> Path:
    nib.save(to_nifti(volume), str(path))
    return Path(path)


def _header_size(head: bytes, what: str) -> int:
    if len(head) >= 4:
        for order in "<>":
            size = struct.unpack(f"{order}i", head[:4])[0]
            if size in HEADER_CLASSES and len(head) >= size:
                return size
    raise UnreadableVolume(
        f"the {what} is not a readable NIfTI file (no NIfTI-1 or NIfTI-2 header in its first "
        f"{len(head)} bytes)"
    )
