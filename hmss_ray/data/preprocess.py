"""Intensity normalisation, crop/pad with its exact inverse, axial slices and 2.5D context.

Axes follow the SynthRAD NIfTI volumes: axes 0 and 1 are in-plane, axis 2 is axial. A slice image is
``volume[:, :, z]`` (H = axis 0, W = axis 1). Every forward mapping has its inverse beside it:
training uses the forward ones, inference and evaluation use both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hmss_ray.config import DataConfig

BACKGROUND = -1.0  # value outside the body in [-1, 1] space: air on CT, no signal on MR


def ct_to_unit(hu: np.ndarray, hu_range: Sequence[float]) -> np.ndarray:
    """CT in HU -> float32 in [-1, 1]: clip to ``hu_range``, then map linearly."""
    lo, hi = float(hu_range[0]), float(hu_range[1])
    clipped = np.clip(np.asarray(hu, dtype=np.float32), lo, hi)
    return ((clipped - lo) * np.float32(2.0 / (hi - lo)) - 1.0).astype(np.float32)


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
    mr: np.ndarray, mask: np.ndarray | None, percentiles: Sequence[float]
) -> tuple[np.ndarray, MRNorm]:
    """Per-volume MR normalisation to [-1, 1] between robust percentiles inside the mask.

    Args:
        mr: the MR volume in scanner units.
        mask: body mask (voxels > 0 are used for the percentiles); None or empty uses all voxels.
        percentiles: (low, high) in 0..100, e.g. ``DataConfig.mr_percentiles``.

    Returns:
        The float32 volume clipped to [-1, 1] and the :class:`MRNorm` that inverts it.
    """
    mr = np.asarray(mr, dtype=np.float32)
    inside = mr[np.asarray(mask) > 0] if mask is not None else mr.ravel()
    if inside.size == 0:
        inside = mr.ravel()
    low, high = (float(v) for v in np.percentile(inside, list(percentiles)))
    if not high > low:  # a constant image: keep the mapping defined and invertible
        high = low + 1.0
    scaled = (mr - np.float32(low)) * np.float32(2.0 / (high - low)) - 1.0
    return np.clip(scaled, -1.0, 1.0).astype(np.float32), MRNorm(low, high)


def mr_denormalise(x: np.ndarray, params: MRNorm) -> np.ndarray:
    """Inverse of :func:`mr_normalise` for values that were not clipped (float32 scanner units)."""
    scale = np.float32((params.high - params.low) / 2.0)
    return ((np.asarray(x, dtype=np.float32) + 1.0) * scale + np.float32(params.low)).astype(
        np.float32
    )


@dataclass(frozen=True)
class CropBox:
    """A square in-plane window of ``size`` voxels starting at ``start`` (axes 0 and 1).

    ``start`` may be negative or run past the volume: that part of the window is padding.
    """

    start: tuple[int, int]
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"start": [int(s) for s in self.start], "size": int(self.size)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CropBox:
        start = data["start"]
        return cls(start=(int(start[0]), int(start[1])), size=int(data["size"]))


def crop_box_for(mask: np.ndarray, image_size: int) -> CropBox:
    """The ``image_size`` square centred on the in-plane bounding box of ``mask`` (all slices)."""
    plane = np.asarray(mask).reshape(mask.shape[0], mask.shape[1], -1).any(axis=2)
    if not plane.any():
        raise ValueError("crop_box_for: the mask is empty, there is nothing to centre on")
    start = []
    for axis in (1, 0):  # rows (axis 0) use any over axis 1, columns the reverse
        hits = np.flatnonzero(plane.any(axis=axis))
        width = int(hits[-1] - hits[0] + 1)
        start.append(int(hits[0]) + (width - image_size) // 2)
    return CropBox(start=(start[0], start[1]), size=int(image_size))


def _overlap(start: int, size: int, length: int) -> tuple[slice, slice]:
    """(slice in the original axis, slice in the window) of their intersection."""
    lo, hi = max(start, 0), min(start + size, length)
    if hi <= lo:
        return slice(0, 0), slice(0, 0)
    return slice(lo, hi), slice(lo - start, hi - start)


def crop_pad(volume: np.ndarray, box: CropBox, fill: float) -> np.ndarray:
    """Cut ``box`` out of ``volume`` (X, Y, ...) -> (size, size, ...), ``fill`` where it pads."""
    volume = np.asarray(volume)
    out = np.full((box.size, box.size, *volume.shape[2:]), fill, dtype=volume.dtype)
    src0, dst0 = _overlap(box.start[0], box.size, volume.shape[0])
    src1, dst1 = _overlap(box.start[1], box.size, volume.shape[1])
    out[dst0, dst1] = volume[src0, src1]
    return out


def uncrop(
    volume: np.ndarray, box: CropBox, original_shape: Sequence[int], fill: float
) -> np.ndarray:
    """Inverse of :func:`crop_pad`: put (size, size, ...) back on the ``original_shape`` grid.

    Voxels the box covered come back exactly; the rest of the grid is ``fill``.
    """
    volume = np.asarray(volume)
    if volume.shape[:2] != (box.size, box.size):
        raise ValueError(f"uncrop: expected ({box.size}, {box.size}, ...), got {volume.shape}")
    shape = (int(original_shape[0]), int(original_shape[1]), *volume.shape[2:])
    out = np.full(shape, fill, dtype=volume.dtype)
    src0, dst0 = _overlap(box.start[0], box.size, shape[0])
    src1, dst1 = _overlap(box.start[1], box.size, shape[1])
    out[src0, src1] = volume[dst0, dst1]
    return out


def slices_with_context(
    volume: np.ndarray, k: int, indices: Sequence[int] | np.ndarray | None = None
) -> np.ndarray:
    """Axial slices with ``k`` neighbours each side: (H, W, Z) -> (Z, 2k+1, H, W).

    Neighbours past either end repeat the edge slice. ``indices`` picks which centre slices to
    return (all by default) without materialising the others.
    """
    depth = volume.shape[2]
    centres = np.arange(depth) if indices is None else np.asarray(indices, dtype=np.int64)
    idx = np.clip(centres[:, None] + np.arange(-k, k + 1)[None, :], 0, depth - 1)  # (N, 2k+1)
    return np.ascontiguousarray(np.moveaxis(volume, 2, 0)[idx])  # (N, 2k+1, H, W)


def kept_slices(mask_crop: np.ndarray, min_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Per axial slice, its body area relative to the case's largest slice, and the indices of
    slices with at least ``min_fraction`` of it (``DataConfig.min_mask_fraction``).

    Relative to the largest slice, not to the crop, so the rule does not change with
    ``image_size``: it drops the thin caps at either end of the body.
    """
    area = np.count_nonzero(np.asarray(mask_crop).reshape(-1, mask_crop.shape[-1]), axis=0)
    fraction = (area / max(int(area.max(initial=0)), 1)).astype(np.float32)
    keep = np.flatnonzero((fraction >= min_fraction) & (area > 0))
    return fraction, keep


def centre_channels(mr: np.ndarray, channels: int) -> np.ndarray:
    """Keep the centre ``channels`` of (N, C, H, W) 2.5D stacks.

    Shards prepared with more context than a model uses serve it all the same.
    """
    extra = (mr.shape[1] - channels) // 2
    if extra < 0:
        raise ValueError(f"the data holds {mr.shape[1]} MR channels, the model wants {channels}")
    return mr[:, extra : extra + channels] if extra else mr


@dataclass(frozen=True)
class PreparedVolume:
    """One case after preprocessing, on the cropped grid (size, size, Z).

    Attributes:
        mr: float32 in [-1, 1], -1 outside the mask.
        ct: float32 in [-1, 1], -1 outside the mask; None for an MR-only (inference) case.
        mask: uint8 body mask.
        box: the in-plane crop; ``uncrop(x, box, original_shape, fill)`` restores the grid.
        mr_params: the MR normalisation, for :func:`mr_denormalise`.
        original_shape: shape of the input volumes.
        mask_fraction: per axial slice, body area relative to the largest slice of the case.
        keep: axial indices with ``mask_fraction >= DataConfig.min_mask_fraction``.
    """

    mr: np.ndarray
    ct: np.ndarray | None
    mask: np.ndarray
    box: CropBox
    mr_params: MRNorm
    original_shape: tuple[int, int, int]
    mask_fraction: np.ndarray
    keep: np.ndarray


def prepare_volume(
    mr: np.ndarray, ct: np.ndarray | None, mask: np.ndarray, cfg: DataConfig
) -> PreparedVolume:
    """Normalise, mask and crop one case (CT optional, so inference reuses this for MR only)."""
    body = np.asarray(mask) > 0
    if body.shape != np.shape(mr) or (ct is not None and np.shape(ct) != body.shape):
        shapes = f"mr {np.shape(mr)}, mask {body.shape}" + (
            "" if ct is None else f", ct {np.shape(ct)}"
        )
        raise ValueError(f"prepare_volume: shapes differ ({shapes})")
    box = crop_box_for(body, cfg.image_size)
    mr_unit, params = mr_normalise(mr, body, cfg.mr_percentiles)
    mr_unit[~body] = BACKGROUND  # the model is neither asked nor scored outside the body
    ct_crop = None
    if ct is not None:
        ct_unit = ct_to_unit(ct, cfg.hu_range)
        ct_unit[~body] = BACKGROUND  # couch and air outside the body are not predictable from MR
        ct_crop = crop_pad(ct_unit, box, BACKGROUND)
    mask_crop = crop_pad(body.astype(np.uint8), box, 0)
    fraction, keep = kept_slices(mask_crop, cfg.min_mask_fraction)
    return PreparedVolume(
        mr=crop_pad(mr_unit, box, BACKGROUND),
        ct=ct_crop,
        mask=mask_crop,
        box=box,
        mr_params=params,
        original_shape=(int(body.shape[0]), int(body.shape[1]), int(body.shape[2])),
        mask_fraction=fraction,
        keep=keep,
    )
