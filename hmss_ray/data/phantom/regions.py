"""The five phantom regions: field of view, voxel spacing, centres, MR sequences, scanners.

Both SynthRAD editions: 2023 (brain, pelvis; centres A-C; NIfTI) and 2025 (head-neck HN, thorax
TH, abdomen AB; centres A-E; MetaImage). Fields of view are fixed boxes in patient millimetres
(x right, y anterior, z superior); the clinical spacing is the data set's (2023: brain 1 mm,
pelvis 1x1x2.5 mm; 2025: 1x1x3 mm), any other spacing renders the same patients.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from hmss_ray.data.phantom import abdomen, head, pelvis, thorax
from hmss_ray.data.phantom.anatomy import Anatomy

Box = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
EDITIONS = {"2023": ("brain", "pelvis"), "2025": ("HN", "TH", "AB")}
SUFFIXES = {"2023": ".nii.gz", "2025": ".mha"}
OVERVIEW_DIRS = {"2023": "overview", "2025": "overviews"}
COARSE_SHAPE = (64, 64, 24)  # the whole field of view in about 64 x 64 x 24 voxels

# per centre: scanner gain, gamma (contrast curve), bias-field strength, noise (fraction of gain)
SCANNERS = {
    "A": (1000.0, 1.0, 0.25, 0.020),
    "B": (600.0, 0.9, 0.35, 0.030),
    "C": (1800.0, 1.15, 0.40, 0.025),
    "D": (300.0, 1.05, 0.30, 0.035),
    "E": (2500.0, 0.95, 0.35, 0.022),
}


@dataclass(frozen=True)
class Region:
    """One anatomical region of one edition.

    Attributes:
        fov: (low, high) mm per axis of the rendered box (patient coordinates).
        spacing: the data set's voxel size (mm).
        sequences: per centre, MR sequences with their probability.
        ct_noise: sd of the CT's quantum noise (HU) per voxel.
    """

    name: str
    edition: str
    stream: int  # the region's part of every case's random seed
    fov: Box
    spacing: tuple[float, float, float]
    centres: tuple[str, ...]
    sequences: dict[str, tuple[tuple[str, float], ...]]
    ct_noise: float
    build: Callable[[np.random.Generator], Anatomy]


def _same(centres: str, *choice: tuple[str, float]) -> dict[str, tuple[tuple[str, float], ...]]:
    return {centre: choice for centre in centres}


T1, T1C, T2 = ("t1", 1.0), ("t1c", 1.0), ("t2", 1.0)
REGIONS = {
    r.name: r
    for r in (
        # SynthRAD2023: brain A T1, B and C T1 with gadolinium; pelvis 2/3 T1, 1/3 T2, no centre B
        Region("brain", "2023", 1, ((-112, 112), (-128, 128), (-120, 116)), (1.0, 1.0, 1.0),
               ("A", "B", "C"), {"A": (T1,), "B": (T1C,), "C": (T1C,)}, 10.0, head.head),
        Region("pelvis", "2023", 2, ((-270, 270), (-190, 190), (-110, 140)), (1.0, 1.0, 2.5),
               ("A", "C"), _same("AC", ("t1", 2 / 3), ("t2", 1 / 3)), 12.0, pelvis.pelvis),
        # SynthRAD2025: five centres, each with its own protocol per region
        Region("HN", "2025", 3, ((-120, 120), (-128, 128), (-186, 54)), (1.0, 1.0, 3.0),
               tuple("ABCDE"), {"A": (T1,), "B": (T1C,), "C": (T2,), "D": (T1,), "E": (T1C,)},
               10.0, head.head),
        Region("TH", "2025", 4, ((-250, 250), (-180, 180), (-150, 150)), (1.0, 1.0, 3.0),
               tuple("ABCDE"), {"A": (T1,), "B": (T1,), "C": (T2,), "D": (T1C,), "E": (T2,)},
               12.0, thorax.thorax),
        Region("AB", "2025", 5, ((-240, 240), (-180, 180), (-135, 135)), (1.0, 1.0, 3.0),
               tuple("ABCDE"), {"A": (T1,), "B": (T2,), "C": (T1,), "D": (T1C,), "E": (T2,)},
               14.0, abdomen.abdomen),
    )
}  # fmt: skip


def region(name: str) -> Region:
    if name not in REGIONS:
        raise ValueError(f"unknown region {name!r}; choose from: {', '.join(REGIONS)}")
    return REGIONS[name]


def spacing_for(
    spec: Region,
    spacing: Sequence[float] | None = None,
    shape: Sequence[int] | None = None,
    fov: Box | None = None,
) -> tuple[float, float, float]:
    """The voxel size (mm).

    Args:
        spacing: used as given.
        shape: otherwise, fit the field of view (``fov`` or the region's) into at most this
            many voxels, in-plane isotropic.

    Without either: the data set's own spacing.
    """
    if spacing is not None and shape is not None:
        raise ValueError("give spacing or shape, not both")
    if spacing is not None:
        return (float(spacing[0]), float(spacing[1]), float(spacing[2]))
    if shape is None:
        return spec.spacing
    extent = [hi - lo for lo, hi in (fov or spec.fov)]
    in_plane = max(extent[0] / shape[0], extent[1] / shape[1])
    return (in_plane, in_plane, extent[2] / shape[2])


def box_around(centre: Sequence[float], size: Sequence[float]) -> Box:
    """A box of ``size`` mm centred on ``centre`` (mm), e.g. a small field of view for a test."""
    lo_hi = [(float(c) - s / 2, float(c) + s / 2) for c, s in zip(centre, size, strict=True)]
    return (lo_hi[0], lo_hi[1], lo_hi[2])
