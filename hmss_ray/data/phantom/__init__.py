"""Deterministic paired MR/CT phantoms at physical scale in the SynthRAD 2023 and 2025 layouts.

Patients are drawn in millimetres (:mod:`.head`, :mod:`.face`, :mod:`.pelvis`, :mod:`.thorax`,
:mod:`.abdomen` from :mod:`.shapes`), rendered at any voxel size (:mod:`.paint`, :mod:`.render`)
and written with their tissue labels (:mod:`.dataset`, :mod:`.corrupt`).
"""

from hmss_ray.data.phantom.corrupt import CORRUPTIONS, corrupt_case
from hmss_ray.data.phantom.dataset import (
    PhantomSummary,
    check_regions,
    summary_table,
    write_case,
    write_dataset,
)
from hmss_ray.data.phantom.ids import PhantomId
from hmss_ray.data.phantom.regions import COARSE_SHAPE, EDITIONS, REGIONS, box_around
from hmss_ray.data.phantom.render import PhantomCase, anatomy_of, case_ids, make_case
from hmss_ray.data.phantom.tissues import T

CENTRES = {name: spec.centres for name, spec in REGIONS.items()}
SPACING_MM = {name: spec.spacing for name, spec in REGIONS.items()}

__all__ = [
    "CENTRES",
    "COARSE_SHAPE",
    "CORRUPTIONS",
    "EDITIONS",
    "REGIONS",
    "SPACING_MM",
    "PhantomCase",
    "PhantomId",
    "PhantomSummary",
    "T",
    "anatomy_of",
    "box_around",
    "case_ids",
    "check_regions",
    "corrupt_case",
    "make_case",
    "summary_table",
    "write_case",
    "write_dataset",
]
