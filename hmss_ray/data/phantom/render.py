"""Rendering a phantom case: labels -> CT in HU (int16) and MR with a centre-specific contrast.

Each case is a label map drawn from its own seeded generator (so adding cases never changes the
existing ones), rendered twice: as CT in HU and as MR in scanner units with a smooth bias field and
Rician noise. Cortical bone, marrow and air are all dark on MR, as in the real data: telling them
apart takes shape and context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from hmss_ray.data.phantom.anatomy import Grid, T, grid, head, pelvis
from hmss_ray.data.synthrad import CaseId

CENTRES = {"brain": ("A", "B", "C"), "pelvis": ("A", "C")}  # SynthRAD2023 has no pelvis from B
DEFAULT_SHAPES = {"brain": (64, 64, 24), "pelvis": (64, 48, 16)}
SPACING_MM = {"brain": (1.0, 1.0, 1.0), "pelvis": (1.0, 1.0, 2.5)}

# HU mean and per-case spread, per class (order of T)
CT_HU = np.array([-1000, 40, -100, 1550, 450, 8, 40, 28, -1000, 10, 50], np.float32)
CT_SPREAD = np.array([0, 8, 10, 200, 120, 3, 4, 3, 0, 4, 6], np.float32)
CT_TEXTURE = np.array([0, 6, 12, 150, 90, 2, 3, 3, 0, 2, 5], np.float32)
# relative MR signal per class: bone (CORTEX, MARROW) and air (AIR, GAS) dark on every sequence
MR_TABLES = {
    "t1": np.array([0, 0.45, 0.95, 0.03, 0.10, 0.15, 0.50, 0.70, 0, 0.12, 0.35], np.float32),
    "t1c": np.array([0, 0.55, 0.90, 0.03, 0.12, 0.20, 0.56, 0.68, 0, 0.16, 0.42], np.float32),
    "t2": np.array([0, 0.40, 0.70, 0.02, 0.08, 1.00, 0.60, 0.45, 0, 1.00, 0.20], np.float32),
}
# per centre: scanner gain, gamma, bias-field strength, noise (fraction of gain)
SCANNERS = {
    "A": (1000.0, 1.0, 0.15, 0.02),
    "B": (600.0, 0.9, 0.25, 0.03),
    "C": (1800.0, 1.15, 0.3, 0.025),
}


@dataclass(frozen=True)
class PhantomCase:
    """One phantom case: int16 CT (HU), float32 MR, uint8 mask, 4x4 affine (mm), MR sequence."""

    id: CaseId
    ct: np.ndarray
    mr: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    sequence: str


def case_ids(region: str, count: int, first: int = 1) -> list[CaseId]:
    """``count`` ids of ``region`` numbered from ``first``, centres taken in turn."""
    centres = CENTRES[region]
    return [
        CaseId(1, region, centres[(n - 1) % len(centres)], n) for n in range(first, first + count)
    ]


def _smooth_field(shape: Sequence[int], rng: np.random.Generator, sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return (field / (field.std() + 1e-8)).astype(np.float32)


def _render_ct(labels: np.ndarray, texture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    table = CT_HU + rng.normal(0, 1, CT_HU.shape).astype(np.float32) * CT_SPREAD
    hu = table[labels] + CT_TEXTURE[labels] * texture
    hu = ndimage.gaussian_filter(hu, (0.6, 0.6, 0.3))  # partial volume at tissue borders
    hu += rng.normal(0, 6, hu.shape)
    return np.clip(np.rint(hu), -1024, 1900).astype(np.int16)  # densest cortical bone ~1900 HU


def _render_mr(
    labels: np.ndarray,
    texture: np.ndarray,
    grid: Grid,
    sequence: str,
    centre: str,
    rng: np.random.Generator,
) -> np.ndarray:
    gain, gamma, bias_strength, noise = SCANNERS[centre]
    table = MR_TABLES[sequence] * rng.uniform(0.93, 1.07, len(T)).astype(np.float32)
    signal = table[labels] * (1 + 0.05 * texture)
    signal = np.clip(ndimage.gaussian_filter(signal, (0.7, 0.7, 0.35)), 0, None) ** gamma
    u, v, w = grid
    basis = np.stack([u, v, w, u * v, u * u, v * v])  # a smooth, low-order bias field
    bias = np.exp(bias_strength * np.tensordot(rng.normal(0, 0.5, 6), basis, axes=1))
    signal = signal * bias * gain
    sd = noise * gain * rng.uniform(0.8, 1.2)
    # Rician: magnitude of a complex signal with Gaussian noise on both channels
    real = signal + rng.normal(0, sd, signal.shape)
    return np.sqrt(real * real + rng.normal(0, sd, signal.shape) ** 2).astype(np.float32)


def _affine(shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    # LPS-stored scanner data read as RAS: x and y flipped, origin at the volume centre
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    return affine


def make_case(case_id: CaseId, seed: int = 0, shape: Sequence[int] | None = None) -> PhantomCase:
    """Render one case; deterministic for (``seed``, id). ``shape`` varies +-4 voxels in-plane."""
    region_code = 1 if case_id.region == "brain" else 2
    rng = np.random.default_rng([seed, region_code, case_id.number])
    base = np.asarray(shape or DEFAULT_SHAPES[case_id.region])
    dims = (*(base[:2] + rng.integers(-4, 5, 2)), int(base[2]))
    coords = grid(dims)
    texture = _smooth_field(dims, rng, 2.5)
    build = head if case_id.region == "brain" else pelvis
    labels = build(coords, rng, texture)
    body = ndimage.binary_fill_holes(labels != T.AIR, np.ones((3, 3, 1)))
    mask = ndimage.binary_dilation(body, np.ones((3, 3, 1)))  # SynthRAD masks have a margin
    if case_id.region == "brain":
        sequence = "t1" if case_id.centre == "A" else "t1c"  # B and C used gadolinium
    else:
        sequence = "t1" if rng.random() < 2 / 3 else "t2"
    ct = _render_ct(labels, texture, rng)
    u, v, _ = coords
    couch = (v < v.min() + 2.5 / (max(dims[:2]) / 2)) & (np.abs(u) < 0.8) & ~mask
    ct[couch] = -450  # the couch is in the CT, never in the MR nor the mask
    mr = _render_mr(labels, texture, coords, sequence, case_id.centre, rng)
    affine = _affine(dims, SPACING_MM[case_id.region])
    return PhantomCase(case_id, ct, mr, mask.astype(np.uint8), affine, sequence)
