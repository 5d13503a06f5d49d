"""One case through ``prepare``: validate it (pass 1), then load, bring onto the region's contract
grid, preprocess and slice it into rows (pass 2).

Both passes are plain functions of a :class:`~hmss_ray.data.synthrad.CaseRef` and the data config,
so a process pool or a Ray task runs them with identical output
(:mod:`hmss_ray.data.pool`); :mod:`hmss_ray.data.prepare` splits the cases, runs the passes and
writes shards and the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hmss_ray.config import DataConfig
from hmss_ray.data.manifest import CaseEntry
from hmss_ray.data.preprocess import (
    Placement,
    contract_map,
    kept_slices,
    place_body,
    prepare_placed,
    slices_with_context,
)
from hmss_ray.data.synthrad import Case, CaseRef, inspect_case
from hmss_ray.io.geometry import Grid


@dataclass(frozen=True)
class CaseJob:
    ref: CaseRef
    split: str
    quota: int | None = None  # at most this many slices (data.max_train_slices)


@dataclass
class CaseCheck:
    ref: CaseRef
    problems: list[str]
    slices: int = 0  # slices above data.min_mask_fraction


@dataclass
class CaseResult:
    job: CaseJob
    problems: list[str]
    rows: dict[str, Any] | None = None
    info: CaseEntry | None = None


def _subsample(keep: np.ndarray, quota: int | None) -> np.ndarray:
    if quota is None or keep.size <= quota:
        return keep
    # evenly spaced along the body, deterministic: the cap never depends on the worker count
    picks = np.unique(np.round(np.linspace(0, keep.size - 1, max(quota, 0))).astype(int))
    return keep[picks]


def _no_slices(cfg: DataConfig) -> str:
    return f"no axial slice inside the {cfg.image_size}-voxel crop holds any of the mask"


def _does_not_fit(place: Placement, cfg: DataConfig, region: str) -> str | None:
    """Why the body does not fit the canvas (None when it does, within data.max_body_loss)."""
    if place.lost_fraction <= cfg.max_body_loss:
        return None
    sx, sy, _ = cfg.spacing[region]
    size = cfg.image_size
    wide, deep = place.body_extent
    return (
        f"body does not fit the canvas: {place.lost_fraction:.2%} of its voxels "
        f"({place.lost_voxels} of {place.body_voxels}) fall outside {size}x{size} px at "
        f"{sx:g}x{sy:g} mm ({size * sx:g} x {size * sy:g} mm) while the body spans "
        f"{wide * sx:g} x {deep * sy:g} mm; raise data.image_size, coarsen data.spacing.{region}, "
        f"or allow the loss with data.max_body_loss (now {cfg.max_body_loss:g})"
    )


def _place(case: Case, cfg: DataConfig) -> Placement:
    """The case's body on its region's contract grid and the data.image_size canvas around it."""
    gmap = contract_map(Grid(case.mask.shape, case.affine), cfg, case.id.region)
    return place_body(case.mask, gmap, cfg.image_size)


def check_case(ref: CaseRef, cfg: DataConfig) -> CaseCheck:
    """Pass 1: validate one case and count the slices it would give (nothing is kept)."""
    case, problems = inspect_case(ref, cfg)
    if case is None:
        return CaseCheck(ref, [p.reason for p in problems])
    place = _place(case, cfg)
    misfit = _does_not_fit(place, cfg, case.id.region)
    if misfit:
        return CaseCheck(ref, [misfit])
    _, keep = kept_slices(place.mask, cfg.min_mask_fraction)
    return CaseCheck(ref, [] if keep.size else [_no_slices(cfg)], int(keep.size))


def process_case(job: CaseJob, cfg: DataConfig) -> CaseResult:
    """Pass 2: load, bring onto the contract grid, preprocess and slice one case into rows."""
    case, problems = inspect_case(job.ref, cfg)
    if case is None:  # only if a file changed since pass 1
        return CaseResult(job, [p.reason for p in problems])
    place = _place(case, cfg)
    misfit = _does_not_fit(place, cfg, case.id.region)
    if misfit:
        return CaseResult(job, [misfit])
    prepared = prepare_placed(case.mr, case.ct, place, cfg)
    if prepared.keep.size == 0:
        return CaseResult(job, [_no_slices(cfg)])
    keep = _subsample(prepared.keep, job.quota)
    rows = {
        "mr": slices_with_context(prepared.mr, cfg.context_slices, keep),  # (N, 2k+1, S, S)
        "ct": None if prepared.ct is None else slices_with_context(prepared.ct, 0, keep),
        "mask": slices_with_context(prepared.mask, 0, keep),  # (N, 1, S, S)
        "slice_index": keep,
    }
    assert place.gmap is not None  # _place always maps onto the contract grid
    info = CaseEntry(
        split=job.split,
        region=case.id.region,
        centre=case.id.centre,
        paired=case.ct is not None,
        source=f"{case.id.region}/{case.id}",
        slices=int(keep.size),
        slice_indices=[int(i) for i in keep],
        crop_box=prepared.box.to_dict(),
        mr_norm=prepared.mr_params.to_dict(),
        source_grid=place.gmap.source.to_dict(),
        grid=place.gmap.target.to_dict(),
        body_voxels=place.body_voxels,
        body_voxels_lost=place.lost_voxels,
        body_fraction_lost=round(place.lost_fraction, 6),
    )
    return CaseResult(job, [], rows, info)
