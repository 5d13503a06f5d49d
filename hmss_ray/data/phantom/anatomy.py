"""Phantom anatomy: label maps of tissue classes, drawn from a seeded generator.

A head or pelvis is built from rotated ellipsoids in normalised coordinates (in-plane axes share one
scale so circles stay round); :mod:`.render` turns the labels into CT and MR.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

import numpy as np

Grid = tuple[np.ndarray, np.ndarray, np.ndarray]  # u, v, w coordinates of every voxel


class T(IntEnum):
    """Tissue classes of the label map (the index into the intensity tables below)."""

    AIR = 0
    SOFT = 1
    FAT = 2
    CORTEX = 3
    MARROW = 4
    CSF = 5
    GREY = 6
    WHITE = 7
    GAS = 8  # air inside the body: sinuses, rectal gas
    FLUID = 9
    MUSCLE = 10


def grid(shape: Sequence[int]) -> Grid:
    # in-plane coordinates share one scale so circles stay round; axial spans [-1, 1]
    nx, ny, nz = shape
    half = max(nx, ny) / 2.0
    u = (np.arange(nx) - (nx - 1) / 2.0) / half
    v = (np.arange(ny) - (ny - 1) / 2.0) / half
    w = (np.arange(nz) - (nz - 1) / 2.0) / (nz / 2.0)
    return np.meshgrid(u, v, w, indexing="ij")


def _q(
    grid: Grid, centre: Sequence[float], radii: Sequence[float], angle: float = 0.0
) -> np.ndarray:
    """Normalised ellipsoid radius (1 on the surface), rotated in-plane by ``angle``."""
    u, v, w = grid
    du, dv = u - centre[0], v - centre[1]
    c, s = np.cos(angle), np.sin(angle)
    a = (c * du + s * dv) / radii[0]
    b = (-s * du + c * dv) / radii[1]
    d = (w - centre[2]) / radii[2]
    return np.sqrt(a * a + b * b + d * d)


def _bone(labels: np.ndarray, q: np.ndarray, cortex: float) -> None:
    labels[q <= 1] = T.CORTEX
    labels[q <= 1 - cortex] = T.MARROW


def head(grid: Grid, rng: np.random.Generator, texture: np.ndarray) -> np.ndarray:
    """Labels: scalp with fat, skull of varying thickness with marrow, CSF, grey and white
    matter, ventricles; below the skull base, soft tissue with air sinuses in bony walls."""
    u, v, w = grid
    s = rng.uniform(0.82, 0.97)
    cz, w_base = rng.uniform(-0.5, -0.3), rng.uniform(-0.7, -0.55)
    head = _q(
        grid,
        (0, 0, cz),
        (0.76 * s * rng.uniform(0.95, 1.05), 0.9 * s, rng.uniform(1.25, 1.45)),
        rng.uniform(-0.15, 0.15),
    )
    phi = np.arctan2(v, u)
    # skull thickness varies around the head (thicker occiput/frontal, thin temporal)
    t_skull = rng.uniform(0.07, 0.1) * (
        1
        + 0.35 * np.sin(2 * phi + rng.uniform(0, 6.28))
        + 0.15 * np.cos(3 * phi + rng.uniform(0, 6.28))
    )
    t_scalp = rng.uniform(0.05, 0.08)
    inner = 1 - t_scalp - t_skull
    labels = np.zeros(u.shape, np.uint8)
    labels[head <= 1] = T.SOFT
    labels[(head <= 1 - 0.3 * t_scalp) & (head > 1 - 0.7 * t_scalp)] = T.FAT
    labels[(head <= 1 - t_scalp) & (head > inner)] = T.CORTEX
    labels[(head <= 1 - t_scalp - 0.3 * t_skull) & (head > inner + 0.3 * t_skull)] = T.MARROW
    cranium = (head <= inner) & (w >= w_base)
    labels[cranium] = T.CSF
    brain = cranium & (head <= inner - 0.03)
    labels[brain] = T.GREY
    labels[brain & (head <= (inner - 0.03) * (0.8 + 0.05 * texture))] = T.WHITE
    for side in (-1, 1):
        labels[_q(grid, (side * 0.1 * s, 0.02, cz + 0.3), (0.06 * s, 0.24 * s, 0.3)) <= 1] = T.CSF
    face = (head <= inner) & (w < w_base)
    labels[face] = T.SOFT
    labels[face & (w >= w_base - 0.12)] = T.CORTEX  # skull base plate
    for centre, radii in (
        ((-0.22 * s, 0.45 * s), (0.13, 0.17)),
        ((0.22 * s, 0.45 * s), (0.13, 0.17)),
        ((0.0, 0.62 * s), (0.05, 0.18)),
    ):
        q = _q(grid, (*centre, w_base - 0.3), (*radii, 0.25))
        labels[face & (q <= 1.25)] = T.CORTEX  # thin bony wall around each air cavity
        labels[face & (q <= 1)] = T.GAS
    return labels


def pelvis(grid: Grid, rng: np.random.Generator, texture: np.ndarray) -> np.ndarray:
    """Labels: body with subcutaneous and visceral fat, gluteal and psoas muscles, bladder,
    rectum (often with gas), iliac wings, sacrum, femoral heads and pubic bones."""
    u, _, w = grid
    s, ay = rng.uniform(0.85, 1.0), rng.uniform(0.56, 0.66)
    inf = np.inf
    body = _q(grid, (0, 0, 0), (0.92 * s, ay * s, inf), rng.uniform(-0.08, 0.08)) / (1 + 0.04 * w)
    t_fat = rng.uniform(0.06, 0.16)  # subcutaneous fat differs a lot between patients
    labels = np.zeros(u.shape, np.uint8)
    inside = body <= 1
    labels[inside] = T.SOFT
    labels[inside & (body > 1 - t_fat) & (body <= 0.98)] = T.FAT
    labels[inside & (body <= 1 - t_fat) & (texture > 0.9)] = T.FAT  # visceral fat
    for side in (-1, 1):
        labels[
            _q(grid, (side * 0.42 * s, -0.28 * s, 0), (0.3 * s, 0.18 * s, inf), side * 0.4) <= 1
        ] = T.MUSCLE
        labels[_q(grid, (side * 0.3 * s, 0.12 * s, 0), (0.09 * s, 0.11 * s, inf)) <= 1] = T.MUSCLE
    r_bladder = rng.uniform(0.12, 0.22) * s
    labels[_q(grid, (0, 0.22 * s, -0.1), (r_bladder, 0.8 * r_bladder, 0.7)) <= 1] = T.FLUID
    labels[_q(grid, (0, -0.32 * s, 0), (0.07 * s, 0.07 * s, inf)) <= 1] = T.SOFT
    if rng.random() < 0.7:
        labels[_q(grid, (0, -0.32 * s, 0), (0.035 * s, 0.035 * s, inf)) <= 1] = T.GAS
    for side in (-1, 1):
        _bone(
            labels,
            _q(grid, (side * 0.55 * s, -0.1 * s, 0.6), (0.1 * s, 0.26 * s, 0.75), side * 0.5),
            0.3,
        )
        _bone(labels, _q(grid, (side * 0.48 * s, 0.02, -0.45), (0.13 * s, 0.13 * s, 0.5)), 0.3)
        _bone(labels, _q(grid, (side * 0.1 * s, 0.46 * s, -0.6), (0.07 * s, 0.05 * s, 0.4)), 0.4)
    _bone(labels, _q(grid, (0, -0.46 * ay * s / 0.6, 0.45), (0.16 * s, 0.07 * s, 0.8)), 0.3)
    return labels
