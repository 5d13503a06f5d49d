"""Plans with pyRadPlan (the Python port of matRad): optimise on the CT, recompute on the sCT.

Photons: coplanar beams with the SVD pencil-beam engine, fluence optimised to the prescription on
the target (squared deviation) with the body and organs at risk as overdose constraints. Protons:
pencil-beam scanning fields (spots placed and energies chosen on the CT), optimised the same way.
The sCT gets the CT's plan unchanged (same beams, spots, energies and weights): every difference
in dose is the sCT's. Doses are fractions of the prescription: the CT plan is scaled so that the
target median dose is exactly 1.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from hmss_ray.config import UserError
from hmss_ray.dose.grid import DoseGrid

INSTALL_HINT = (
    "the dose check needs the optional 'dose' extra: pip install 'hmss-ray[dose]' "
    "&& pip install --no-deps pyradplan==0.5.0 (docs/decisions/dose-engine.md)"
)
PRESCRIPTION_GY = 2.0  # one fraction; every reported dose is relative to it
# gantry angles (IEC 61217, patient supine head first: 0 from anterior, 90 from the patient's
# left) on arrays in the patient (LPS) frame, which hmss_ray.dose.grid.PatientFrame provides
PHOTON_ANGLES = (0.0, 72.0, 144.0, 216.0, 288.0)  # five equispaced coplanar beams
PROTON_ANGLES = (90.0, 270.0, 0.0)  # left and right lateral, anterior: 3 fields
BIXEL_MM = 5.0
MAX_ITERATIONS = 100  # L-BFGS-B; the objective is flat well before (docs/dose.md)


class Modality(StrEnum):
    """The radiation a plan is made for."""

    PHOTON = "photon"
    PROTON = "proton"


@dataclass(frozen=True)
class Structures:
    """Boolean masks on one grid: the body, the target and named organs at risk."""

    body: np.ndarray
    target: np.ndarray
    oars: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not np.any(self.target):
            raise UserError("the target is empty (on the dose grid)")
        for name, mask in {"body": self.body, **self.oars}.items():
            if mask.shape != self.target.shape:
                raise UserError(f"{name} is {mask.shape}, the target {self.target.shape}")


@dataclass
class PlanResult:
    """One modality's doses on the dose grid (fractions of the prescription) and the beams."""

    modality: Modality
    dose_ct: np.ndarray
    dose_sct: np.ndarray
    angles: tuple[float, ...]
    range_shift_mm: list[float] | None = None  # per proton field: median WEPL change at target
    range_shift_abs_mm: list[float] | None = None  # per proton field: mean |WEPL change| there
    seconds: float = 0.0


def require_engine() -> None:
    """Raise :class:`UserError` with the install line when pyRadPlan or pymedphys is missing."""
    try:
        import pymedphys  # noqa: F401
        import pyRadPlan  # noqa: F401
    except ImportError as exc:
        raise UserError(f"{INSTALL_HINT} ({exc.name or exc}: not importable)") from exc


@contextmanager
def _quiet() -> Iterator[None]:
    """No progress bars or divide-by-zero warnings from the engine's ray tracer."""
    from pyRadPlan.core._progress import ProgressReporter

    shown = ProgressReporter.console_progress
    ProgressReporter.console_progress = False
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            yield
    finally:
        ProgressReporter.console_progress = shown


def _image(array: np.ndarray, grid: DoseGrid) -> Any:
    """(X, Y, Z) array in the LPS frame -> SimpleITK image of the dose grid (origin 0, identity
    direction: SimpleITK's world is LPS, so the engine's gantry angles are IEC 61217 ones)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
    image.SetSpacing([float(s) for s in grid.spacing])
    return image


def _array(image: Any) -> np.ndarray:
    import SimpleITK as sitk

    return np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0)).astype(np.float64)


def _patient(hu: np.ndarray, structures: Structures, grid: DoseGrid) -> tuple[Any, Any]:
    """pyRadPlan's CT and structure set (with objectives) for ``hu`` on the dose grid."""
    from pyRadPlan.cst import StructureSet, create_voi
    from pyRadPlan.ct import create_ct
    from pyRadPlan.optimization.objectives import SquaredDeviation, SquaredOverdosing

    ct = create_ct(cube_hu=_image(np.asarray(hu, np.float32), grid))
    rx = PRESCRIPTION_GY

    def voi(name: str, kind: str, mask: np.ndarray, objectives: list) -> Any:
        image = _image(np.asarray(mask, np.uint8), grid)
        return create_voi(name=name, voi_type=kind, mask=image, ct_image=ct, objectives=objectives)

    vois = [
        voi("target", "TARGET", structures.target, [SquaredDeviation(priority=1000.0, d_ref=rx)])
    ]
    vois += [
        voi(
            name,
            "OAR",
            mask & ~structures.target,
            [SquaredOverdosing(priority=10.0, d_max=0.5 * rx)],
        )
        for name, mask in structures.oars.items()
        if np.any(mask & ~structures.target)
    ]
    vois.append(voi("body", "EXTERNAL", structures.body | structures.target,
                    [SquaredOverdosing(priority=10.0, d_max=0.8 * rx)]))  # fmt: skip
    return ct, StructureSet(vois=vois, ct_image=ct)


def _plan(modality: Modality, ct: Any, angles: Sequence[float]) -> Any:
    from pyRadPlan import IonPlan, PhotonPlan

    props = {
        "prop_stf": {
            "gantry_angles": list(angles),
            "couch_angles": [0.0] * len(angles),
            "bixel_width": BIXEL_MM,
        },
        "prop_dose_calc": {"dose_grid": ct.grid},
        "prop_opt": {"max_iter": MAX_ITERATIONS},
        "num_of_fractions": 1,
        "prescribed_dose": PRESCRIPTION_GY,
    }
    if modality is Modality.PHOTON:
        return PhotonPlan(machine="Generic", **props)
    return IonPlan(radiation_mode="protons", machine="Generic", **props)


def range_shifts(
    ct: Any, sct: Any, stf: Any, target: np.ndarray
) -> tuple[list[float], list[float]]:
    """Per field: the median over target voxels of the water-equivalent path length from the
    source, sCT minus CT (mm, through the engine's own HU -> stopping-power table), and the mean
    of its magnitude (no cancelling between voxels whose errors differ in sign). Positive: the
    sCT holds more stopping power upstream, so the CT's spots stop short of where they were
    planned to."""
    import SimpleITK as sitk
    from pyRadPlan.ct import default_hlut
    from pyRadPlan.raytracer import RayTracerSiddon

    hlut = default_hlut()
    tracer = RayTracerSiddon([ct.compute_wet(hlut), sct.compute_wet(hlut)])
    tracer.lateral_cut_off = 50.0
    inside = np.transpose(target, (2, 1, 0))  # SimpleITK's (Z, Y, X)
    medians, magnitudes = [], []
    for beam in stf.beams:
        depth_ct, depth_sct = (sitk.GetArrayFromImage(c) for c in tracer.trace_cubes(beam))
        delta = (depth_sct - depth_ct)[inside & np.isfinite(depth_ct) & np.isfinite(depth_sct)]
        medians.append(float(np.median(delta)) if delta.size else float("nan"))
        magnitudes.append(float(np.mean(np.abs(delta))) if delta.size else float("nan"))
    return medians, magnitudes


def plan_and_recompute(
    ct_hu: np.ndarray,
    sct_hu: np.ndarray,
    structures: Structures,
    grid: DoseGrid,
    modality: Modality,
    angles: Sequence[float] | None = None,
) -> PlanResult:
    """Optimise a ``modality`` plan on ``ct_hu`` and recompute it unchanged on ``sct_hu``.

    Both volumes are HU on ``grid`` (see :mod:`hmss_ray.dose.grid`); the structures too.
    """
    require_engine()
    from pyRadPlan import calc_dose_influence, fluence_optimization, generate_stf

    angles = tuple(angles or (PHOTON_ANGLES if modality is Modality.PHOTON else PROTON_ANGLES))
    started = time.perf_counter()
    with _quiet():
        ct, cst = _patient(ct_hu, structures, grid)
        sct, sct_cst = _patient(sct_hu, structures, grid)
        pln = _plan(modality, ct, angles)
        stf = generate_stf(ct, cst, pln)
        dij = calc_dose_influence(ct, cst, stf, pln)
        weights = np.asarray(fluence_optimization(ct, cst, stf, dij, pln), dtype=np.float64)
        dose_ct = _array(dij.compute_result_ct_grid(weights)["physical_dose"])
        scale = 1.0 / float(np.median(dose_ct[structures.target]))  # target D50 = prescription
        # the sCT's own influence matrix (same beams and spots) times the CT's weights: faster
        # than the engine's forward calculation here, and the same numbers
        dij_sct = calc_dose_influence(sct, sct_cst, stf, pln)
        dose_sct = _array(dij_sct.compute_result_ct_grid(weights * scale)["physical_dose"])
        shifts, spread = (
            range_shifts(ct, sct, stf, structures.target)
            if modality is Modality.PROTON
            else (None, None)
        )
    return PlanResult(modality, dose_ct * scale, dose_sct, angles, shifts, spread,
                      time.perf_counter() - started)  # fmt: skip
