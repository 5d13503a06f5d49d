"""The dose grid: CT, sCT and structures averaged down to a coarse grid (3-5 mm) before planning.

A 256x256x180 CT at 1 mm has 11.8 M voxels; a pencil-beam dose influence matrix on it would take
minutes and gigabytes. Planning and recomputation both run on the same coarse grid (box-averaged
HU, structure fractions >= 0.5), so a CT/sCT difference is never hidden by resampling one but not
the other.

Before that, every array is reordered to the patient frame the engine's gantry angles are defined
in (:class:`PatientFrame`): axes permuted and flipped to the closest LPS (DICOM patient axes:
x to the patient's left, y posterior, z superior), so that gantry 0 is a beam from anterior and
gantry 90 one from the patient's left (IEC 61217, patient supine head first), whatever the
input's storage order. An oblique input keeps its obliquity (the closest axes are used): the
beams are then off by that angle, a few degrees at most for scanner data.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

DEFAULT_SPACING_MM = 4.0
PATIENT_AXES = ("L", "P", "S")  # the engine's world frame: SimpleITK's (DICOM's) LPS


@dataclass(frozen=True)
class PatientFrame:
    """The way from an input's storage order to the patient (LPS) frame, and back.

    ``forward`` and ``inverse`` permute and flip axes only: nothing is interpolated.
    """

    to_patient: np.ndarray  # nibabel orientation transform, storage -> LPS
    to_storage: np.ndarray  # LPS -> storage
    spacing: tuple[float, float, float]  # mm along the LPS axes

    @classmethod
    def of(cls, affine: np.ndarray) -> PatientFrame:
        """The frame of arrays whose voxel -> RAS+ mm matrix is ``affine``."""
        storage = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))
        patient = nib.orientations.axcodes2ornt(PATIENT_AXES)
        zooms = np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))
        spacing = np.empty(3)
        spacing[storage[:, 0].astype(int)] = zooms  # RAS and LPS share the axis order
        x, y, z = (float(v) for v in spacing)
        return cls(
            nib.orientations.ornt_transform(storage, patient),
            nib.orientations.ornt_transform(patient, storage),
            (x, y, z),
        )

    def forward(self, array: np.ndarray) -> np.ndarray:
        """A storage-order array in the patient frame (a view where possible)."""
        return nib.orientations.apply_orientation(np.asarray(array), self.to_patient)

    def inverse(self, array: np.ndarray) -> np.ndarray:
        """A patient-frame array back in the input's storage order."""
        return nib.orientations.apply_orientation(np.asarray(array), self.to_storage)


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
