"""Intensity normalisation, the canvas on the contract grid, axial slices and 2.5D context.

A case goes from its own grid onto its region's contract grid (:mod:`hmss_ray.io.geometry`:
axes 0 and 1 in-plane, axis 2 axial, at the contract spacing), then onto a square canvas of
``data.image_size`` around the body. A slice image is ``volume[:, :, z]`` (H = axis 0, W = axis 1).
Every forward mapping has its inverse beside it: training uses the forward ones, inference and
evaluation use both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hmss_ray.config import DataConfig
from hmss_ray.data.intensity import (  # noqa: F401 - re-exported: one import for callers
    BACKGROUND,
    MRNorm,
    ct_to_unit,
    mr_denormalise,
    mr_normalise,
    unit_to_ct,
)
from hmss_ray.io.geometry import Box, Contract, Grid, GridMap


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
class Placement:
    """Where a case's body lies on its contract grid, and the square canvas cut around it.

    Attributes:
        gmap: input grid -> contract grid (None: the arrays are on the contract grid already).
        box: the in-plane canvas on the contract grid (``uncrop`` restores that grid).
        mask: uint8 body mask on the canvas, (S, S, Z).
        grid_shape: shape of the contract grid.
        body_voxels: body voxels on the contract grid; ``lost_voxels`` of them fall outside
            the canvas (in no slice).
        body_extent: in-plane size of the body's bounding box, contract voxels (axes 0, 1).
    """

    gmap: GridMap | None
    box: CropBox
    mask: np.ndarray
    grid_shape: tuple[int, int, int]
    body_voxels: int
    lost_voxels: int
    body_extent: tuple[int, int]

    @property
    def lost_fraction(self) -> float:
        return self.lost_voxels / max(self.body_voxels, 1)

    @property
    def canvas(self) -> Box:
        """The canvas as a box of the contract grid, every axial slice."""
        x, y = self.box.start
        return Box((x, y, 0), (self.box.size, self.box.size, self.grid_shape[2]))


def body_extent(mask: np.ndarray) -> tuple[int, int]:
    """In-plane size (voxels along axes 0 and 1) of the bounding box of ``mask`` over all slices."""
    plane = np.asarray(mask).any(axis=2)
    if not plane.any():
        raise ValueError("the body mask is empty on the contract grid: nothing to centre on")
    rows, cols = (np.flatnonzero(plane.any(axis=a)) for a in (1, 0))
    return int(rows[-1] - rows[0]) + 1, int(cols[-1] - cols[0]) + 1


def fitting_canvas(extent: Sequence[int], size: int, multiple: int) -> int:
    """``size``, or the smallest multiple of ``multiple`` that holds ``extent`` when larger."""
    needed = -(-int(max(extent)) // multiple) * multiple
    return max(int(size), needed)


def place_body(
    mask: np.ndarray, gmap: GridMap | None, size: int, fit_multiple: int | None = None
) -> Placement:
    """The body mask on the contract grid and the ``size`` canvas centred on it.

    Args:
        mask: body mask on the input grid (voxels > 0), or on the contract grid if ``gmap`` is
            None.
        size: canvas side (``data.image_size``).
        fit_multiple: grow the canvas to hold the whole body, in steps of this many voxels
            (inference: the generator is fully convolutional); None keeps ``size`` and counts
            the body voxels that fall outside it (training).
    """
    body = (np.asarray(mask) > 0).view(np.uint8)  # bool -> uint8 without a copy
    if gmap is not None:
        body = gmap.forward(body, order=0)
    extent = body_extent(body)
    if fit_multiple:
        size = fitting_canvas(extent, size, fit_multiple)
    box = crop_box_for(body, size)
    canvas = crop_pad(body, box, 0)
    total = int(np.count_nonzero(body))
    shape = (int(body.shape[0]), int(body.shape[1]), int(body.shape[2]))
    lost = total - int(np.count_nonzero(canvas))
    return Placement(gmap, box, canvas, shape, total, lost, extent)


def _on_canvas(array: np.ndarray, place: Placement, cval: float) -> np.ndarray:
    """float32 (S, S, Z): ``array`` on the canvas (resampled onto it when the grids differ)."""
    if place.gmap is None:
        return crop_pad(np.asarray(array, dtype=np.float32), place.box, cval)
    return place.gmap.forward(array, order=1, cval=cval, box=place.canvas)


@dataclass(frozen=True)
class PreparedVolume:
    """One case after preprocessing, on the canvas (S, S, Z) of its contract grid.

    Attributes:
        mr: float32 in [-1, 1], -1 outside the mask.
        ct: float32 in [-1, 1], -1 outside the mask; None for an MR-only (inference) case.
        mr_params: the MR normalisation, for :func:`mr_denormalise`.
        mask_fraction: per axial slice, body area relative to the largest slice of the case.
        keep: axial indices with ``mask_fraction >= DataConfig.min_mask_fraction``.
        placement: the contract grid, the canvas on it and how much of the body it holds.
    """

    mr: np.ndarray
    ct: np.ndarray | None
    mr_params: MRNorm
    mask_fraction: np.ndarray
    keep: np.ndarray
    placement: Placement

    @property
    def mask(self) -> np.ndarray:
        """uint8 body mask on the canvas."""
        return self.placement.mask

    @property
    def box(self) -> CropBox:
        """The canvas; ``uncrop(x, box, grid_shape, fill)`` restores the contract grid."""
        return self.placement.box

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        return self.placement.grid_shape


def prepare_placed(
    mr: np.ndarray, ct: np.ndarray | None, place: Placement, cfg: DataConfig
) -> PreparedVolume:
    """Normalise and mask one case on its canvas (CT optional: inference has MR only)."""
    inside = place.mask > 0
    mr_unit, params = mr_normalise(_on_canvas(mr, place, 0.0), inside, cfg.mr_percentiles, True)
    mr_unit[~inside] = BACKGROUND  # the model is neither asked nor scored outside the body
    ct_unit = None
    if ct is not None:
        ct_unit = ct_to_unit(_on_canvas(ct, place, cfg.hu_range[0]), cfg.hu_range, inplace=True)
        ct_unit[~inside] = BACKGROUND  # couch and air outside the body are not predictable
    fraction, keep = kept_slices(place.mask, cfg.min_mask_fraction)
    return PreparedVolume(mr_unit, ct_unit, params, fraction, keep, place)


def _check_shapes(mr: np.ndarray, ct: np.ndarray | None, mask: np.ndarray) -> None:
    if np.shape(mask) != np.shape(mr) or (ct is not None and np.shape(ct) != np.shape(mask)):
        shapes = f"mr {np.shape(mr)}, mask {np.shape(mask)}" + (
            "" if ct is None else f", ct {np.shape(ct)}"
        )
        raise ValueError(f"prepare_volume: shapes differ ({shapes})")


def prepare_volume(
    mr: np.ndarray, ct: np.ndarray | None, mask: np.ndarray, cfg: DataConfig
) -> PreparedVolume:
    """Normalise, mask and crop one case whose arrays are on the contract grid already."""
    _check_shapes(mr, ct, mask)
    return prepare_placed(mr, ct, place_body(mask, None, cfg.image_size), cfg)


def prepare_case(
    mr: np.ndarray,
    ct: np.ndarray | None,
    mask: np.ndarray,
    affine: np.ndarray,
    cfg: DataConfig,
    region: str,
    fit_multiple: int | None = None,
) -> PreparedVolume:
    """One case from its own grid onto its region's contract grid, normalised, on the canvas.

    Args:
        mr, ct, mask: the case's volumes on one grid (``ct`` None for MR only).
        affine: that grid's voxel -> RAS+ mm affine.
        region: picks the contract, ``data.spacing[region]`` in ``data.orientation``.
        fit_multiple: see :func:`place_body` (None: a ``data.image_size`` canvas).
    """
    _check_shapes(mr, ct, mask)
    gmap = contract_map(Grid(np.shape(mr), affine), cfg, region)
    return prepare_placed(mr, ct, place_body(mask, gmap, cfg.image_size, fit_multiple), cfg)


def contract_map(grid: Grid, cfg: DataConfig, region: str) -> GridMap:
    """How ``grid`` maps onto ``region``'s contract grid (``data.orientation``, ``spacing``)."""
    return GridMap.plan(grid, Contract.of(cfg, region))
