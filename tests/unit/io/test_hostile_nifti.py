"""Hostile NIfTI uploads: every allocation bounded by the bytes sent; bad geometry is a 4xx.

Peak memory is measured in a fresh interpreter (Linux ``VmHWM``, reset before the read), so
that what this test process allocated before cannot hide a growth.
"""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from hmss_ray.config import IOConfig
from hmss_ray.io import UnreadableVolume, volume_from_bytes

LIMITS = IOConfig(max_decompressed_mb=10, max_file_mb=10)


def _nii(*edits: tuple[int, str, object], shape=(8, 8, 8)) -> bytes:
    """A small int16 NIfTI-1 with header fields overwritten: (byte offset, struct format, value)."""
    raw = bytearray(nib.Nifti1Image(np.ones(shape, np.int16), np.eye(4)).to_bytes())
    for offset, fmt, value in edits:
        struct.pack_into(fmt, raw, offset, *(value if isinstance(value, tuple) else (value,)))
    return bytes(raw)


VOX_OFFSET, PIXDIM, QFORM_CODE, SFORM_CODE, SROW_X, SCL_SLOPE = 108, 80, 252, 254, 280, 112
NO_FORMS = ((QFORM_CODE, "<h", 0), (SFORM_CODE, "<h", 0))

# the peak is reset first (a child's peak starts at its parent's, from before its exec)
PEAK_SCRIPT = """
import sys
from hmss_ray.config import IOConfig
from hmss_ray.io import volume_from_bytes
import hmss_ray.io.nifti, hmss_ray.io.dicom_read, hmss_ray.io.itk  # their imports: not counted
def kib(key):
    status = open("/proc/self/status").read().split(key + ":")[1]
    return int(status.split()[0])
data = open(sys.argv[1], "rb").read()
open("/proc/self/clear_refs", "w").write("5")
before = kib("VmRSS")
try:
    volume_from_bytes(data, IOConfig(max_decompressed_mb=512, max_file_mb=64), "MR")
except Exception as exc:
    print(type(exc).__name__, file=sys.stderr)
print((kib("VmHWM") - before) // 1024)
"""


def _peak_growth_mib(data: bytes, tmp_path: Path) -> int:
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    done = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "UnreadableVolume" in done.stderr or "LimitExceeded" in done.stderr
    return int(done.stdout.split()[-1])


@pytest.mark.parametrize("vox_offset", [400 * 2**20, 100 * 2**20])
def test_tiny_gzip_with_a_huge_vox_offset_allocates_nothing(tmp_path, vox_offset) -> None:
    """Before: a 77-byte .nii.gz with vox_offset 400 MiB allocated +402 MiB."""
    data = gzip.compress(_nii((VOX_OFFSET, "<f", float(vox_offset))))
    assert len(data) < 200
    with pytest.raises(UnreadableVolume, match="truncated"):
        volume_from_bytes(data, LIMITS, "MR")
    assert _peak_growth_mib(data, tmp_path) < 16


def test_gzip_claiming_more_voxels_than_it_holds_grows_only_with_real_data(tmp_path) -> None:
    """A 512^2 x 256 float32 header (256 MiB) with 8 MiB of zeros: memory follows the 8 MiB."""
    head = bytearray(_nii(shape=(512, 512, 256))[:352])
    struct.pack_into("<hh", head, 70, 16, 32)  # datatype float32, bitpix 32
    data = gzip.compress(bytes(head) + bytes(8 * 2**20), 1)
    assert _peak_growth_mib(data, tmp_path) < 40


@pytest.mark.parametrize(
    ("edits", "words"),
    [
        (((VOX_OFFSET, "<f", float("nan")),), "not a readable NIfTI"),
        (((VOX_OFFSET, "<f", float("inf")),), "not a readable NIfTI"),
        (((PIXDIM + 4, "<3f", (float("nan"),) * 3), *NO_FORMS), "not finite"),
        (((SROW_X, "<f", float("nan")),), "not finite"),
        (((SROW_X, "<3f", (0.0,) * 3),), "voxel sizes|degenerate"),  # sform's first column zero
        (((PIXDIM + 4, "<f", 1e9), *NO_FORMS), "voxel sizes"),
        (((344, "4s", b"ni1\0"),), "pair"),
        (((70, "<h", 128), (72, "<h", 24)), "voxels: send integer"),  # RGB
        (((70, "<h", 1792), (72, "<h", 128)), "voxels: send integer"),  # complex128
    ],
)
def test_malformed_nifti_is_a_4xx(edits, words) -> None:
    for data in (_nii(*edits), gzip.compress(_nii(*edits))):
        with pytest.raises(UnreadableVolume, match=words) as caught:
            volume_from_bytes(data, LIMITS, "MR")
        assert "nibabel" not in str(caught.value) and "Error" not in str(caught.value)


def test_scaled_upload_is_float32_with_the_scale_applied() -> None:
    data = _nii((SCL_SLOPE, "<f", 2.0), (116, "<f", -5.0))  # scl_slope, scl_inter
    volume = volume_from_bytes(data, LIMITS, "MR")
    assert volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array, np.full((8, 8, 8), -3.0, np.float32))
