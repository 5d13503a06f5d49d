"""Issue 18: NIfTI uploads and answers without whole-volume copies, byte for byte what nibabel
reads and writes."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from hmss_ray.config import IOConfig
from hmss_ray.io import LimitExceeded, UnreadableVolume, Volume, volume_from_bytes
from hmss_ray.io.geometry import Contract, Grid, GridMap
from hmss_ray.io.limits import BoundedReader
from hmss_ray.io.nifti import nifti_bytes, to_nifti

AFFINE = np.diag([-0.9, -0.9, 2.0, 1.0])


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("level", [0, 1])
def test_answer_is_nibabels_nifti_in_a_valid_gzip(dtype, order, level) -> None:
    rng = np.random.default_rng(0)
    array = np.asarray(rng.integers(-1024, 3000, (33, 20, 70)), dtype=dtype, order=order)
    volume = Volume(array, AFFINE)
    body = nifti_bytes(volume, level)
    assert gzip.decompress(body) == to_nifti(volume).to_bytes()  # any gzip reader takes it
    back = volume_from_bytes(body, IOConfig())
    assert back.array.dtype == dtype
    np.testing.assert_array_equal(back.array, array)
    if level == 0:  # stored: no compression, a few bytes per 64 KiB block
        assert len(body) >= array.nbytes


def test_gzip_upload_is_inflated_into_the_buffer_the_voxels_view() -> None:
    array = np.arange(40 * 30 * 20, dtype=np.int16).reshape(40, 30, 20)
    body = gzip.compress(nib.Nifti1Image(array, AFFINE).to_bytes(), compresslevel=1)
    volume = volume_from_bytes(body, IOConfig())
    assert volume.array.dtype == np.int16 and volume.array.flags.f_contiguous
    assert not volume.array.flags.owndata  # a view: no second copy of the voxels
    np.testing.assert_array_equal(volume.array, array)
    truncated = body[: len(body) // 2]
    with pytest.raises(UnreadableVolume, match="truncated"):
        volume_from_bytes(truncated, IOConfig())


@pytest.mark.parametrize("level", [1, 6, 9])
def test_isal_inflates_what_stdlib_gzip_wrote_and_refuses_what_it_refuses(level) -> None:
    # uploads are inflated with ISA-L (hmss_ray.io.limits): any gzip a scanner or Python writes,
    # several members included, gives the voxels stdlib gzip gives; a bad CRC is still refused
    array = np.random.default_rng(level).integers(0, 2000, (24, 20, 16)).astype(np.int16)
    raw = nib.Nifti1Image(array, AFFINE).to_bytes()
    half = len(raw) // 2
    for body in (
        gzip.compress(raw, level),
        gzip.compress(raw[:half], level) + gzip.compress(raw[half:], level),
    ):
        assert gzip.decompress(body) == raw
        np.testing.assert_array_equal(volume_from_bytes(body, IOConfig()).array, array)
    corrupt = bytearray(gzip.compress(raw, level))
    corrupt[-6] ^= 0xFF  # the trailer's CRC-32
    with pytest.raises(UnreadableVolume, match="not a valid gzip stream"):
        volume_from_bytes(bytes(corrupt), IOConfig())


def test_read_into_fills_a_buffer_and_keeps_the_limit() -> None:
    data = bytes(range(256)) * 5000
    reader = BoundedReader(gzip.compress(data), 2 << 20, "MR")
    buffer = bytearray(len(data))
    assert reader.read_into(memoryview(buffer)) == len(data) and bytes(buffer) == data
    with pytest.raises(LimitExceeded, match=r"io\.max_decompressed_mb"):
        BoundedReader(gzip.compress(data), 1000, "MR").read_into(memoryview(buffer))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.9, 0.9, 2.5)])
def test_inverse_in_fortran_layout_gives_the_same_values(spacing) -> None:
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    gmap = GridMap.plan(Grid((30, 26, 12), affine), Contract("RAS", (1.0, 1.0, 1.0)))
    rng = np.random.default_rng(1)
    contract = rng.normal(0, 500, gmap.target.shape).astype(np.float32)
    c = gmap.inverse(contract, order=1, cval=-1000, dtype=np.int16)
    f = gmap.inverse(contract, order=1, cval=-1000, dtype=np.int16, layout="F")
    assert f.flags.f_contiguous and c.flags.c_contiguous
    np.testing.assert_array_equal(c, f)
