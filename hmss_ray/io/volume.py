"""The :class:`Volume` record and NIfTI reading/writing."""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from hmss_ray.config import UserError


class UnreadableVolume(UserError):
    """A file that is not a readable volume of a supported format; the message says why."""


@dataclass
class Volume:
    """A 3D image on a grid.

    Attributes:
        array: voxels, (X, Y, Z) in storage order.
        affine: 4x4, voxel index -> RAS+ world millimetres.
        meta: what a writer may carry over from the source (e.g. ``"nifti_header"``).
    """

    array: np.ndarray
    affine: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.array.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size (mm) along each array axis."""
        zooms = np.sqrt((np.asarray(self.affine)[:3, :3] ** 2).sum(axis=0))
        return (float(zooms[0]), float(zooms[1]), float(zooms[2]))

    def like(self, array: np.ndarray) -> Volume:
        """Another image on this grid (same affine and carried metadata)."""
        return Volume(array, self.affine.copy(), dict(self.meta))


def read_volume(path: str | Path) -> Volume:
    """A volume file with its data read and its geometry: NIfTI (``.nii``, ``.nii.gz``),
    MetaImage (``.mha``, ``.mhd``) or NRRD (``.nrrd``, ``.nhdr``)."""
    if not Path(path).exists():
        raise FileNotFoundError(2, "no such file", str(path))
    if _is_itk(path):
        from hmss_ray.io.itk import read_itk

        return read_itk(path)
    try:
        image = nib.load(str(path))
        array = np.asanyarray(image.dataobj)  # read now: a truncated file fails here, not later
    except Exception as exc:  # nibabel raises ImageFileError, EOFError, zlib.error, ...
        why = f"{type(exc).__name__}: {exc}"
        raise UnreadableVolume(f"{path}: not a readable volume ({why})") from None
    return Volume(array, np.asarray(image.affine, dtype=np.float64), {"nifti_header": image.header})


def nifti_from_bytes(data: bytes, what: str = "volume") -> Volume:
    """Bytes of a ``.nii``/``.nii.gz`` -> :class:`Volume` (data read now: truncation shows here)."""
    try:
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        image = nib.Nifti1Image.from_bytes(data)
        array = np.asanyarray(image.dataobj)
    except Exception as exc:  # untrusted bytes: any failure to parse means "not a NIfTI"
        raise UnreadableVolume(f"the {what} is not a readable NIfTI file: {exc}") from exc
    return Volume(array, np.asarray(image.affine, dtype=np.float64), {"nifti_header": image.header})


def nifti_bytes(volume: Volume, compresslevel: int = 1) -> bytes:
    """``volume`` as gzipped NIfTI bytes (level 1: most of the size gain for little CPU)."""
    return gzip.compress(to_nifti(volume).to_bytes(), compresslevel=compresslevel)


def to_nifti(volume: Volume) -> nib.Nifti1Image:
    """``volume`` as a NIfTI image; a source NIfTI header's geometry fields are kept."""
    source = volume.meta.get("nifti_header")
    header = source.copy() if source is not None else None
    image = nib.Nifti1Image(volume.array, volume.affine, header)
    image.header.set_data_dtype(volume.array.dtype)
    if source is None:
        image.header.set_qform(volume.affine, code=1)
        image.header.set_sform(volume.affine, code=1)
    image.header.set_slope_inter(1, 0)
    return image


def write_volume(volume: Volume, path: str | Path) -> Path:
    """Write ``volume`` in the format its suffix names (NIfTI, MetaImage or NRRD)."""
    if _is_itk(path):
        from hmss_ray.io.itk import write_itk

        return write_itk(volume, path)
    nib.save(to_nifti(volume), str(path))
    return Path(path)


def _is_itk(path: str | Path) -> bool:
    return str(path).lower().endswith((".mha", ".mhd", ".nrrd", ".nhdr"))
