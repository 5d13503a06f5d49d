"""Targets and organs at risk: user masks (any format :mod:`hmss_ray.io` reads), a DICOM RTSTRUCT,
or, for phantoms, a target placed from the tissue labels in the anatomy the region treats.

Every structure ends as a boolean array on the CT's grid (same storage order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.draw import polygon

from hmss_ray.config import UserError
from hmss_ray.io import Volume, read_volume
from hmss_ray.io.align import align_to

BODY_HU = -300.0  # the body, when no mask is given: the CT's largest component above this
PLANE_TOLERANCE_VOX = 0.1  # a contour off the CT's axial planes by more is an error


def read_mask(path: str | Path, ct: Volume, name: str = "mask") -> np.ndarray:
    """A mask file on ``ct``'s grid (any storage order of the same voxels), voxels > 0."""
    volume = read_volume(path)
    try:
        aligned = align_to(volume, ct.affine, ct.shape, tolerance_mm=0.5)
    except UserError as exc:
        raise UserError(f"{name} {Path(path).name}: {exc} (the CT's grid)") from exc
    mask = np.asarray(aligned.array) > 0
    if not mask.any():
        raise UserError(f"{name} {Path(path).name} is empty")
    return mask


def body_from_ct(hu: np.ndarray) -> np.ndarray:
    """The largest connected region above :data:`BODY_HU`, holes filled (no couch, no air)."""
    labels, count = ndimage.label(np.asarray(hu) > BODY_HU)
    if count == 0:
        raise UserError(f"no voxel of the CT is above {BODY_HU:g} HU: no body to plan on")
    largest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return ndimage.binary_fill_holes(labels == largest)


def rtstruct_masks(
    path: str | Path, ct: Volume, names: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """The ROIs of an RTSTRUCT (all, or ``names``) rasterised on ``ct``'s grid.

    Contour points (DICOM patient LPS mm) are mapped through the CT's affine; each closed planar
    contour fills the voxels whose centres it encloses, on the axial plane it lies on; contours on
    one plane combine by parity (a contour inside another is a hole).
    """
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
        rois = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
        contours = {int(c.ReferencedROINumber): c for c in ds.ROIContourSequence}
    except (OSError, AttributeError, pydicom.errors.InvalidDicomError) as exc:
        raise UserError(f"{Path(path).name} is not a readable RTSTRUCT ({exc})") from exc
    wanted = list(names) if names else list(rois.values())
    missing = sorted(set(wanted) - set(rois.values()))
    if missing:
        raise UserError(f"RTSTRUCT has no ROI {missing}; it has {sorted(rois.values())}")
    to_voxel = np.linalg.inv(np.asarray(ct.affine, dtype=np.float64))
    out = {}
    for number, name in rois.items():
        if name in wanted:
            sequence = getattr(contours.get(number), "ContourSequence", [])
            out[name] = _rasterise(sequence, to_voxel, ct.shape, name)
    return out


def _rasterise(sequence, to_voxel: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for contour in sequence:
        lps = np.asarray(contour.ContourData, dtype=np.float64).reshape(-1, 3)
        ras = np.column_stack([-lps[:, 0], -lps[:, 1], lps[:, 2], np.ones(len(lps))])
        ijk = (to_voxel @ ras.T).T[:, :3]
        k = np.round(ijk[:, 2])
        if np.abs(ijk[:, 2] - k).max() > PLANE_TOLERANCE_VOX or np.ptp(k) > 0:
            raise UserError(f"ROI {name}: a contour is not on one of the CT's axial planes")
        if not 0 <= k[0] < shape[2]:
            continue
        rows, cols = polygon(ijk[:, 0], ijk[:, 1], shape[:2])
        plane = np.zeros(shape[:2], dtype=bool)
        plane[rows, cols] = True
        mask[:, :, int(k[0])] ^= plane
    if not mask.any():
        raise UserError(f"ROI {name} covers no voxel of the CT")
    return mask


def parse_named(items: Sequence[str]) -> dict[str, str]:
    """``["NAME=VALUE", ...]`` -> ``{NAME: VALUE}`` (``--oar`` arguments)."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise UserError(f"--oar {item!r}: expected NAME=MASK")
        out[name] = value
    return out


def sphere(shape: Sequence[int], spacing: Sequence[float], centre, radius_mm: float) -> np.ndarray:
    """Voxels whose centres lie within ``radius_mm`` of ``centre`` (voxel indices)."""
    axes = [(np.arange(n) - c) * s for n, c, s in zip(shape, centre, spacing, strict=True)]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    return x**2 + y**2 + z**2 <= radius_mm**2


def deepest_point(mask: np.ndarray, spacing: Sequence[float]) -> tuple[int, ...]:
    """The voxel of ``mask`` farthest from its surface: where a sphere fits best."""
    if not mask.any():
        raise UserError("the organ a phantom target goes in is missing from its labels")
    depth = ndimage.distance_transform_edt(mask, sampling=spacing)
    return tuple(int(i) for i in np.unravel_index(np.argmax(depth), mask.shape))


def with_body(structures: Mapping[str, np.ndarray], body: np.ndarray) -> dict[str, np.ndarray]:
    """Every structure clipped to the body."""
    return {name: mask & body for name, mask in structures.items()}
