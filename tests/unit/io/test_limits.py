"""Untrusted bytes cost what the ``io`` limits allow, and are refused before large allocations."""

from __future__ import annotations

import gzip
import io
import struct
import time
import tracemalloc

import nibabel as nib
import numpy as np
import pytest

from hmss_ray.config import ConfigError, IOConfig, load_config
from hmss_ray.io import LimitExceeded, UnreadableVolume, Volume, volume_from_bytes
from hmss_ray.io.formats import Format, format_to_read, format_to_write, sniff, volume_to_bytes
from hmss_ray.io.limits import BoundedReader, open_zip
from tests.dicom_helpers import zip_bytes

LIMITS = IOConfig()


def nifti_bomb(shape: tuple[int, ...], dtype=np.uint8, zeros_mb: int = 64) -> bytes:
    """A gzip of a valid NIfTI header followed by ``zeros_mb`` MiB of zero voxels: a few hundred
    kB on the wire (gzip members concatenated, as ``gzip`` allows)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    member = gzip.compress(bytes(1 << 20), 9)
    return gzip.compress(header.binaryblock + b"\0" * 4) + member * zeros_mb


def test_voxel_bomb_is_refused_from_its_header_in_milliseconds() -> None:
    """The issue's upload: a gzip of a valid 1024^3 uint8 NIfTI."""
    bomb = nifti_bomb((1024, 1024, 1024))
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(LimitExceeded, match=r"1,073,741,824 voxels .* \(io.max_voxels\)"):
        volume_from_bytes(bomb, LIMITS, "MR")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - t0 < 1.0
    assert peak < 8 * 2**20  # the data is never inflated


def test_decompressed_bytes_are_capped_before_inflating() -> None:
    bomb = nifti_bomb((512, 512, 256), np.float32)  # 256 MiB of data, under the voxel limit
    with pytest.raises(LimitExceeded, match=r"needs 256 MiB decoded.*io.max_decompressed_mb"):
        volume_from_bytes(bomb, IOConfig(max_decompressed_mb=128, max_file_mb=64), "MR")


def test_gzip_of_zeros_is_refused_after_its_first_bytes() -> None:
    bomb = gzip.compress(bytes(1 << 20), 9) * 256  # 256 MiB of zeros, no header
    with pytest.raises(UnreadableVolume, match="no NIfTI-1 or NIfTI-2 header"):
        volume_from_bytes(bomb, LIMITS)


def test_bounded_reader_counts_across_gzip_members_and_stops_at_the_limit() -> None:
    data = gzip.compress(b"a" * 1000) + gzip.compress(b"b" * 1000)
    reader = BoundedReader(data, 5000, "x")
    assert reader.read(1500) == b"a" * 1000 + b"b" * 500
    assert reader.read(1000) == b"b" * 500 and reader.at_end()
    with pytest.raises(LimitExceeded, match="more than"):
        BoundedReader(data, 1500, "x").read(2000)
    with pytest.raises(UnreadableVolume, match="truncated gzip"):
        BoundedReader(data[:30], 5000, "x").read(2000)


@pytest.mark.parametrize(
    ("entries", "limits", "error", "words"),
    [
        ({"../../etc/cron.d/x.dcm": b"x"}, LIMITS, UnreadableVolume, "unsafe path"),
        ({"/abs/x.dcm": b"x"}, LIMITS, UnreadableVolume, "unsafe path"),
        ({"C:/x.dcm": b"x"}, LIMITS, UnreadableVolume, "unsafe path"),
        ({f"{i}.dcm": b"x" for i in range(20)}, IOConfig(max_files=9), LimitExceeded, "20 entr"),
        ({"big.dcm": bytes(3 << 20)}, IOConfig(max_file_mb=2), LimitExceeded, "per file"),
        (
            {f"{i}.dcm": bytes(2 << 20) for i in range(3)},
            IOConfig(max_decompressed_mb=4, max_file_mb=4),
            LimitExceeded,
            "declares 6 MiB uncompressed",
        ),
        ({f"{i}.txt": b"garbage" for i in range(3)}, LIMITS, UnreadableVolume, "3 not DICOM"),
    ],
)
def test_zip_checks(entries, limits, error, words) -> None:
    with pytest.raises(error) as caught:
        volume_from_bytes(zip_bytes(entries), limits, "MR")
    assert words in str(caught.value)


def test_zip_directory_larger_than_its_declared_entries_is_refused_unparsed() -> None:
    data = bytearray(zip_bytes({"a.dcm": b"x"}))
    end = data.rfind(b"PK\x05\x06")
    data[end + 8 : end + 12] = struct.pack("<HH", 50000, 50000)  # entries on disk / in all
    with pytest.raises(LimitExceeded, match="50000 entries"):
        open_zip(io.BytesIO(bytes(data)), LIMITS)


def test_an_entry_lying_about_its_size_fails_its_crc() -> None:
    data = bytearray(zip_bytes({"a.dcm": bytes(1000)}))
    at = data.find(b"PK\x01\x02")  # central directory: declare 10 bytes instead of 1000
    data[at + 24 : at + 28] = struct.pack("<I", 10)
    archive = open_zip(io.BytesIO(bytes(data)), LIMITS)
    with pytest.raises(Exception, match=r"CRC|Bad"):
        archive.read("a.dcm")


def test_metaimage_upload_must_carry_its_own_data(tmp_path) -> None:
    header = b"ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_UCHAR\n"
    with pytest.raises(UnreadableVolume, match="ElementDataFile = LOCAL"):
        volume_from_bytes(header + b"ElementDataFile = /etc/hostname\n", LIMITS)
    nrrd = b"NRRD0004\ntype: uchar\ndimension: 3\nsizes: 4 4 4\ndata file: /etc/hostname\n\n"
    with pytest.raises(UnreadableVolume, match="separate data file"):
        volume_from_bytes(nrrd, LIMITS)
    bomb = header.replace(b"4 4 4", b"2048 2048 2048") + b"ElementDataFile = LOCAL\n" + bytes(64)
    with pytest.raises(LimitExceeded, match=r"io\.max_voxels"):
        volume_from_bytes(bomb, LIMITS)


@pytest.mark.parametrize("fmt", list(Format))
def test_every_format_round_trips_through_bytes(fmt: Format) -> None:
    rng = np.random.default_rng(0)
    volume = Volume(rng.integers(-1000, 2000, (9, 8, 7)).astype(np.int16), np.diag([1, 2, 3, 1.0]))
    data = volume_to_bytes(volume, fmt)
    assert sniff(data[:1024]) is fmt
    back = volume_from_bytes(data, LIMITS)
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.affine, volume.affine)


def test_formats_by_path(tmp_path) -> None:
    assert format_to_write(tmp_path / "sct.nii.gz") is Format.NIFTI
    assert format_to_write(tmp_path / "sct.mhd") is Format.MHA
    assert format_to_write(tmp_path / "series") is Format.DICOM
    assert format_to_write(tmp_path / "series.zip") is Format.DICOM
    tiny = Volume(np.zeros((2, 2, 2)), np.eye(4))
    (tmp_path / "mr.img").write_bytes(volume_to_bytes(tiny, "mha"))
    assert format_to_read(tmp_path / "mr.img") is Format.MHA  # unknown suffix: by its bytes
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UnreadableVolume, match="not a recognised volume format"):
        format_to_read(tmp_path / "notes.txt")


def test_io_limits_are_config_keys_with_range_checks() -> None:
    assert load_config(None, ["io.max_voxels=1000"]).io.max_voxels == 1000
    with pytest.raises(ConfigError, match=r"io\.max_file_mb"):
        load_config(None, ["io.max_file_mb=4096"])
    with pytest.raises(ConfigError, match=r"io\.max_files"):
        load_config(None, ["io.max_files=0"])
