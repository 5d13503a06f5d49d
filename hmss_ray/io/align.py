"""Put a volume on a reference grid: exactly when it differs only in storage order
(:func:`align_to`, no resampling), else interpolated (:func:`onto_grid`).

A DICOM series has no storage order of its own: readers sort slices along the normal, so a NIfTI
written as DICOM and read back may come with its slice (or another) axis reversed, on the same
voxels in world space. :func:`align_to` undoes such permutations and flips and checks the result.
"""

from __future__ import annotations

import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

from hmss_ray.config import UserError
from hmss_ray.io.volume import Volume


def align_to(
    volume: Volume, affine: np.ndarray, shape: tuple[int, ...], tolerance_mm: float = 1e-3
) -> Volume:
    """``volume`` reordered onto the grid (``affine``, ``shape``) by axis flips/permutations.

    Args:
        volume: the image to reorder.
        affine: the reference grid's RAS+ affine.
        shape: the reference grid's shape.
        tolerance_mm: the largest difference allowed between the reordered and reference affines.

    Raises:
        UserError: the grids differ by more than a reordering (another shape, spacing or origin).
    """
    transform = ornt_transform(io_orientation(volume.affine), io_orientation(affine))
    array = apply_orientation(np.asarray(volume.array), transform)
    moved = np.asarray(volume.affine) @ inv_ornt_aff(transform, volume.shape)
    if array.shape != tuple(shape):
        raise UserError(f"shape {array.shape} differs from the reference's {tuple(shape)}")
    shift = float(np.max(np.abs(moved - np.asarray(affine))))
    if shift > tolerance_mm:
        raise UserError(f"affine differs from the reference's by up to {shift:g} mm")
    aligned = np.asarray(affine, dtype=np.float64).copy()
    return Volume(np.ascontiguousarray(array), aligned, dict(volume.meta))


def onto_grid(volume: Volume, affine: np.ndarray, shape: tuple[int, ...]) -> Volume:
    """``volume`` on the grid (``affine``, ``shape``): reordered exactly when the grids differ by
    a reordering, else resampled trilinearly (float32; NaN outside ``volume``'s field of view).

    Raises:
        UserError: the volume does not overlap the grid at all.
    """
    try:
        return align_to(volume, affine, shape)
    except UserError:
        pass
    from hmss_ray.io.geometry import resample_onto

    array = resample_onto(np.asarray(volume.array), volume.affine, affine, shape)
    if not np.isfinite(array).any():
        raise UserError("it does not overlap the reference grid (another frame of reference?)")
    return Volume(array, np.asarray(affine, dtype=np.float64).copy(), dict(volume.meta))
