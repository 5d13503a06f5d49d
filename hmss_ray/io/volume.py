"""The :class:`Volume` record and the errors every reader raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hmss_ray.config import UserError


class UnreadableVolume(UserError):
    """A file that is not a readable volume of a supported format; the message says why."""


class LimitExceeded(UnreadableVolume):
    """Reading would cost more than an ``io.*`` limit allows (HTTP 413); nothing large was read."""


class SeriesError(UnreadableVolume):
    """DICOM files that do not make one volume (several series, gaps, mixed planes): HTTP 422."""


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
