"""The geometry contract: the grid a network works on, and the exact way onto it and back.

A region's contract (``data.orientation`` and ``data.spacing[region]``, nnU-Net's "plans" idea)
fixes the axes (closest to RAS by default: axial slices along the third axis) and the voxel spacing
the network sees. It is saved with the shards' manifest and inside every checkpoint's config, and
applied unchanged at inference. :class:`GridMap` takes any input grid onto the contract grid and
back (the forward and the inverse side by side, MONAI ``Invertd`` style):

- the input's axes are permuted and flipped to the contract orientation (nibabel
  ``io_orientation``): exact, nothing is interpolated;
- only when the spacing then differs, or the affine is oblique, is the input resampled (linear for
  MR/CT, after a Gaussian anti-aliasing prefilter where the contract is coarser; nearest for
  masks, ties broken along the contract axes: :mod:`hmss_ray.io.antialias`) onto the contract
  grid that covers the input's whole field of view, its voxel centres on a world lattice (so a
  crop of an input is sampled at the same points where the two overlap);
- :meth:`GridMap.inverse` puts a contract-grid array back on exactly the input grid.

Both directions produce any box of their output grid (a z-range of axial slices, the canvas
around the body) without materialising the rest, straight from the source array (views, no copy),
in float32: callers can work in slabs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from hmss_ray.config import DataConfig, UserError
from hmss_ray.io import antialias

# the contract grid may replace the input's own (no interpolation) when doing so moves no voxel
# by more than this fraction of a voxel anywhere in the volume (float noise in headers, 0.99999 mm)
EXACT_DRIFT_VOXELS = 0.01
# a sample this close (in voxels) outside the outermost voxel centres still belongs to the input
_EDGE_EPS = 1e-3
_SLAB_VOXELS = 1 << 21  # voxels per slab when an oblique map checks its field of view
# the covering grid ends at the first lattice point beyond the input's outermost voxel centres,
# or at one this close (in contract voxels) inside them
_LATTICE_TOL = 1e-3


@dataclass(frozen=True)
class Contract:
    """The grid a network works on: axis codes (``"RAS"``: axial slices along axis 2) and mm."""

    orientation: str
    spacing: tuple[float, float, float]

    @classmethod
    def of(cls, cfg: DataConfig, region: str) -> Contract:
        """The contract of ``region`` in a data config; a region without one is a UserError."""
        if region not in cfg.spacing:
            raise UserError(
                f"no geometry contract for region {region!r}: data.spacing has "
                f"{sorted(cfg.spacing)}; add data.spacing.{region}: [x, y, z] (mm)"
            )
        x, y, z = (float(v) for v in cfg.spacing[region])
        return cls(cfg.orientation, (x, y, z))

    def to_dict(self) -> dict[str, Any]:
        return {"orientation": self.orientation, "spacing": list(self.spacing)}


@dataclass(frozen=True)
class Grid:
    """A voxel grid: shape and the 4x4 affine from voxel indices to RAS+ world millimetres."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @classmethod
    def of(cls, image: Any) -> Grid:
        """The grid of anything with ``.shape`` and ``.affine`` (a ``Volume``, a NIfTI image)."""
        shape = tuple(int(n) for n in image.shape[:3])
        return cls((shape[0], shape[1], shape[2]), np.asarray(image.affine, dtype=np.float64))

    @property
    def spacing(self) -> tuple[float, float, float]:
        x, y, z = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return (float(x), float(y), float(z))

    @property
    def orientation(self) -> str:
        return "".join(nib.orientations.aff2axcodes(self.affine))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: shape, affine, spacing (mm, rounded to 1e-6) and axis codes."""
        return {
            "shape": list(self.shape),
            "affine": np.asarray(self.affine, dtype=float).tolist(),
            "spacing": [round(s, 6) for s in self.spacing],
            "orientation": self.orientation,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Grid:
        x, y, z = (int(n) for n in data["shape"])
        return cls((x, y, z), np.asarray(data["affine"], dtype=np.float64))


@dataclass(frozen=True)
class Box:
    """A box of a grid: ``shape`` voxels from index ``start``; it may reach past the grid."""

    start: tuple[int, int, int]
    shape: tuple[int, int, int]

    @classmethod
    def whole(cls, shape: tuple[int, int, int]) -> Box:
        return cls((0, 0, 0), shape)

    def shift(self) -> np.ndarray:
        """4x4 from box-local indices to grid indices."""
        shift = np.eye(4)
        shift[:3, 3] = self.start
        return shift


def contract_linear(contract: Contract) -> np.ndarray:
    """3x3: contract voxel steps -> world mm (a signed permutation scaled by the spacing)."""
    linear = np.zeros((3, 3))
    for axis, (world, sign) in enumerate(nib.orientations.axcodes2ornt(contract.orientation)):
        linear[int(world), axis] = sign * contract.spacing[axis]
    return linear


def _covering_grid(
    source: Grid, contract: Contract, reoriented: np.ndarray, shape: list[int]
) -> Grid:
    """The contract grid on a fixed lattice that covers ``source``'s field of view.

    Along an axis the input already samples at the contract spacing, straight (``reoriented``
    and ``shape``: the input's affine and shape, its axes in the contract's order), the grid
    keeps the input's own voxel centres: nothing is interpolated along it, and a crop moves them
    by whole voxels.
    Along every other axis its voxel centres are the world points ``contract_linear(contract)
    @ k`` for integer ``k`` (a lattice through the world origin). Either way two inputs of one
    patient that overlap (a crop, a larger field of view) are sampled at the same points where
    they overlap, and the network sees the same canvas there. The grid reaches the first lattice
    point at or beyond the input's outermost voxel centres (within ``_LATTICE_TOL``), so every
    input voxel lies between grid points and the way back interpolates it as it would in any
    larger input; those outermost grid points may lie up to a contract voxel outside the input's
    voxel centres, where the forward map extends the edge voxels (``_rim_margin``).
    """
    linear = contract_linear(contract)
    to_lattice = np.linalg.inv(linear)
    centres = np.array(np.meshgrid(*[(0, n - 1) for n in source.shape], indexing="ij"))
    corners = source.affine[:3, :3] @ centres.reshape(3, -1) + source.affine[:3, 3:4]
    along = to_lattice @ corners  # the outermost voxel centres in lattice indices
    # contract voxels per input step, the input's axes in the contract's order: a row of the
    # identity is an axis sampled at the contract spacing, straight
    steps = to_lattice @ reoriented[:3, :3]
    drift = np.abs(steps - np.eye(3)) @ (np.asarray(shape) - 1)  # worst drift over the input
    own = to_lattice @ reoriented[:3, 3]
    phase = np.where(drift <= EXACT_DRIFT_VOXELS, own - np.round(own), 0.0)
    first = np.floor(along.min(axis=1) - phase + _LATTICE_TOL)
    last = np.ceil(along.max(axis=1) - phase - _LATTICE_TOL)
    size = np.maximum(last - first + 1, 1).astype(int)
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = linear @ (first + phase)
    return Grid((int(size[0]), int(size[1]), int(size[2])), affine)


def _rim_margin(to_source: np.ndarray) -> np.ndarray:
    """Per source axis, in source voxels: a contract voxel, how far the covering grid's outermost
    points may lie beyond the input's outermost voxel centres (they take the edge voxels'
    values there)."""
    return np.abs(to_source[:3, :3]).max(axis=1)


@dataclass(frozen=True)
class GridMap:
    """How one input grid maps onto a contract grid, and back.

    Attributes:
        source: the input's grid (storage order, its own affine).
        target: the contract grid.
        ornt: nibabel orientation transform, source storage axes -> contract axes.
        exact: True when the target is the reoriented source (no interpolation either way).
    """

    source: Grid
    target: Grid
    ornt: np.ndarray
    exact: bool

    @classmethod
    def plan(cls, source: Grid, contract: Contract) -> GridMap:
        """Reorient ``source`` to the contract's axes; resample only if spacing or angle differ."""
        ornt = nib.orientations.ornt_transform(
            nib.orientations.io_orientation(source.affine),
            nib.orientations.axcodes2ornt(contract.orientation),
        )
        affine = source.affine @ nib.orientations.inv_ornt_aff(ornt, source.shape)
        shape = [0, 0, 0]
        for axis, (to, _) in enumerate(ornt):
            shape[int(to)] = source.shape[axis]
        drift = np.linalg.norm(affine[:3, :3] - contract_linear(contract), axis=0)
        if float(drift @ (np.asarray(shape) - 1)) <= EXACT_DRIFT_VOXELS * min(contract.spacing):
            return cls(source, Grid((shape[0], shape[1], shape[2]), affine), ornt, True)
        return cls(source, _covering_grid(source, contract, affine, shape), ornt, False)

    def forward(
        self,
        array: np.ndarray,
        *,
        order: int,
        cval: float = 0.0,
        box: Box | None = None,
        dtype: Any = None,
    ) -> np.ndarray:
        """``array`` (on the source grid) sampled on ``box`` of the contract grid (all of it).

        Args:
            order: 1 linear (MR, CT), 0 nearest (masks, labels).
            cval: the value outside the input's field of view (air, background, 0).
            box: the part of the contract grid to produce, e.g. a z-range or the canvas.
            dtype: of the result; float32 for linear, the input's for nearest by default.
        """
        box = box or Box.whole(self.target.shape)
        dtype = np.dtype(dtype or (np.float32 if order else np.asarray(array).dtype))
        if self.exact:
            view = nib.orientations.apply_orientation(np.asarray(array), self.ornt)
            out = np.empty(box.shape, dtype)
            _paste(out, view, np.asarray(box.start), cval)
            return out
        to_source = _snap(np.linalg.inv(self.source.affine) @ self.target.affine) @ box.shift()
        out = np.empty(box.shape, dtype)
        source = np.asarray(array)
        rim = _rim_margin(to_source)
        if order == 0:  # nearest: ties broken along the contract axes, not the storage order
            _resample(source, antialias.untie(to_source), out, order, cval, margin=rim)
            return out
        sigma = antialias.antialias_sigma(to_source[:3, :3])
        if not antialias.needs_filter(sigma):
            _resample(source, to_source, out, order, cval, margin=rim)
            return out
        # coarser than the input: Gaussian prefilter sized by the ratio (io/antialias.py)
        part, to_part, lo = antialias.prefiltered(source, to_source, out.shape, sigma)
        edges = (-lo, np.array(source.shape) - lo)
        _resample(part, to_part, out, order, cval, edges=edges, margin=rim)
        return out

    def inverse(
        self,
        array: np.ndarray,
        *,
        order: int,
        cval: float = 0.0,
        box: Box | None = None,
        dtype: Any = None,
        layout: str = "C",
    ) -> np.ndarray:
        """A contract-grid array (or ``box`` of it) put back on exactly the source grid.

        Source voxels outside what ``array`` covers get ``cval``. Orientation-only maps are exact.
        An integer ``dtype`` gets the interpolated values rounded (and clipped to its range),
        resampled in slabs of the result's slowest axis so that no float copy of the whole grid
        exists. ``layout``: the result's memory order, "C" or "F" (as NIfTI stores voxels, so
        that writing it needs no reordered copy).
        """
        box = box or Box.whole(self.target.shape)
        if tuple(np.shape(array)) != tuple(box.shape):
            raise ValueError(f"inverse: the array is {np.shape(array)}, its box {box.shape}")
        array = np.asarray(array)
        dtype = np.dtype(dtype or (np.float32 if order else array.dtype))
        out = np.empty(self.source.shape, dtype, order="F" if layout == "F" else "C")
        integer = np.issubdtype(dtype, np.integer)
        if self.exact:
            if integer and not np.issubdtype(array.dtype, np.integer):
                array = np.rint(array)  # casting alone would truncate
            view = nib.orientations.apply_orientation(out, self.ornt)  # writes land in ``out``
            _paste(view, array, -np.asarray(box.start), cval)
            return out
        to_box = np.linalg.inv(box.shift()) @ _snap(
            np.linalg.inv(self.target.affine) @ self.source.affine
        )
        if not integer:
            _resample(array, to_box, out, order, cval)
            return out
        limits = np.iinfo(dtype)
        axis = 2 if layout == "F" else 0  # the slowest axis: each slab is contiguous in ``out``
        step = max(1, _SLAB_VOXELS * out.shape[axis] // max(out.size, 1))
        for i0 in range(0, out.shape[axis], step):
            shape = list(out.shape)
            shape[axis] = min(step, out.shape[axis] - i0)
            part = np.empty(shape, np.float32)
            shift = np.eye(4)
            shift[axis, 3] = i0  # slab-local index -> source index
            _resample(array, to_box @ shift, part, order, cval)
            np.clip(np.rint(part, out=part), limits.min, limits.max, out=part)
            index: list[Any] = [slice(None)] * 3
            index[axis] = slice(i0, i0 + shape[axis])
            out[tuple(index)] = part
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source.to_dict(), "target": self.target.to_dict()}


def _paste(out: np.ndarray, src: np.ndarray, start: np.ndarray, cval: float) -> None:
    """``out[i] = src[i + start]`` where that exists, ``cval`` elsewhere (no interpolation)."""
    dst_sl, src_sl = [], []
    for axis in range(3):
        lo = max(int(start[axis]), 0)
        hi = min(int(start[axis]) + out.shape[axis], src.shape[axis])
        hi = max(hi, lo)
        src_sl.append(slice(lo, hi))
        dst_sl.append(slice(lo - int(start[axis]), hi - int(start[axis])))
    if any(d.start != 0 or d.stop != n for d, n in zip(dst_sl, out.shape, strict=True)):
        out[...] = cval  # part of the box lies outside the source
    out[tuple(dst_sl)] = src[tuple(src_sl)]


def _snap(to_grid: np.ndarray) -> np.ndarray:
    """A voxel-to-voxel map with float32-header noise (~1e-6 mm in NIfTI) snapped away, so that
    nearest-neighbour ties (a 4 mm grid over a 1 mm one samples exactly between voxels) fall the
    same way for one volume in any format; it moves a sample by under 1e-4 voxel."""
    snapped = np.array(to_grid, dtype=np.float64)
    snapped[:3, :3] = np.round(snapped[:3, :3], 6)
    snapped[:3, 3] = np.round(snapped[:3, 3], 4)
    return snapped


def _resample(
    src: np.ndarray,
    to_src: np.ndarray,
    out: np.ndarray,
    order: int,
    cval: float,
    edges: tuple[np.ndarray, np.ndarray] | None = None,
    margin: np.ndarray | None = None,
):
    """Fill ``out`` with ``src`` sampled at ``to_src @ index``: edge voxels are extended by half a
    voxel (or ``margin`` source voxels per axis beyond the outermost centres, if more), anything
    further outside ``src`` is ``cval``. ``edges``: the (first, end) indices of the whole input
    in ``src``'s indices when ``src`` is a part of it."""
    linear, offset = to_src[:3, :3], to_src[:3, 3]
    first, end = edges if edges is not None else (np.zeros(3), np.array(src.shape))
    reach = np.maximum(0.5, np.zeros(3) if margin is None else np.asarray(margin)) + _EDGE_EPS
    monomial = (np.abs(linear) > 1e-12).sum(axis=1) == 1  # each source axis follows one out axis
    diagonal = bool(np.all(np.abs(linear - np.diag(np.diag(linear))) <= 1e-12))
    if monomial.all():
        matrix = np.diag(linear) if diagonal else linear  # scipy's fast path for a diagonal
        ndimage.affine_transform(src, matrix, offset, output=out, order=order, mode="nearest")
        for axis in range(3):
            by = int(np.argmax(np.abs(linear[axis])))
            coord = linear[axis, by] * np.arange(out.shape[by]) + offset[axis]
            outside = (coord < first[axis] - reach[axis]) | (coord > end[axis] - 1 + reach[axis])
            index: list[Any] = [slice(None)] * 3
            index[by] = outside
            out[tuple(index)] = cval
        return
    rows = max(1, _SLAB_VOXELS // max(out.shape[1] * out.shape[2], 1))
    j = np.arange(out.shape[1])[None, :, None]
    k = np.arange(out.shape[2])[None, None, :]
    for i0 in range(0, out.shape[0], rows):  # slabs bound the field-of-view check's temporaries
        slab = out[i0 : i0 + rows]
        start = offset + linear[:, 0] * i0
        ndimage.affine_transform(src, linear, start, output=slab, order=order, mode="nearest")
        i = np.arange(slab.shape[0])[:, None, None]
        outside = np.zeros(slab.shape, bool)
        for axis in range(3):
            coord = linear[axis, 0] * i + linear[axis, 1] * j + linear[axis, 2] * k + start[axis]
            outside |= (coord < first[axis] - reach[axis]) | (coord > end[axis] - 1 + reach[axis])
        slab[outside] = cval


def resample_onto(
    array: np.ndarray,
    affine: np.ndarray,
    target_affine: np.ndarray,
    shape: tuple[int, ...],
    order: int = 1,
    cval: float = float("nan"),
) -> np.ndarray:
    """float32 ``array`` (voxel -> RAS+ ``affine``) sampled on the grid (``target_affine``,
    ``shape``) at ``order`` (1: trilinear); ``cval`` outside its field of view (edge voxels
    extended by half a voxel, as everywhere here)."""
    to_src = _snap(np.linalg.inv(np.asarray(affine, np.float64)) @ np.asarray(target_affine))
    out = np.empty(tuple(int(n) for n in shape), np.float32)
    _resample(np.asarray(array, np.float32), to_src, out, order, cval)
    return out
