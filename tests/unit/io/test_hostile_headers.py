"""Uploads whose NRRD / MetaImage header names a server file: never read, whatever the spelling.

Each case puts a secret in a file on this machine and names it in an upload; the reader must
refuse (or read only the upload's own inline data), and the secret must not appear in the error.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from hmss_ray.config import IOConfig
from hmss_ray.io import UnreadableVolume, volume_from_bytes
from hmss_ray.io.text_header import parse_metaimage, parse_nrrd

LIMITS = IOConfig(max_decompressed_mb=16, max_voxels=2**20, max_file_mb=8)
SECRET = "TOKEN-" + "7" * 40
INLINE = bytes(range(64))  # a 4x4x4 uint8 volume


@pytest.fixture
def secret(tmp_path: Path) -> bytes:
    """A server file of 64 ASCII bytes (a 4x4x4 uint8 volume if read raw), and its path."""
    path = tmp_path / "secret.txt"
    path.write_text(SECRET + "X" * (64 - len(SECRET)))
    return str(path).encode()


def _nrrd(fields: bytes, padding: int = 0, data: bytes = b"") -> bytes:
    head = b"NRRD0004\n" + b"# padding comment\n" * padding
    head += b"type: uchar\ndimension: 3\nsizes: 4 4 4\nencoding: raw\n"
    return head + fields + b"\n" + data


def _mha(data_file: bytes, padding: int = 0, data: bytes = b"") -> bytes:
    head = b"ObjectType = Image\n" + b"Comment = padding\n" * padding
    head += b"NDims = 3\nDimSize = 4 4 4\nElementType = MET_UCHAR\n"
    return head + data_file + b"\n" + data


def _refused(data: bytes, words: str) -> None:
    with pytest.raises(UnreadableVolume, match=words) as caught:
        volume_from_bytes(data, LIMITS, "MR")
    assert SECRET not in str(caught.value) and "TOKEN" not in str(caught.value)


@pytest.mark.parametrize(
    "line",
    [
        b"data file: %s\n",
        b"datafile: %s\n",
        b"DATA FILE: %s\n",
        b"Data_File: %s\n",
        b"  data   file : %s\n",
        b"data file: LIST\n%s\n",
        b"data file: %s%%d 1 1 1\n",
    ],
)
@pytest.mark.parametrize("padding", [0, 3000])  # 3000 comment lines: 54 KB, past the old 64 KiB
def test_nrrd_naming_a_data_file_is_refused(secret: bytes, line: bytes, padding: int) -> None:
    _refused(_nrrd(line.replace(b"%s", secret), padding), "separate data file")


def test_nrrd_header_longer_than_64_kib_is_refused_unread(secret: bytes) -> None:
    _refused(_nrrd(b"data file: " + secret + b"\n", padding=4000), "no end in its first 64 KiB")


def test_nrrd_key_value_pair_naming_a_file_is_not_followed(secret: bytes) -> None:
    """``key:=value`` pairs are dropped: the volume is the upload's own inline bytes."""
    volume = volume_from_bytes(_nrrd(b"data file:=" + secret + b"\n", data=INLINE), LIMITS, "MR")
    assert volume.array.tobytes(order="F") == INLINE


def test_rewritten_nrrd_header_carries_nothing_but_numbers_and_names(secret: bytes) -> None:
    data = _nrrd(b"content: " + secret + b"\nspace: RAS\nspace directions: (1,0,0) (0,2,0) "
                 b"(0,0,3)\nspace origin: (1, 2, 3)\nendian: little\n", data=INLINE)  # fmt: skip
    header = parse_nrrd(data)
    assert secret not in header.text and b"#" not in header.text
    assert data[header.data_offset :] == INLINE
    volume = volume_from_bytes(data, LIMITS, "MR")
    np.testing.assert_allclose(volume.affine[:3, 3], [1, 2, 3])  # RAS origin kept as RAS


@pytest.mark.parametrize(
    "line",
    [
        b"ElementDataFile = %s",
        b"elementdatafile = %s",
        b"ElementDataFile=%s",
        b"ElementDataFile = LIST\n%s",
        b"ElementDataFile = %s%%03d.raw 1 4 1",
    ],
)
@pytest.mark.parametrize("padding", [0, 3000])
def test_metaimage_naming_a_data_file_is_refused(secret: bytes, line: bytes, padding: int) -> None:
    _refused(_mha(line.replace(b"%s", secret), padding), "ElementDataFile = LOCAL")


def test_metaimage_without_a_data_line_in_64_kib_is_refused(secret: bytes) -> None:
    _refused(_mha(b"Comment = x", padding=5000), "no end in its first 64 KiB")


def test_metaimage_fields_that_skip_or_name_bytes_are_dropped(secret: bytes) -> None:
    """HeaderSize (skip to the end of the file) and comments are never handed to ITK."""
    data = _mha(b"HeaderSize = -1\nName = " + secret + b"\nElementDataFile = LOCAL", data=INLINE)
    header = parse_metaimage(data)
    assert b"HeaderSize" not in header.text and secret not in header.text
    volume = volume_from_bytes(data, LIMITS, "MR")
    assert volume.array.tobytes(order="F") == INLINE


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (_nrrd(b"", data=INLINE[:10]), "truncated"),
        (_mha(b"ElementDataFile = LOCAL", data=INLINE[:10]), "truncated"),
        (_nrrd(b"space directions: (nan,0,0) (0,1,0) (0,0,1)\nspace: RAS\n"), "malformed"),
        (_nrrd(b"encoding: ascii\n").replace(b"encoding: raw\n", b""), "malformed"),
        (_nrrd(b"space: RAS\nspace origin: (1,2,3)\n", data=INLINE), "malformed"),
        (_mha(b"BinaryData = False\nElementDataFile = LOCAL", data=b"1 " * 64), "malformed"),
        (_mha(b"ElementSpacing = 1 1\nElementDataFile = LOCAL", data=INLINE), "malformed"),
    ],
)
def test_malformed_headers_get_a_fixed_message(data: bytes, words: str) -> None:
    _refused(data, words)


def test_itk_failure_detail_stays_out_of_the_message(caplog: pytest.LogCaptureFixture) -> None:
    """gzip data shorter than the grid: ITK's own words are logged by type only, never returned."""
    data = _nrrd(b"", data=gzip.compress(INLINE[:10])).replace(b"encoding: raw", b"encoding: gz")
    with pytest.raises(UnreadableVolume) as caught:
        volume_from_bytes(data, LIMITS, "MR")
    assert str(caught.value) == "the MR: its voxel data is truncated or corrupt"
    assert "itk" not in caplog.text.lower().replace("runtimeerror", "")


@pytest.mark.parametrize("fmt", ["nrrd", "mha"])
def test_compressed_data_claiming_more_than_deflate_can_hold_is_refused_unallocated(fmt) -> None:
    """A 256^3 int16 grid (32 MiB) from 20 bytes of gzip: refused before ITK allocates it."""
    tiny = gzip.compress(b"")
    if fmt == "nrrd":
        data = _nrrd(b"", data=tiny).replace(b"encoding: raw", b"encoding: gzip")
        data = data.replace(b"type: uchar", b"type: short").replace(b"4 4 4", b"256 256 256")
    else:
        data = _mha(b"CompressedData = True\nElementDataFile = LOCAL", data=tiny)
        data = data.replace(b"MET_UCHAR", b"MET_SHORT").replace(b"4 4 4", b"256 256 256")
    limits = IOConfig(max_decompressed_mb=64, max_voxels=2**25, max_file_mb=8)
    with pytest.raises(UnreadableVolume, match="truncated"):
        volume_from_bytes(data, limits, "MR")
