"""NIfTI (``.nii``, ``.nii.gz``; NIfTI-1 and NIfTI-2) read and written with nibabel, bounded.

The header (its first 348 or 540 bytes) is decompressed and checked against the ``io`` limits
before the voxel data: a gzip of a 1024^3 header costs a few hundred bytes to refuse.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
from isal import isal_zlib  # zlib's API, 4x faster at level 1, 10x at crc32 (hmss_ray.io.limits)

from hmss_ray.config import IOConfig
from hmss_ray.io.limits import CHUNK, MAX_DEFLATE_RATIO, BoundedReader, check_voxels
from hmss_ray.io.volume import UnreadableVolume, Volume, check_affine, library_failure

HEADER_CLASSES = {348: nib.Nifti1Header, 540: nib.Nifti2Header}
SLAB = 1 << 22  # bytes of voxels encoded at a time
STORED_BLOCK = 0xFFFF  # the largest uncompressed deflate block
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime


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
        raise library_failure(f"{path}: not a readable volume (NIfTI)", exc) from None
    affine = check_affine(image.affine, str(path))
    return Volume(array, affine, {"nifti_header": header})


def nifti_from_bytes(data: bytes, limits: IOConfig, what: str = "volume") -> Volume:
    """Bytes of a single-file ``.nii``/``.nii.gz`` -> :class:`Volume`, bounded by what was sent.

    The header is checked first: the grid against ``limits``, and the bytes it needs (``vox_offset``
    and the voxels) against what the upload can hold (its own size, or DEFLATE's largest ratio
    for a gzip). Inflated bytes are appended as they come, so memory grows only with data that
    is really there. Only integer and float voxels are taken; a scale is applied in float32.

    Args:
        data: the file's bytes, gzipped or not.
        limits: the ``io`` section.
        what: names the input in error messages ("MR", "mask").
    """
    reader = BoundedReader(data, limits.max_bytes, what)
    head = reader.read(540)
    header, sizeof_hdr, offset = _upload_header(head, what)
    shape, dtype = header.get_data_shape(), header.get_data_dtype()
    check_voxels(shape, dtype.itemsize, limits, what)
    count = int(np.prod(shape, dtype=np.int64))
    needed = max(offset, sizeof_hdr) + count * dtype.itemsize
    if needed > (len(data) * MAX_DEFLATE_RATIO + 1024 if reader.gzipped else len(data)):
        raise UnreadableVolume(f"the {what} is truncated: shorter than its NIfTI header says")
    body: bytes | bytearray = data
    if reader.gzipped:  # appended as inflated (no buffer of the header's size up front)
        body = bytearray(head)
        while len(body) < needed:
            piece = reader.read(min(CHUNK, needed - len(body)))
            if not piece:
                raise UnreadableVolume(
                    f"the {what} is truncated: shorter than its NIfTI header says"
                )
            body += piece
    array = np.frombuffer(body, dtype, count, offset).reshape(shape, order="F")
    slope, inter = header.get_slope_inter()
    if (slope, inter) not in ((None, None), (1.0, 0.0), (1.0, None), (None, 0.0)):
        array = array.astype(np.float32, order="F") * np.float32(slope if slope is not None else 1)
        array += np.float32(inter or 0.0)
    affine = check_affine(header.get_best_affine(), f"the {what}")
    return Volume(array, affine, {"nifti_header": header})


def _upload_header(head: bytes, what: str) -> tuple[nib.Nifti1Header, int, int]:
    """A single-file NIfTI header of scalar voxels, its size and its data offset (a .hdr/.img
    pair's header is refused: its data is in another file)."""
    sizeof_hdr = _header_size(head, what)
    magic = head[344:348] if sizeof_hdr == 348 else head[4:8]
    if magic in (b"ni1\0", b"ni2\0"):
        raise UnreadableVolume(
            f"the {what} is the header of a NIfTI .hdr/.img pair: send one .nii or .nii.gz file"
        )
    if magic not in (b"n+1\0", b"n+2\0"):
        raise UnreadableVolume(f"the {what} is not a readable NIfTI file (no NIfTI magic)")
    try:
        header = HEADER_CLASSES[sizeof_hdr].from_fileobj(io.BytesIO(head[:sizeof_hdr]))
        dtype, (slope, inter) = header.get_data_dtype(), header.get_slope_inter()
        offset = int(header.get_data_offset())  # vox_offset is a float: NaN and inf fail here
    except Exception as exc:  # a header nibabel refuses: bad dims, unknown datatype, ...
        raise library_failure(f"the {what} is not a readable NIfTI file", exc) from None
    if dtype.kind not in "iuf" or dtype.itemsize > 8:
        raise UnreadableVolume(
            f"the {what} has {dtype} voxels: send integer or floating-point scalar voxels"
        )
    if any(v is not None and not np.isfinite(v) for v in (slope, inter)):
        raise UnreadableVolume(f"the {what} has a non-finite intensity scale (scl_slope/scl_inter)")
    return header, sizeof_hdr, offset


def nifti_bytes(volume: Volume, compresslevel: int = 1) -> bytes:
    """``volume`` as gzipped NIfTI bytes (level 1: most of the size gain for little CPU).

    Written in slabs of slices straight from the array (a view when it is Fortran-ordered, as
    read from NIfTI): the answer is the only volume-sized buffer made. Level 0 is a stored gzip
    (valid for any reader, no compression time): its blocks are views of the voxels, joined once.
    """
    image = to_nifti(volume)
    head = _single_file_header(image)
    parts = _voxel_bytes(volume.array, image.header.get_data_dtype())
    if compresslevel == 0:
        return _stored_gzip(head, parts)
    # 31: a gzip wrapper; ISA-L's levels are 0-3 (its 1 is about zlib's 1 in size, 4x faster)
    deflate = isal_zlib.compressobj(min(compresslevel, 3), isal_zlib.DEFLATED, 31)
    out = [deflate.compress(head)]
    out += [deflate.compress(part) for part in parts]
    out.append(deflate.flush())
    return b"".join(out)


def _single_file_header(image: nib.Nifti1Image) -> bytes:
    """A single-file NIfTI's bytes before its voxels: header, extensions, padding."""
    image.update_header()
    header = image.header
    buffer = io.BytesIO()
    header.write_to(buffer)  # sets vox_offset when it is unset
    head = buffer.getvalue()
    return head + b"\0" * max(0, int(header.get_data_offset()) - len(head))


def _voxel_bytes(array: np.ndarray, dtype: np.dtype) -> list[memoryview]:
    """The voxels in NIfTI order (Fortran, ``dtype``'s byte order) as buffers of ~``SLAB`` bytes:
    views of ``array`` when it is already laid out so, else one converted slab at a time."""
    array = np.asarray(array)
    if array.dtype == dtype and (array.flags.f_contiguous or array.ndim <= 1):
        flat = memoryview(np.ascontiguousarray(array.T)).cast("B")  # a view: .T is C-ordered
        return [flat[i : i + SLAB] for i in range(0, len(flat), SLAB)]
    depth = array.shape[-1] if array.ndim >= 2 else 1
    per_slice = max(array[..., :1].nbytes if array.ndim >= 2 else array.nbytes, 1)
    step = max(1, SLAB // per_slice)
    out = []
    for z in range(0, depth, step):
        slab = np.asfortranarray(array[..., z : z + step], dtype=dtype)
        out.append(memoryview(np.ascontiguousarray(slab.T)).cast("B"))
    return out


def _stored_gzip(head: bytes, parts: list[memoryview]) -> bytes:
    """A gzip member of uncompressed deflate blocks (RFC 1951 3.2.4) holding ``head`` then
    ``parts``: the blocks are views, so building it copies each byte once."""
    pieces: list[bytes | memoryview] = [GZIP_HEADER]
    crc, total = 0, 0
    chunks = [memoryview(head)]
    for part in parts:
        chunks += [part[i : i + STORED_BLOCK] for i in range(0, len(part), STORED_BLOCK)]
    for index, chunk in enumerate(chunks):
        final = index == len(chunks) - 1
        size = len(chunk)
        pieces.append(struct.pack("<BHH", int(final), size, size ^ 0xFFFF))
        pieces.append(chunk)
        crc = isal_zlib.crc32(chunk, crc)
        total += size
    pieces.append(struct.pack("<II", crc, total & 0xFFFFFFFF))
    return b"".join(pieces)


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
