"""MetaImage (``.mha``, ``.mhd``) and NRRD through SimpleITK, geometry converted LPS <-> RAS.

ITK describes a grid in LPS+ world coordinates (origin, spacing, direction); NIfTI affines and
:class:`~hmss_ray.io.volume.Volume` use RAS+. Flipping the x and y axes converts one to the other:
``affine = F @ [direction @ diag(spacing) | origin]`` with ``F = diag(-1, -1, 1)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hmss_ray.io.volume import UnreadableVolume, Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")


def affine_from_itk(image) -> np.ndarray:
    """The RAS+ 4x4 affine of a SimpleITK image (voxel index (x, y, z) -> world mm)."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = LPS_TO_RAS @ direction @ np.diag(spacing)
    affine[:3, 3] = LPS_TO_RAS @ np.asarray(image.GetOrigin(), dtype=np.float64)
    return affine


def set_itk_geometry(image, affine: np.ndarray) -> None:
    """Give a SimpleITK image the grid of a RAS+ affine (origin, spacing, direction in LPS)."""
    linear = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)[:3, :3]
    spacing = np.sqrt((linear**2).sum(axis=0))
    image.SetSpacing([float(v) for v in spacing])
    image.SetDirection([float(v) for v in (linear / spacing).ravel()])
    image.SetOrigin([float(v) for v in LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)[:3, 3]])


def read_itk(path: str | Path) -> Volume:
    """A MetaImage or NRRD file as a :class:`Volume` (array in (x, y, z) order)."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:  # SimpleITK reports every reader failure as RuntimeError
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise UnreadableVolume(f"{path}: not a readable volume ({first})") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise UnreadableVolume(
            f"{path}: not a 3D scalar volume ({image.GetDimension()}D, "
            f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel)"
        )
    array = np.ascontiguousarray(sitk.GetArrayFromImage(image).transpose(2, 1, 0))
    return Volume(array, affine_from_itk(image))


def write_itk(volume: Volume, path: str | Path, compress: bool = True) -> Path:
    """Write ``volume`` as MetaImage or NRRD (chosen by the suffix), geometry kept."""
    import SimpleITK as sitk

    zyx = np.ascontiguousarray(np.asarray(volume.array).transpose(2, 1, 0))
    image = sitk.GetImageFromArray(zyx)
    set_itk_geometry(image, volume.affine)
    sitk.WriteImage(image, str(path), useCompression=compress)
    return Path(path)
