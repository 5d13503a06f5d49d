"""Rendering a phantom case: anatomy -> labels -> CT in HU (int16) and MR of the centre's protocol.

Each case is drawn from its own seeded generators, so adding cases never changes existing ones:
one for the anatomy (the same patient at every voxel size), one for its look (tissue values, MR
sequence, texture, bias field), one for the voxel noise. The CT adds texture and quantum noise;
the MR applies the sequence's relative signals, the scanner's gain and contrast curve, a smooth
bias field and Rician noise. Cortical bone, teeth and air are dark on every MR sequence, as in
real scans: telling them apart takes shape and context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from hmss_ray.data.phantom.anatomy import Anatomy
from hmss_ray.data.phantom.ids import PhantomId
from hmss_ray.data.phantom.paint import Grid, paint
from hmss_ray.data.phantom.regions import SCANNERS, Box, Region, region, spacing_for
from hmss_ray.data.phantom.shapes import FourierField
from hmss_ray.data.phantom.tissues import CT_HU, CT_SPREAD, CT_TEXTURE, MR_SIGNAL, NOT_BODY, T
from hmss_ray.data.synthrad import CaseId

HU_LIMITS = (-1024, 3071)  # int16 CT as released (SynthRAD2025 clips to this range)


@dataclass(frozen=True)
class PhantomCase:
    """One case on one grid: int16 CT (HU), float32 MR, uint8 body mask and tissue labels
    (:class:`~.tissues.T`), the 4x4 RAS affine (mm) and the MR sequence."""

    id: PhantomId
    ct: np.ndarray
    mr: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    sequence: str

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in np.abs(np.diag(self.affine)[:3]))


def case_ids(region_name: str, count: int, first: int = 1) -> list[PhantomId]:
    """``count`` ids of a region numbered from ``first``, its centres taken in turn."""
    centres = region(region_name).centres
    return [
        PhantomId(1, region_name, centres[(n - 1) % len(centres)], n)
        for n in range(first, first + count)
    ]


def _seeds(case_id: PhantomId, seed: int, spec: Region, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, spec.stream, case_id.number, stream])


def anatomy_of(case_id: CaseId | str, seed: int = 0) -> Anatomy:
    """The patient of a case before rendering: its solids and landmarks (mm)."""
    pid = PhantomId.of(case_id)
    spec = region(pid.region)
    return spec.build(_seeds(pid, seed, spec, 0))


def _sequence(spec: Region, centre: str, rng: np.random.Generator) -> str:
    if centre not in SCANNERS:
        raise ValueError(f"no centre {centre!r}; centres: {', '.join(SCANNERS)}")
    # a centre the data set lacks for this region (pelvis B) scans like the region's first one
    choices = spec.sequences.get(centre, spec.sequences[spec.centres[0]])
    names, weights = zip(*choices, strict=True)
    draw, total = rng.random(), 0.0
    for name, weight in zip(names, weights, strict=True):
        total += weight
        if draw < total:
            return name
    return names[-1]


def _mr(signal, texture, grid: Grid, centre: str, look, noise) -> np.ndarray:
    gain, gamma, strength, level = SCANNERS[centre]
    signal = np.clip(signal * (1.0 + 0.04 * texture), 0.0, None) ** gamma
    x, y, z = (c / 200.0 for c in grid.coords())
    basis = (x, y, z, x * y, x * z, y * z, x * x - 0.3, y * y - 0.3, z * z - 0.3)
    coeffs = look.normal(0, 0.5, len(basis))
    field = sum(float(c) * b for c, b in zip(coeffs, basis, strict=True))
    signal = signal * (np.exp(strength * field) * gain)  # a smooth, low-order bias field
    sd = level * gain * look.uniform(0.8, 1.2)
    # Rician: the magnitude of a complex signal with Gaussian noise on both channels
    real = signal + noise.normal(0, sd, signal.shape).astype(np.float32)
    imag = noise.normal(0, sd, signal.shape).astype(np.float32)
    return np.sqrt(real * real + imag * imag).astype(np.float32)


def _mask(labels: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """The body outline as SynthRAD draws it: holes filled per slice, a few mm of margin."""
    body = ~np.isin(labels, [int(t) for t in NOT_BODY])
    for k in range(body.shape[2]):
        body[:, :, k] = ndimage.binary_fill_holes(body[:, :, k])
    cross = ndimage.generate_binary_structure(2, 1)[:, :, None]
    margin = max(1, round(3.0 / min(spacing[0], spacing[1])))
    return ndimage.binary_dilation(body, cross, iterations=margin).astype(np.uint8)


def _storage(grid: Grid) -> np.ndarray:
    """The affine of arrays stored as scanners write them (x and y reversed, LPS order)."""
    sx, sy, sz = grid.spacing
    affine = np.diag([-sx, -sy, sz, 1.0])
    affine[:3, 3] = [grid.x[-1], grid.y[-1], grid.z[0]]
    return affine


def make_case(
    case_id: CaseId | str,
    seed: int = 0,
    shape: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    fov: Box | None = None,
) -> PhantomCase:
    """Render one case; deterministic for (``seed``, id) whatever else is rendered.

    Args:
        case_id: ``1BA001``-style id (or a ``CaseId``/``PhantomId``); its region and centre
            choose the anatomy and the MR protocol.
        shape: fit the field of view into at most this many voxels (X, Y, Z), in-plane isotropic.
        spacing: voxel size in mm (default: the data set's, e.g. 1 mm for brain).
        fov: ((x0, x1), (y0, y1), (z0, z1)) mm to render instead of the region's field of view.
    """
    pid = PhantomId.of(case_id)
    spec = region(pid.region)
    anatomy = spec.build(_seeds(pid, seed, spec, 0))
    look, noise = _seeds(pid, seed, spec, 1), _seeds(pid, seed, spec, 2)
    sequence = _sequence(spec, pid.centre, look)
    box = fov or spec.fov
    grid = Grid.covering(box, spacing_for(spec, spacing, shape, box))
    n = len(T)
    hu_of = CT_HU + look.standard_normal(n).astype(np.float32) * CT_SPREAD
    mr_of = MR_SIGNAL[sequence] * look.uniform(0.95, 1.05, n).astype(np.float32)
    labels, (hu, signal) = paint(anatomy, grid, np.stack([hu_of, mr_of], axis=1))
    texture = FourierField(look, 2.0, 12.0, 16)(*grid.coords())
    ct = hu + CT_TEXTURE[labels] * texture
    ct += noise.normal(0, spec.ct_noise, hu.shape).astype(np.float32)
    ct = np.clip(np.rint(ct), *HU_LIMITS).astype(np.int16)
    mr = _mr(signal, texture, grid, pid.centre, look, noise)
    mask = _mask(labels, grid.spacing)
    stored = [np.ascontiguousarray(a[::-1, ::-1, :]) for a in (ct, mr, mask, labels)]
    return PhantomCase(pid, *stored, affine=_storage(grid), sequence=sequence)
