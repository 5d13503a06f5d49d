"""Intensities: CT in HU and MR in scanner units to [-1, 1], and back.

CT is clipped to ``data.hu_range`` and mapped linearly; MR is normalised per volume between robust
percentiles inside the body mask, eroded by one voxel in each axial slice (:func:`norm_region`).
Each forward map has its inverse beside it.

Why eroded: a mask drawn on the CT holds a rim of dark MR voxels (partial volume at the skin) that
a mask derived from the MR leaves out; the 0.5th percentile falls in that rim, so on a pelvis
phantom the low end moved from 15 to 113 (0.17 of the [-1, 1] range) with the mask a user sends
or not. Inside the eroded masks the two agree to within 0.015 of the range on the five phantom
regions (tests/unit/data/test_intensity_mask.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

BACKGROUND = -1.0  # value outside the body in [-1, 1] space: air on CT, no signal on MR
NORM_EROSION = 1  # voxels taken off the body's rim, in-plane, for the MR percentiles


def norm_region(mask: np.ndarray, axial: int = 2) -> np.ndarray:
    """Where the MR percentiles are taken: ``mask > 0`` eroded by :data:`NORM_EROSION` voxels in
    each slice along ``axial`` (a slice the erosion empties keeps its mask). Slice by slice, so a
    slab of slices gives the same voxels as the whole volume."""
    inside = np.asarray(mask) > 0
    if not NORM_EROSION:
        return inside
    structure = np.zeros((3, 3, 3), bool)
    np.moveaxis(structure, axial, 2)[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    eroded = ndimage.binary_erosion(inside, structure, iterations=NORM_EROSION)
    emptied = ~eroded.any(axis=tuple(a for a in range(3) if a != axial)) & inside.any(
        axis=tuple(a for a in range(3) if a != axial)
    )
    if emptied.any():
        index: list = [slice(None)] * 3
        index[axial] = emptied
        eroded[tuple(index)] = inside[tuple(index)]
    return eroded


def ct_to_unit(hu: np.ndarray, hu_range: Sequence[float], inplace: bool = False) -> np.ndarray:
    """CT in HU -> float32 in [-1, 1]: clip to ``hu_range``, then map linearly.

    ``inplace`` reuses ``hu`` when it is float32 already (one volume less in memory).
    """
    lo, hi = float(hu_range[0]), float(hu_range[1])
    out = np.asarray(hu, dtype=np.float32) if inplace else np.array(hu, dtype=np.float32)
    np.clip(out, lo, hi, out=out)
    out -= lo
    out *= np.float32(2.0 / (hi - lo))
    out -= 1.0
    return out


def unit_to_ct(x: np.ndarray, hu_range: Sequence[float]) -> np.ndarray:
    """Inverse of :func:`ct_to_unit` (float32 HU); exact up to float32 rounding inside the range."""
    lo, hi = float(hu_range[0]), float(hu_range[1])
    return ((np.asarray(x, dtype=np.float32) + 1.0) * np.float32((hi - lo) / 2.0) + lo).astype(
        np.float32
    )


@dataclass(frozen=True)
class MRNorm:
    """The MR intensities mapped to -1 and +1 (the robust percentiles inside the mask)."""

    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MRNorm:
        return cls(low=float(data["low"]), high=float(data["high"]))


def mr_normalise(
    mr: np.ndarray, mask: np.ndarray | None, percentiles: Sequence[float], inplace: bool = False
) -> tuple[np.ndarray, MRNorm]:
    """Per-volume MR normalisation to [-1, 1] between robust percentiles inside the mask.

    Args:
        mr: the MR volume in scanner units.
        mask: body mask on the contract grid (axial slices along axis 2); the percentiles are
            taken in :func:`norm_region` of it; None or empty uses all voxels.
        percentiles: (low, high) in 0..100, e.g. ``DataConfig.mr_percentiles``.
        inplace: reuse ``mr`` for the result when it is float32 already.

    Returns:
        The float32 volume clipped to [-1, 1] and the :class:`MRNorm` that inverts it.
    """
    out = np.asarray(mr, dtype=np.float32) if inplace else np.array(mr, dtype=np.float32)
    inside = out[norm_region(mask)] if mask is not None else np.empty(0, np.float32)
    if inside.size == 0:
        inside = out.ravel().copy()
    params = mr_norm_of(inside, percentiles)  # the masked values are a copy already
    del inside
    return mr_apply(out, params), params


def mr_norm_of(values: np.ndarray, percentiles: Sequence[float]) -> MRNorm:
    """The :class:`MRNorm` of the MR ``values`` inside the body (a float32 copy: partitioned in
    place). Inference gathers them slab by slab (:mod:`hmss_ray.inference.slabs`)."""
    low, high = (float(v) for v in np.percentile(values, list(percentiles), overwrite_input=True))
    if not high > low:  # a constant image: keep the mapping defined and invertible
        high = low + 1.0
    return MRNorm(low, high)


def mr_apply(out: np.ndarray, params: MRNorm) -> np.ndarray:
    """``out`` (float32, in place) mapped by ``params`` to [-1, 1] and clipped."""
    out -= np.float32(params.low)
    out *= np.float32(2.0 / (params.high - params.low))
    out -= 1.0
    return np.clip(out, -1.0, 1.0, out=out)


def mr_denormalise(x: np.ndarray, params: MRNorm) -> np.ndarray:
    """Inverse of :func:`mr_normalise` for values that were not clipped (float32 scanner units)."""
    scale = np.float32((params.high - params.low) / 2.0)
    return ((np.asarray(x, dtype=np.float32) + 1.0) * scale + np.float32(params.low)).astype(
        np.float32
    )
