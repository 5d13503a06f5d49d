"""Deterministic paired MR/CT phantoms in the SynthRAD layout: anatomy, rendering, writing."""

from hmss_ray.data.phantom.corrupt import CORRUPTIONS, corrupt_case
from hmss_ray.data.phantom.dataset import PhantomSummary, summary_table, write_case, write_dataset
from hmss_ray.data.phantom.render import (
    CENTRES,
    DEFAULT_SHAPES,
    SPACING_MM,
    PhantomCase,
    case_ids,
    make_case,
)

__all__ = [
    "CENTRES",
    "CORRUPTIONS",
    "DEFAULT_SHAPES",
    "SPACING_MM",
    "PhantomCase",
    "PhantomSummary",
    "case_ids",
    "corrupt_case",
    "make_case",
    "summary_table",
    "write_case",
    "write_dataset",
]
