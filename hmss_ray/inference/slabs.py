"""Whole-volume inference in slabs of axial slices: bounded memory from the input to the output.

The canvas on the contract grid never exists as a float32 volume: the MR normalisation gathers
the body's values slab by slab, the generator's input is sampled from the input grid one batch of
slices (plus their 2.5D context) at a time, and the sCT is kept on the canvas as int16 HU, then
put back on the input grid row slab by row slab (:meth:`GridMap.inverse` with an integer dtype).
The arithmetic is the whole-volume preprocessing's (``preprocess.prepare_placed``), value for
value: an orientation-only map gives exactly the same sCT; a resampled one rounds to HU before
the inverse interpolation instead of after (at most 1 HU apart).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hmss_ray.config import DataConfig
from hmss_ray.data import preprocess
from hmss_ray.data.intensity import (
    BACKGROUND,
    MRNorm,
    mr_apply,
    mr_norm_of,
    norm_region,
    unit_to_ct,
)
from hmss_ray.io.geometry import Box

AIR_HU = -1000
SLAB_VOXELS = 1 << 22  # voxels of float32 per slab when gathering (16 MiB)

# (B, 2k+1, S, S) float32 stacks -> (B, S, S) float32 generator output in [-1, 1]; with a
# spread canvas, also (B, S, S) float32: the spread of the TTA/ensemble passes in HU
Predict = Callable[[np.ndarray], "np.ndarray | tuple[np.ndarray, np.ndarray]"]
# (slices done, slices in all): called once before the first batch and after every batch
Progress = Callable[[int, int], None]


def canvas_part(mr: np.ndarray, place: preprocess.Placement, z0: int, z1: int) -> np.ndarray:
    """float32 (S, S, z1 - z0): axial slices ``z0:z1`` of ``mr`` on the canvas (0 outside)."""
    x, y = place.box.start
    box = Box((x, y, z0), (place.box.size, place.box.size, z1 - z0))
    if place.gmap is None:  # the input is on the contract grid already
        part = np.asarray(mr)[:, :, z0:z1]
        return preprocess.crop_pad(part.astype(np.float32, copy=False), place.box, 0.0)
    return place.gmap.forward(mr, order=1, cval=0.0, box=box)


def mr_norm(mr: np.ndarray, place: preprocess.Placement, cfg: DataConfig) -> MRNorm:
    """The MR normalisation of the body on the canvas, as ``prepare_placed`` computes it, from
    slabs: only the body's values are held (one float32 each)."""
    values = np.empty(int(np.count_nonzero(place.mask)), np.float32)  # an upper bound
    depth, filled = place.mask.shape[2], 0
    step = max(1, SLAB_VOXELS // max(place.box.size**2, 1))
    for z0 in range(0, depth, step):
        z1 = min(z0 + step, depth)
        inside = canvas_part(mr, place, z0, z1)[norm_region(place.mask[:, :, z0:z1])]
        values[filled : filled + inside.size] = inside
        filled += inside.size
    return mr_norm_of(values[:filled], cfg.mr_percentiles)


def generate(
    mr: np.ndarray,
    place: preprocess.Placement,
    cfg: DataConfig,
    predict: Predict,
    batch_slices: int,
    spread: np.ndarray | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """int16 HU on the canvas (S, S, Z): ``predict`` on every axial slice with body in it.

    Each batch of slices is sampled from ``mr`` with its ``cfg.context_slices`` neighbours,
    normalised (:func:`mr_norm`) and masked as in training; empty slices stay air. ``spread``
    (float32, the canvas's shape, zeros): filled with the passes' spread in HU, which ``predict``
    then returns beside its output. ``progress``: told the body slices done after each batch.
    """
    norm, k = mr_norm(mr, place, cfg), cfg.context_slices
    depth = place.mask.shape[2]
    sct = np.full(place.mask.shape, AIR_HU, np.int16)
    fraction, _ = preprocess.kept_slices(place.mask, cfg.min_mask_fraction)
    body_slices = np.flatnonzero(fraction > 0)
    if progress is not None:
        progress(0, len(body_slices))
    for start in range(0, len(body_slices), batch_slices):
        idx = body_slices[start : start + batch_slices]
        lo, hi = max(int(idx[0]) - k, 0), min(int(idx[-1]) + k + 1, depth)
        unit = mr_apply(canvas_part(mr, place, lo, hi), norm)
        unit[place.mask[:, :, lo:hi] == 0] = BACKGROUND
        # neighbours past the part's ends are clamped only where the volume ends too
        stack = preprocess.slices_with_context(unit, k, idx - lo)
        out = predict(stack)
        if spread is not None:
            out, passes_spread = out
            spread[:, :, idx] = np.moveaxis(passes_spread, 0, 2)
        hu = unit_to_ct(out, cfg.hu_range)  # (B, S, S)
        np.clip(np.rint(hu, out=hu), -32768, 32767, out=hu)
        sct[:, :, idx] = np.moveaxis(hu, 0, 2)
        if progress is not None:
            progress(start + len(idx), len(body_slices))
    return sct


def air_outside(sct: np.ndarray, body: np.ndarray) -> np.ndarray:
    """``sct`` (in place) set to air where ``body`` is 0, in slabs: no volume-sized temporary."""
    rows = max(1, SLAB_VOXELS // max(sct.shape[1] * sct.shape[2], 1))
    for i0 in range(0, sct.shape[0], rows):
        part = sct[i0 : i0 + rows]
        part[np.asarray(body[i0 : i0 + rows]) == 0] = AIR_HU
    return sct
