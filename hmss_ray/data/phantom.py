"""Deterministic paired head and pelvis phantoms, written in the SynthRAD2023 layout.

Each case is a label map of tissue classes drawn from its own seeded generator (so adding cases
never changes the existing ones), rendered twice: as CT in HU (int16) and as MR in scanner units
with a centre-specific contrast, a smooth bias field and Rician noise. Cortical bone, marrow and
air are all dark on MR, as in the real data: telling them apart takes shape and context.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from hmss_ray.data.synthrad import CaseId

CENTRES = {"brain": ("A", "B", "C"), "pelvis": ("A", "C")}  # SynthRAD2023 has no pelvis from B
Grid = tuple[np.ndarray, np.ndarray, np.ndarray]  # u, v, w coordinates of every voxel
DEFAULT_SHAPES = {"brain": (64, 64, 24), "pelvis": (64, 48, 16)}
SPACING_MM = {"brain": (1.0, 1.0, 1.0), "pelvis": (1.0, 1.0, 2.5)}


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


def _grid(shape: Sequence[int]) -> Grid:
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


def _head(grid: Grid, rng: np.random.Generator, texture: np.ndarray) -> np.ndarray:
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


def _pelvis(grid: Grid, rng: np.random.Generator, texture: np.ndarray) -> np.ndarray:
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
    grid = _grid(dims)
    texture = _smooth_field(dims, rng, 2.5)
    build = _head if case_id.region == "brain" else _pelvis
    labels = build(grid, rng, texture)
    body = ndimage.binary_fill_holes(labels != T.AIR, np.ones((3, 3, 1)))
    mask = ndimage.binary_dilation(body, np.ones((3, 3, 1)))  # SynthRAD masks have a margin
    if case_id.region == "brain":
        sequence = "t1" if case_id.centre == "A" else "t1c"  # B and C used gadolinium
    else:
        sequence = "t1" if rng.random() < 2 / 3 else "t2"
    ct = _render_ct(labels, texture, rng)
    u, v, _ = grid
    couch = (v < v.min() + 2.5 / (max(dims[:2]) / 2)) & (np.abs(u) < 0.8) & ~mask
    ct[couch] = -450  # the couch is in the CT, never in the MR nor the mask
    mr = _render_mr(labels, texture, grid, sequence, case_id.centre, rng)
    affine = _affine(dims, SPACING_MM[case_id.region])
    return PhantomCase(case_id, ct, mr, mask.astype(np.uint8), affine, sequence)


# --- writing a data set ----------------------------------------------------------------------

CORRUPTIONS = (
    "truncated_gzip",
    "not_gzip",
    "missing_mr",
    "missing_mask",
    "not_3d",
    "shape_mismatch",
    "affine_mismatch",
    "nan_voxels",
    "empty_mask",
    "ct_out_of_range",
)


@dataclass
class PhantomSummary:
    """What :func:`write_dataset` wrote: ids by role, and the damage done to each corrupt case."""

    root: Path
    paired: list[str] = field(default_factory=list)
    mr_only: list[str] = field(default_factory=list)
    corrupt: dict[str, str] = field(default_factory=dict)


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    image = nib.Nifti1Image(data, affine)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    nib.save(image, str(path))  # nibabel's gzip has no timestamp: same arrays, same bytes


def write_case(folder: Path, case: PhantomCase, with_ct: bool = True) -> Path:
    """Write ``mr``/``ct``/``mask`` ``.nii.gz`` into ``folder`` (no ct for an MR-only case)."""
    folder.mkdir(parents=True, exist_ok=True)
    _save(folder / "mr.nii.gz", case.mr, case.affine)
    _save(folder / "mask.nii.gz", case.mask, case.affine)
    if with_ct:
        _save(folder / "ct.nii.gz", case.ct, case.affine)
    else:
        (folder / "ct.nii.gz").unlink(missing_ok=True)
    return folder


def _resave(path: Path, change: Callable[[np.ndarray], np.ndarray], shift_mm: float = 0.0) -> None:
    image = nib.load(path)
    data = change(np.asanyarray(image.dataobj))
    affine = image.affine.copy()
    affine[:3, 3] += shift_mm
    _save(path, data, affine)


def _with_nans(data: np.ndarray) -> np.ndarray:
    out = data.astype(np.float32)
    out[: out.shape[0] // 4, : out.shape[1] // 4, :2] = np.nan
    return out


def _too_bright(data: np.ndarray) -> np.ndarray:
    out = data.copy()
    out[out.shape[0] // 2, out.shape[1] // 2, :] = 12000  # far above any tissue, metal included
    return out


def corrupt_case(folder: Path, kind: str) -> None:
    """Damage a written case in one of the ways :data:`CORRUPTIONS` names."""
    mr, ct, mask = (folder / f"{name}.nii.gz" for name in ("mr", "ct", "mask"))
    if kind == "truncated_gzip":
        data = ct.read_bytes()
        ct.write_bytes(data[: len(data) * 6 // 10])
    elif kind == "not_gzip":
        mr.write_bytes(b"this is not a NIfTI file\n" * 32)
    elif kind in ("missing_mr", "missing_mask"):
        (mr if kind == "missing_mr" else mask).unlink()
    elif kind == "not_3d":
        _resave(mr, lambda a: np.stack([a, a], axis=3))
    elif kind == "shape_mismatch":
        _resave(mask, lambda a: a[:, :, :-1])
    elif kind == "affine_mismatch":
        _resave(ct, lambda a: a, shift_mm=5.0)
    elif kind == "nan_voxels":
        _resave(mr, _with_nans)
    elif kind == "empty_mask":
        _resave(mask, np.zeros_like)
    elif kind == "ct_out_of_range":
        _resave(ct, _too_bright)
    else:
        raise ValueError(f"unknown corruption {kind!r}; choose one of: {', '.join(CORRUPTIONS)}")


def _plan(
    cases: int, regions: Sequence[str], corrupt: int, mr_only: int
) -> list[tuple[CaseId, str, str]]:
    """(id, role, corruption) for every case to write, in id order per region."""
    plan = []
    for region in regions:
        ids = case_ids(region, cases + mr_only)
        plan += [(cid, "paired" if i < cases else "mr_only", "") for i, cid in enumerate(ids)]
    for i in range(corrupt):  # corrupt cases follow the others, regions and kinds in turn
        region = regions[i % len(regions)]
        (cid,) = case_ids(region, 1, first=cases + mr_only + 1 + i // len(regions))
        plan.append((cid, "corrupt", CORRUPTIONS[i % len(CORRUPTIONS)]))
    return plan


def write_dataset(
    out: str | Path,
    cases: int = 6,
    regions: Sequence[str] = ("brain", "pelvis"),
    seed: int = 0,
    corrupt: int = 0,
    mr_only: int = 0,
    shape: Sequence[int] | None = None,
    progress: bool = False,
) -> PhantomSummary:
    """Write ``<out>/Task1/<region>/<id>/{mr,ct,mask}.nii.gz`` plus an ``overview/`` per region.

    Args:
        cases: paired cases per region (centres in turn: brain A/B/C, pelvis A/C).
        corrupt: extra deliberately broken cases (kinds of :data:`CORRUPTIONS` in turn).
        mr_only: extra cases without CT per region (like SynthRAD's validation release).
        shape: volume shape (X, Y, Z) for every region; per-region defaults otherwise.
    """
    for region in regions:
        if region not in CENTRES:
            raise ValueError(f"unknown region {region!r}; choose from: {', '.join(CENTRES)}")
    summary = PhantomSummary(root=Path(out) / "Task1")
    overview: dict[str, list[str]] = {r: ["case_id,centre,sequence,role"] for r in regions}
    for cid, role, kind in tqdm(
        _plan(cases, regions, corrupt, mr_only), disable=not progress, desc="phantom", unit="case"
    ):
        case = make_case(cid, seed, shape)
        folder = write_case(summary.root / cid.region / str(cid), case, with_ct=role != "mr_only")
        if role == "corrupt":
            corrupt_case(folder, kind)
            summary.corrupt[str(cid)] = kind
        else:
            getattr(summary, role).append(str(cid))
        overview[cid.region].append(f"{cid},{cid.centre},{case.sequence},{kind or role}")
    for region, lines in overview.items():
        folder = summary.root / region / "overview"  # as in SynthRAD; readers must skip it
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"1_{region}_phantom.csv").write_text("\n".join(lines) + "\n")
    return summary
