"""The dose grid: CT, sCT and structures averaged down to a coarse grid (3-5 mm) before planning.

A 256x256x180 CT at 1 mm has 11.8 M voxels; a pencil-beam dose influence matrix on it would take
minutes and gigabytes. Planning and recomputation both run on the same coarse grid (box-averaged
HU, structure fractions >= 0.5), so a CT/sCT difference is never hidden by resampling one but not
the other. Arrays stay in the storage order of the input (X, Y, Z); beam angles are in that frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

DEFAULT_SPACING_MM = 4.0


@dataclass(frozen=True)
class DoseGrid:
    """A coarse grid: its shape, voxel size (mm) per array axis, and the zoom from the input."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    zoom: tuple[float, float, float]

    @property
    def axes_mm(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voxel-centre coordinates (mm) along each array axis, from 0."""
        return tuple(np.arange(n) * s for n, s in zip(self.shape, self.spacing, strict=True))  # type: ignore[return-value]


def dose_grid(shape: tuple[int, ...], spacing: tuple[float, ...], target_mm: float) -> DoseGrid:
    """The grid of about ``target_mm`` voxels covering a volume of ``shape`` at ``spacing``.

    Axes already coarser than ``target_mm`` are kept as they are (thick pelvis slices).
    """
    if target_mm <= 0:
        raise ValueError(f"dose grid spacing must be > 0 mm, got {target_mm}")
    zoom = [min(1.0, s / target_mm) for s in spacing]
    new_shape = [max(1, round(n * z)) for n, z in zip(shape, zoom, strict=True)]
    actual = [m / n for n, m in zip(shape, new_shape, strict=True)]
    out_spacing = [s / a for s, a in zip(spacing, actual, strict=True)]
    return DoseGrid(tuple(new_shape), tuple(out_spacing), tuple(actual))  # type: ignore[arg-type]


def _down(array: np.ndarray, grid: DoseGrid) -> np.ndarray:
    """Box average over each coarse voxel's footprint, then linear sampling at its centre."""
    size = [max(1, round(1 / z)) for z in grid.zoom]
    smooth = ndimage.uniform_filter(np.asarray(array, dtype=np.float32), size=size, mode="nearest")
    if all(z == 1.0 for z in grid.zoom):
        return smooth
    out = ndimage.zoom(smooth, grid.zoom, order=1, mode="nearest", grid_mode=True)
    return out[: grid.shape[0], : grid.shape[1], : grid.shape[2]]


def resample_hu(hu: np.ndarray, grid: DoseGrid) -> np.ndarray:
    """HU on the dose grid (box-averaged: stopping power is nearly linear in HU)."""
    return _down(hu, grid)


def resample_mask(mask: np.ndarray, grid: DoseGrid) -> np.ndarray:
    """A structure on the dose grid: coarse voxels at least half inside it."""
    return _down(np.asarray(mask) > 0, grid) >= 0.5
