"""Volumes keep their geometry through every format: NIfTI, MetaImage, NRRD."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from hmss_ray.io import UnreadableVolume, Volume, read_volume, write_volume

# an oblique, anisotropic grid: 10 degrees about z, 0.9 x 0.9 x 3 mm, storage axes flipped
ANGLE = np.deg2rad(10)
ROTATION = np.array(
    [[np.cos(ANGLE), -np.sin(ANGLE), 0], [np.sin(ANGLE), np.cos(ANGLE), 0], [0, 0, 1]]
)
AFFINE = np.eye(4)
AFFINE[:3, :3] = ROTATION @ np.diag([-0.9, 0.9, -3.0])
AFFINE[:3, 3] = [12.5, -40.0, 7.25]


def _volume() -> Volume:
    rng = np.random.default_rng(0)
    return Volume(rng.integers(-1000, 2000, (7, 9, 5)).astype(np.int16), AFFINE.copy())


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".mhd", ".nrrd"])
def test_every_format_round_trips_voxels_and_geometry(tmp_path: Path, suffix: str) -> None:
    volume = _volume()
    path = write_volume(volume, tmp_path / f"v{suffix}")
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-5)
    assert back.spacing == pytest.approx((0.9, 0.9, 3.0))


def test_metaimage_geometry_matches_nibabel_world_coordinates(tmp_path: Path) -> None:
    """The same voxel lands on the same RAS point whether read from NIfTI or MetaImage."""
    volume = _volume()
    nib.save(nib.Nifti1Image(volume.array, AFFINE), tmp_path / "v.nii.gz")
    write_volume(read_volume(tmp_path / "v.nii.gz"), tmp_path / "v.mha")
    from_mha = read_volume(tmp_path / "v.mha")
    voxel = np.array([3, 4, 2, 1.0])
    np.testing.assert_allclose(from_mha.affine @ voxel, AFFINE @ voxel, atol=1e-5)


def test_unreadable_files_say_so(tmp_path: Path) -> None:
    for name in ("bad.nii.gz", "bad.mha"):
        (tmp_path / name).write_bytes(b"this is not an image\n" * 8)
        with pytest.raises(UnreadableVolume, match="not a readable volume"):
            read_volume(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        read_volume(tmp_path / "missing.mha")
