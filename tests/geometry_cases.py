"""Test helpers for the geometry contract: one volume in every storage order, independent
resampling (scipy only, not :mod:`hmss_ray.io.geometry`) and tiny configs."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np
from scipy import ndimage


def storage_variants(
    array: np.ndarray, affine: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """All 48 storage orders (axis permutations x flips) of one volume, affine adjusted so that
    every voxel keeps its world position."""
    for perm in itertools.permutations(range(3)):
        for flips in itertools.product((False, True), repeat=3):
            yield reorder(array, affine, perm, flips)


def reorder(
    array: np.ndarray, affine: np.ndarray, perm: Sequence[int], flips: Sequence[bool]
) -> tuple[np.ndarray, np.ndarray]:
    """``array`` stored with its axes permuted by ``perm`` then flipped, world unchanged."""
    data, aff = array.transpose(perm), affine.copy()
    aff[:, :3] = affine[:, list(perm)]
    for axis, flip in enumerate(flips):
        if flip:
            n = data.shape[axis]
            data = np.flip(data, axis)
            aff[:3, 3] += aff[:3, axis] * (n - 1)
            aff[:3, axis] *= -1
    return np.ascontiguousarray(data), aff


def sample_on(
    array: np.ndarray, affine: np.ndarray, shape: Sequence[int], target: np.ndarray, order: int = 1
) -> np.ndarray:
    """``array`` (on ``affine``) sampled at the voxel centres of grid (``shape``, ``target``)."""
    to_source = np.linalg.inv(affine) @ target
    index = np.indices(tuple(shape)).reshape(3, -1).astype(float)
    where = to_source[:3, :3] @ index + to_source[:3, 3:4]
    values = ndimage.map_coordinates(
        np.asarray(array, dtype=np.float32), where, order=order, mode="nearest"
    )
    return values.reshape(tuple(shape))


def at_spacing(
    array: np.ndarray, affine: np.ndarray, spacing: Sequence[float], order: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """An axis-aligned volume resampled to ``spacing`` mm over the same field of view, same
    storage directions (a scan of the same anatomy at another resolution)."""
    linear = affine[:3, :3]
    old = np.sqrt((linear**2).sum(axis=0))
    shape = np.ceil(np.asarray(array.shape) * old / np.asarray(spacing) - 1e-6).astype(int)
    new = np.eye(4)
    new[:3, :3] = linear / old * np.asarray(spacing)
    centre = linear @ ((np.asarray(array.shape) - 1) / 2) + affine[:3, 3]
    new[:3, 3] = centre - new[:3, :3] @ ((shape - 1) / 2)
    return sample_on(array, affine, shape, new, order), new
