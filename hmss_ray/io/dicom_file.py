"""One untrusted DICOM file parsed at a bounded cost, or refused with a fixed message.

pydicom parses whatever a file holds: a file of 524k empty elements costs 25 times its size and
0.6 s per MiB, and a Deflated Explicit VR Little Endian file is inflated whole, however large it
grows. So every file is read into memory first (at most ``io.max_file_mb``, a zip entry's CRC
checked), its File Meta group is read by :func:`transfer_syntax` before pydicom sees the dataset
(a deflated dataset is refused), and pydicom reads through :class:`CountedReads`, which stops it
after ``io.max_dicom_elements`` elements' worth of reads. No message of pydicom's or zipfile's
reaches the client: they can quote element values and member names (patient data).
"""

from __future__ import annotations

import io
import struct
from typing import Any

from hmss_ray.config import IOConfig
from hmss_ray.io.volume import LimitExceeded, UnreadableVolume, library_failure

DEFLATED = "1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian (PS3.5 A.5)
# explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2)
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT"}
LONG_VRS |= {b"UV"}
# pydicom reads a tag+VR+length, a long length for some VRs, then the value: 1 read for an empty
# element, 2 or 3 otherwise; shipped files take ~2 (CT_small: 258 elements, 534 reads)
READS_PER_ELEMENT = 2


class NotDicom(Exception):
    """Not a DICOM file (no ``DICM`` preamble): skipped when beside a series."""


# a series may parse this many times io.max_dicom_elements in all (both passes): 1M elements,
# about 15 s, by default; a real 500-slice MR series has 150k-500k
SERIES_ELEMENTS_FACTOR = 100


class Budget:
    """The reads that parsing one upload's DICOM files may still make, all files together."""

    def __init__(self, limits: IOConfig) -> None:
        self.total = limits.max_dicom_elements * READS_PER_ELEMENT * SERIES_ELEMENTS_FACTOR
        self.left = self.total


class CountedReads(io.BytesIO):
    """A file whose ``read`` refuses to be called more than ``limit`` times, or past what the
    series' ``budget`` has left: pydicom's parsing cost is a few reads per element, so this caps
    elements (nested sequences included) per file and per upload."""

    def __init__(self, data: bytes, limit: int, budget: Budget) -> None:
        super().__init__(data)
        self.limit = limit
        self.reads = 0
        self.budget = budget

    def read(self, size: int | None = -1, /) -> bytes:
        self.reads += 1
        self.budget.left -= 1
        if self.reads > self.limit:
            raise LimitExceeded(
                f"a DICOM file holds more than {self.limit // READS_PER_ELEMENT:,} data "
                "elements (io.max_dicom_elements)"
            )
        if self.budget.left < 0:
            raise LimitExceeded(
                f"the DICOM files hold more than {self.budget.total // READS_PER_ELEMENT:,} data "
                f"elements in all ({SERIES_ELEMENTS_FACTOR} x io.max_dicom_elements)"
            )
        return super().read(size)


def member_bytes(opener, limits: IOConfig, where: str) -> bytes:
    """A file's bytes (a zip entry inflated and CRC-checked), at most ``io.max_file_mb``."""
    try:
        with opener() as handle:
            data = handle.read(limits.max_file_bytes + 1)
    except Exception as exc:  # zipfile: BadZipFile (CRC), zlib.error, EOFError, ValueError, ...
        raise library_failure(
            f"{where} holds a file that is corrupt (bad CRC or truncated)", exc
        ) from None
    if len(data) > limits.max_file_bytes:
        raise LimitExceeded(
            f"{where} holds a file over the limit of {limits.max_file_mb:g} MiB per file "
            "(io.max_file_mb)"
        )
    return data


def transfer_syntax(data: bytes) -> str | None:
    """The File Meta group's TransferSyntaxUID, read by us (pydicom would inflate a deflated
    dataset before anything else); raises :class:`NotDicom` without the ``DICM`` preamble."""
    if data[128:132] != b"DICM":
        raise NotDicom
    at = 132
    while at + 12 <= len(data):  # a truncated group: pydicom will say it is unreadable
        group, element = struct.unpack_from("<HH", data, at)
        if group != 0x0002:
            return None
        vr = data[at + 4 : at + 6]
        if vr in LONG_VRS:
            (length,) = struct.unpack_from("<I", data, at + 8)
            start = at + 12
        else:
            (length,) = struct.unpack_from("<H", data, at + 6)
            start = at + 8
        if element == 0x0010:
            return data[start : start + length].decode("ascii", "replace").strip("\0 ")
        at = start + length
    return None


def parse(data: bytes, limits: IOConfig, where: str, pixels: bool, budget: Budget) -> Any:
    """The dataset of one DICOM file (``pixels``: with its pixel data), within the limits.

    Raises:
        NotDicom: no ``DICM`` preamble.
        LimitExceeded: more elements than ``io.max_dicom_elements``, or than ``budget`` has.
        UnreadableVolume: a deflated dataset, or pydicom cannot parse it (a fixed message).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    if transfer_syntax(data) == DEFLATED:
        raise UnreadableVolume(
            f"{where} holds a file in the Deflated Explicit VR Little Endian transfer syntax, "
            "which this server does not inflate: export the series uncompressed"
        )
    handle = CountedReads(data, limits.max_dicom_elements * READS_PER_ELEMENT, budget)
    try:
        return pydicom.dcmread(handle, stop_before_pixels=not pixels)
    except LimitExceeded:
        raise
    except InvalidDicomError:
        raise NotDicom from None
    except Exception as exc:  # pydicom raises many types on malformed input
        raise library_failure(f"{where} holds a DICOM file pydicom cannot parse", exc) from None


def frame_size(frame: bytes) -> tuple[int, int] | None:
    """(rows, columns) that a compressed frame's own header declares (JPEG / JPEG-LS SOF,
    JPEG 2000 SIZ), or None when not found: decoders allocate what it says, not what the DICOM
    header says."""
    if frame[:4] == b"\xff\x4f\xff\x51" and len(frame) >= 24:  # J2K: SOC then SIZ
        xsiz, ysiz, xo, yo = struct.unpack_from(">IIII", frame, 8)
        return max(ysiz - yo, 0), max(xsiz - xo, 0)
    at = 2 if frame[:2] == b"\xff\xd8" else -1  # JPEG: SOI, then marker segments
    while at >= 0 and at + 9 <= len(frame) and frame[at] == 0xFF:
        marker = frame[at + 1]
        if marker in SOF_MARKERS:
            rows, columns = struct.unpack_from(">HH", frame, at + 5)
            return rows, columns
        (length,) = struct.unpack_from(">H", frame, at + 2)
        at += 2 + length
    return None


# start-of-frame markers: baseline .. lossless (not DHT C4, JPG C8, DAC CC), and JPEG-LS F7
SOF_MARKERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}
