"""One case's dose check: CT, sCT and structures -> per-modality plans, differences and DVHs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hmss_ray.config import UserError
from hmss_ray.dose.engine import Modality, PlanResult, Structures, plan_and_recompute
from hmss_ray.dose.grid import (
    DEFAULT_SPACING_MM,
    DoseGrid,
    PatientFrame,
    dose_grid,
    resample_hu,
    resample_mask,
)
from hmss_ray.dose.metrics import compare, dvh


@dataclass
class DoseCheck:
    """A case's check: per modality, the plan result and its difference row (``compare``).

    Doses and structures are on the dose grid, in the patient frame (LPS axes; ``frame.inverse``
    puts an array back in the input's storage order)."""

    grid: DoseGrid
    structures: Structures  # on the dose grid
    frame: PatientFrame
    plans: dict[Modality, PlanResult] = field(default_factory=dict)
    rows: dict[Modality, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0

    def flat(self) -> dict[str, float]:
        """One flat row: ``<modality>_<metric>`` for every modality."""
        return {f"{m}_{k}": v for m, row in self.rows.items() for k, v in row.items()}

    def dvhs(self, modality: Modality) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per structure (target first): its DVH on the CT and on the sCT."""
        plan = self.plans[modality]
        masks = {"target": self.structures.target, **self.structures.oars}
        return {n: (dvh(plan.dose_ct, m), dvh(plan.dose_sct, m)) for n, m in masks.items()}


def parse_modalities(text: str | Sequence[str]) -> tuple[Modality, ...]:
    """``"photon,proton"`` -> modalities; an unknown name is a :class:`UserError` naming them."""
    names = text.split(",") if isinstance(text, str) else list(text)
    try:
        found = tuple(dict.fromkeys(Modality(n.strip()) for n in names if n.strip()))
    except ValueError as exc:
        raise UserError(f"unknown dose modality in {text!r}; choose from: "
                        f"{', '.join(Modality)}") from exc  # fmt: skip
    if not found:
        raise UserError("give at least one dose modality: photon, proton")
    return found


def check_case(
    ct_hu: np.ndarray,
    sct_hu: np.ndarray,
    structures: Structures,
    affine: np.ndarray,
    modalities: Sequence[Modality] = (Modality.PHOTON, Modality.PROTON),
    grid_mm: float = DEFAULT_SPACING_MM,
) -> DoseCheck:
    """Plan every modality on ``ct_hu`` and recompute on ``sct_hu``, on a dose grid of about
    ``grid_mm``. CT, sCT and structures are arrays on one grid in any storage order, ``affine``
    its voxel -> RAS+ mm matrix: the beams are placed in the patient frame (:mod:`.grid`)."""
    if np.shape(ct_hu) != np.shape(sct_hu):
        raise UserError(f"sCT {np.shape(sct_hu)} and CT {np.shape(ct_hu)} are not on one grid")
    if np.shape(affine) != (4, 4):
        raise UserError(f"the CT's affine must be 4x4 (voxel -> RAS mm), got {np.shape(affine)}")
    started = time.perf_counter()
    frame = PatientFrame.of(affine)
    grid = dose_grid(frame.forward(ct_hu).shape, frame.spacing, grid_mm)

    def mask(array: np.ndarray) -> np.ndarray:
        return resample_mask(frame.forward(array), grid)

    body = mask(structures.body)
    coarse = Structures(
        body=body,
        target=mask(structures.target) & body,
        oars={n: mask(m) & body for n, m in structures.oars.items()},
    )
    # outside the body both are air: the couch and what the MR cannot see do not count
    ct, sct = (
        np.where(body, resample_hu(frame.forward(v), grid), -1000.0) for v in (ct_hu, sct_hu)
    )
    check = DoseCheck(grid, coarse, frame)
    for modality in modalities:
        plan = plan_and_recompute(ct, sct, coarse, grid, modality)
        check.plans[modality] = plan
        check.rows[modality] = compare(plan, coarse, grid)
    check.seconds = time.perf_counter() - started
    return check
