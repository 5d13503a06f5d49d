"""Rendering an :class:`~.anatomy.Anatomy` on a voxel grid of any spacing.

Each solid is evaluated only inside its bounding box. A voxel takes the fraction of it a solid
covers (from the signed distance, over one voxel width), so coarse grids show partial volumes
instead of missing thin structures; the label of a voxel is the tissue covering most of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hmss_ray.data.phantom.anatomy import Anatomy


@dataclass(frozen=True)
class Grid:
    """Voxel centres (mm, ascending) along x, y, z of patient coordinates."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    spacing: tuple[float, float, float]

    @classmethod
    def covering(cls, box: Sequence[Sequence[float]], spacing: Sequence[float]) -> Grid:
        """The grid of ``spacing`` that fills ``box`` ((low, high) per axis), centred in it."""
        axes = []
        for (lo, hi), step in zip(box, spacing, strict=True):
            n = max(1, round((hi - lo) / step))
            axes.append(((lo + hi) / 2 + (np.arange(n) - (n - 1) / 2) * step).astype(np.float32))
        return cls(*axes, spacing=tuple(float(s) for s in spacing))

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.x), len(self.y), len(self.z))

    def window(self, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Index ranges of the voxels whose centres lie in [lo, hi]; None when there are none."""
        out = []
        for axis, a, b in zip((self.x, self.y, self.z), lo, hi, strict=True):
            i0, i1 = np.searchsorted(axis, a, "left"), np.searchsorted(axis, b, "right")
            if i1 <= i0:
                return None
            out.append(slice(int(i0), int(i1)))
        return tuple(out)

    def coords(self, window=(slice(None),) * 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable x (n, 1, 1), y (1, m, 1), z (1, 1, k) of a window."""
        wx, wy, wz = window
        return self.x[wx, None, None], self.y[None, wy, None], self.z[None, None, wz]


def paint(anatomy: Anatomy, grid: Grid, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels (uint8) and per-tissue values blended by covered fraction.

    Args:
        values: (tissues, channels) value of each channel per tissue (HU, MR signal, ...).

    Returns:
        labels (X, Y, Z) and channels (channels, X, Y, Z) float32; everything starts as tissue 0.
    """
    width = float(np.prod(grid.spacing) ** (1 / 3))  # the ramp: about one voxel
    labels = np.zeros(grid.shape, np.uint8)
    channels = np.empty((values.shape[1], *grid.shape), np.float32)
    channels[:] = values[0][:, None, None, None]
    table = values.astype(np.float32)
    for shape, tissue in anatomy.ops:
        lo, hi = shape.bounds()
        window = grid.window(lo - width, hi + width)
        if window is None:
            continue
        alpha = np.clip(0.5 - shape.sdf(*grid.coords(window)) / width, 0.0, 1.0)
        sub_shape = tuple(s.stop - s.start for s in window)
        alpha = np.broadcast_to(alpha, sub_shape).astype(np.float32, copy=False)
        if not alpha.any():
            continue
        view = channels[(slice(None), *window)]
        view += alpha[None] * (table[int(tissue)][:, None, None, None] - view)
        labels[window][alpha > 0.5] = int(tissue)
    return labels, channels
