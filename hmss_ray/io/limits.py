"""Reading untrusted input at a bounded cost: voxel counts, streamed gunzip, checked zip files.

Every check runs before the allocation it guards: a header's voxel count before its data, a gzip
stream through a decompressor that never produces more than asked for, a zip's directory (entry
count, names, declared sizes) before any entry is opened. The limits are the ``io`` section of the
config (:class:`~hmss_ray.config.IOConfig`); a breach raises
:class:`~hmss_ray.io.volume.LimitExceeded` with the number found and the key that caps it.
"""

from __future__ import annotations

import math
import struct
import zipfile
from collections.abc import Sequence
from typing import BinaryIO

# zlib's API on Intel's ISA-L: inflates a 10 MB .nii.gz upload in 43 ms instead of zlib's 85
# (README, bench.serve_latency); the streams are plain gzip either way
from isal import isal_zlib

from hmss_ray.config import IOConfig
from hmss_ray.io.volume import LimitExceeded, UnreadableVolume, library_failure

CHUNK = 1 << 20
MIB = 2**20
GZIP_MAGIC = b"\x1f\x8b"
EOCD = b"PK\x05\x06"  # zip end of central directory record
# DEFLATE's largest ratio (a 258-byte match in about 2 bits): no gzip of n bytes inflates to
# more than about 1032 n, so a header claiming more than that is refused before anything is read
MAX_DEFLATE_RATIO = 1032
MAX_DIRECTORY_BYTES_PER_ENTRY = 1024  # 46 fixed bytes + a name: generous for a DICOM file name


def check_voxels(shape: Sequence[int], itemsize: int, limits: IOConfig, what: str) -> None:
    """Refuse a grid of more than ``io.max_voxels`` voxels or ``io.max_decompressed_mb`` bytes.

    Args:
        shape: the grid as the header declares it (any number of axes).
        itemsize: bytes per voxel once decoded.
        limits: the ``io`` config section.
        what: names the input in the message.
    """
    if any(int(n) < 0 for n in shape):
        raise UnreadableVolume(f"the {what} header declares a negative size {tuple(shape)}")
    voxels = math.prod(int(n) for n in shape)
    if voxels > limits.max_voxels:
        raise LimitExceeded(
            f"the {what} has {voxels:,} voxels {tuple(int(n) for n in shape)}, over the limit "
            f"of {limits.max_voxels:,} (io.max_voxels)"
        )
    if voxels * itemsize > limits.max_bytes:
        raise LimitExceeded(
            f"the {what} needs {voxels * itemsize / MIB:,.0f} MiB decoded, over the limit of "
            f"{limits.max_decompressed_mb:g} MiB (io.max_decompressed_mb)"
        )


class BoundedReader:
    """Reads bytes that may be gzipped (one or more members), never decompressing more than
    ``limit`` bytes in all: a gzip bomb costs at most the limit, and callers that know how much
    they need (a header's data size) ask for no more than that."""

    def __init__(self, data: bytes, limit: int, what: str) -> None:
        self._data = memoryview(data)
        self._gzip = bytes(self._data[:2]) == GZIP_MAGIC
        self._pos = 0
        self._tail = b""
        self._inflate = isal_zlib.decompressobj(31)
        self.limit = limit
        self.produced = 0
        self.what = what

    @property
    def gzipped(self) -> bool:
        return self._gzip

    def read(self, size: int) -> bytes:
        """Up to ``size`` more bytes (fewer at the end of the data)."""
        if self.produced + size > self.limit:
            raise LimitExceeded(
                f"the {self.what} decompresses to more than {self.limit / MIB:,.0f} MiB "
                "(io.max_decompressed_mb)"
            )
        if not self._gzip:
            out = bytes(self._data[self._pos : self._pos + size])
            self._pos += len(out)
        else:
            out = self._inflate_up_to(size)
        self.produced += len(out)
        return out

    def read_into(self, buffer: memoryview) -> int:
        """Fill ``buffer`` with the next bytes (fewer at the end of the data); returns how many.

        The bytes land straight in ``buffer`` (a preallocated volume, say): no second copy of a
        large decompressed stream is ever held, only one ``CHUNK`` at a time.
        """
        size = len(buffer)
        if self.produced + size > self.limit:
            self.read(size)  # raises LimitExceeded with the usual message
        filled = 0
        while filled < size:
            piece = self.read(min(CHUNK, size - filled))
            if not piece:
                break
            buffer[filled : filled + len(piece)] = piece
            filled += len(piece)
        return filled

    def at_end(self) -> bool:
        if not self._gzip:
            return self._pos >= len(self._data)
        return self._inflate.eof and not self._tail.strip(b"\0") and self._pos >= len(self._data)

    def _inflate_up_to(self, size: int) -> bytes:
        parts: list[bytes] = []
        have = 0
        try:
            while have < size:
                if self._inflate.eof:  # a member ended: the next one, if any, starts in _tail
                    if not self._tail.strip(b"\0") and self._pos >= len(self._data):
                        break
                    self._inflate = isal_zlib.decompressobj(31)
                if not self._tail:
                    if self._pos >= len(self._data):
                        raise UnreadableVolume(f"the {self.what} is a truncated gzip stream")
                    self._tail = bytes(self._data[self._pos : self._pos + CHUNK])
                    self._pos += len(self._tail)
                piece = self._inflate.decompress(self._tail, size - have)
                self._tail = self._inflate.unused_data or self._inflate.unconsumed_tail
                parts.append(piece)
                have += len(piece)
        except isal_zlib.error as exc:
            raise library_failure(f"the {self.what} is not a valid gzip stream", exc) from None
        return b"".join(parts)


def read_all(data: bytes, limits: IOConfig, what: str) -> bytes:
    """All of ``data``, gunzipped when it is gzip, refused past ``io.max_decompressed_mb``."""
    reader = BoundedReader(data, limits.max_bytes + 1, what)
    out = reader.read(limits.max_bytes + 1)
    if len(out) > limits.max_bytes:
        raise LimitExceeded(
            f"the {what} decompresses to more than {limits.max_decompressed_mb:g} MiB "
            "(io.max_decompressed_mb)"
        )
    return out


def open_zip(source: BinaryIO, limits: IOConfig, what: str = "zip") -> zipfile.ZipFile:
    """A zip whose directory passed every check, before any entry is decompressed.

    Refused: more than ``io.max_files`` entries (counted from the end record first, so a huge
    directory is never parsed), an entry name that is absolute or climbs out with ``..``, an
    entry declared larger than ``io.max_file_mb``, entries declared larger in total than
    ``io.max_decompressed_mb``, encrypted entries. ``zipfile`` itself never inflates an entry past
    its declared size (a lying entry fails its CRC check instead).
    """
    _check_end_record(source, limits, what)
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise library_failure(f"the {what} is not a readable zip file", exc) from None
    entries = [info for info in archive.infolist() if not info.is_dir()]
    if len(archive.infolist()) > limits.max_files:
        raise LimitExceeded(
            f"the {what} has {len(archive.infolist())} entries, over the limit of "
            f"{limits.max_files} (io.max_files)"
        )
    total = 0
    for info in entries:
        _check_entry(info, limits, what)
        total += info.file_size
    if total > limits.max_bytes:
        raise LimitExceeded(
            f"the {what} declares {total / MIB:,.0f} MiB uncompressed, over the limit of "
            f"{limits.max_decompressed_mb:g} MiB (io.max_decompressed_mb)"
        )
    return archive


def _check_entry(info: zipfile.ZipInfo, limits: IOConfig, what: str) -> None:
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        raise UnreadableVolume(
            f"the {what} holds an entry with an unsafe path {name!r} (absolute or with '..')"
        )
    if info.flag_bits & 0x1:
        raise UnreadableVolume(f"the {what} entry {name!r} is encrypted")
    if info.file_size > limits.max_file_bytes:
        raise LimitExceeded(
            f"the {what} entry {name!r} declares {info.file_size / MIB:,.0f} MiB, over the "
            f"limit of {limits.max_file_mb:g} MiB per file (io.max_file_mb)"
        )


def _check_end_record(source: BinaryIO, limits: IOConfig, what: str) -> None:
    """Entry count and directory size from the end record, before ``zipfile`` parses it all."""
    source.seek(0, 2)
    size = source.tell()
    window = min(size, 22 + 65535)  # the record (22 bytes) and a comment of at most 64 KiB
    source.seek(size - window)
    tail = source.read(window)
    source.seek(0)
    at = tail.rfind(EOCD)
    if at < 0 or len(tail) - at < 22:
        raise UnreadableVolume(f"the {what} is not a zip file (no end of central directory)")
    entries, directory_bytes = struct.unpack("<HI", tail[at + 10 : at + 16])
    if entries == 0xFFFF or entries > limits.max_files:  # 0xFFFF: zip64, 65535+ entries
        raise LimitExceeded(
            f"the {what} has {entries} entries, over the limit of {limits.max_files} (io.max_files)"
        )
    if directory_bytes > max(entries, 1) * MAX_DIRECTORY_BYTES_PER_ENTRY:
        raise UnreadableVolume(
            f"the {what} directory ({directory_bytes} bytes) does not match its {entries} entries"
        )
