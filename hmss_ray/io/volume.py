"""The :class:`Volume` record and the errors every reader raises."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from hmss_ray.config import UserError

log = logging.getLogger("hmss_ray.io")


class UnreadableVolume(UserError):
    """A file that is not a readable volume of a supported format; the message says why."""


class LimitExceeded(UnreadableVolume):
    """Reading would cost more than an ``io.*`` limit allows (HTTP 413); nothing large was read."""


class SeriesError(UnreadableVolume):
    """DICOM files that do not make one volume (several series, gaps, mixed planes): HTTP 422."""


def library_failure(message: str, exc: BaseException) -> UnreadableVolume:
    """Our fixed ``message`` for a reader library's failure (ITK, pydicom, nibabel, zlib).

    The library's own words never reach the client: they can quote the upload (header text, a
    zip member's name, a file the header named). The server log gets the message and the
    exception's type only, for the same reason.
    """
    log.warning("%s [%s.%s]", message, type(exc).__module__, type(exc).__name__)
    return UnreadableVolume(message)


MIN_SPACING_MM, MAX_SPACING_MM = 1e-4, 1e4  # 0.1 micrometre .. 10 m per voxel
MAX_COORDINATE_MM = 1e7


def check_affine(affine: ArrayLike, what: str) -> np.ndarray:
    """``affine`` as float64 4x4 when it is a usable grid, else :class:`UnreadableVolume`:
    finite, voxel sizes from ``MIN_SPACING_MM`` to ``MAX_SPACING_MM``, axes not (nearly)
    parallel, origin within ``MAX_COORDINATE_MM``."""
    matrix = np.asarray(affine, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        raise UnreadableVolume(f"{what} has a voxel-to-world geometry that is not finite")
    linear = matrix[:3, :3]
    spacing = np.sqrt((linear**2).sum(axis=0))
    if spacing.min() < MIN_SPACING_MM or spacing.max() > MAX_SPACING_MM:
        raise UnreadableVolume(
            f"{what} has voxel sizes {tuple(round(float(v), 6) for v in spacing)} mm, outside "
            f"{MIN_SPACING_MM:g}..{MAX_SPACING_MM:g} mm"
        )
    if (
        abs(np.linalg.det(linear / spacing)) < 1e-3
        or np.abs(matrix[:3, 3]).max() > MAX_COORDINATE_MM
    ):
        raise UnreadableVolume(f"{what} has a degenerate voxel-to-world geometry (singular axes)")
    return matrix


@dataclass
class Volume:
    """A 3D image on a grid.

    Attributes:
        array: voxels, (X, Y, Z) in storage order.
        affine: 4x4, voxel index -> RAS+ world millimetres.
        meta: what a writer may carry over from the source (``"nifti_header"``, ``"dicom"``).
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
