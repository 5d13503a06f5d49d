"""Enhanced (multi-frame) images: one file, one frame per slice, geometry in functional groups.

Enhanced MR Image Storage (1.2.840.10008.5.1.4.1.1.4.1) and its kin keep what a classic series
puts in every file's header in two places: the Shared Functional Groups (what all frames have:
usually PixelMeasures and PlaneOrientation) and the Per-frame Functional Groups (usually
PlanePosition, and whatever varies). :func:`frame_headers` turns such a file into one
:class:`SliceHeader` per frame, so that the classic series path stacks, sorts and checks them
exactly as it does slices in files (a file with several stacks or echoes at one position is
refused there with what it holds).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hmss_ray.io.dicom_series import FRAME_TAGS, PATIENT_TAGS, STUDY_TAGS, SliceHeader

MAX_FRAMES = 4096  # frames of one file (as io.max_files bounds the files of a series)
# its stored values become real ones by the Real World Value Mapping (its Pixel Value
# Transformation is the identity): e.g. the spread map hmss-ray writes, in tenths of a HU
PARAMETRIC_MAP_STORAGE = "1.2.840.10008.5.1.4.1.1.30"


def is_enhanced(ds: Any) -> bool:
    return "PerFrameFunctionalGroupsSequence" in ds


def frame_headers(ds: Any, member: Any) -> list[SliceHeader] | str:
    """One header per frame, or why this file cannot be a stack of slices (a short reason)."""
    modality = str(ds.get("Modality", "?"))
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return f"multi-frame image with a malformed NumberOfFrames ({modality})"
    per_frame = ds.PerFrameFunctionalGroupsSequence
    if not 1 <= frames <= MAX_FRAMES or len(per_frame) != frames:
        return f"multi-frame image with {frames} frames, {len(per_frame)} described ({modality})"
    if int(ds.get("SamplesPerPixel", 1)) != 1 or "Rows" not in ds or "Columns" not in ds:
        return f"multi-frame image that is not greyscale ({modality})"
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared_item = shared[0] if shared else None
    headers = []
    mapped = str(ds.get("SOPClassUID", "")) == PARAMETRIC_MAP_STORAGE
    for k, item in enumerate(per_frame):
        try:
            geometry = _frame_geometry(item, shared_item, mapped)
        except (AttributeError, IndexError, KeyError, TypeError, ValueError):
            return f"multi-frame image with malformed functional groups ({modality})"
        if geometry is None:
            return f"multi-frame image without plane position/orientation/spacing ({modality})"
        position, orientation, spacing, thickness, slope, intercept = geometry
        headers.append(
            SliceHeader(
                member=member,
                series_uid=str(ds.get("SeriesInstanceUID", "(no SeriesInstanceUID)")),
                modality=modality,
                description=str(ds.get("SeriesDescription", "")),
                rows=int(ds.Rows),
                columns=int(ds.Columns),
                position=position,
                row_dir=orientation[:3],
                col_dir=orientation[3:],
                spacing=spacing,
                thickness=thickness,
                between=None,
                slope=slope,
                intercept=intercept,
                sop_class_uid=str(ds.get("SOPClassUID", "")),
                sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
                tags={
                    key: str(ds[key].value)
                    for key in (*PATIENT_TAGS, *STUDY_TAGS, *FRAME_TAGS)
                    if key in ds
                },
                frame=k,
            )
        )
    return headers


def _group(item: Any, shared: Any, sequence: str) -> Any | None:
    """The first item of a functional group macro, per-frame first, else shared."""
    for source in (item, shared):
        if source is not None and sequence in source and len(source[sequence].value):
            return source[sequence][0]
    return None


def _frame_geometry(item: Any, shared: Any, mapped: bool = False):
    position = _group(item, shared, "PlanePositionSequence")
    orientation = _group(item, shared, "PlaneOrientationSequence")
    measures = _group(item, shared, "PixelMeasuresSequence")
    if position is None or orientation is None or measures is None:
        return None
    if "PixelSpacing" not in measures:
        return None
    ipp = np.asarray([float(v) for v in position.ImagePositionPatient])
    iop = np.asarray([float(v) for v in orientation.ImageOrientationPatient])
    spacing = tuple(float(v) for v in measures.PixelSpacing)
    if ipp.shape != (3,) or iop.shape != (6,) or len(spacing) != 2:
        raise ValueError("malformed plane geometry")
    thickness = float(measures.SliceThickness) if measures.get("SliceThickness") else None
    transform = _group(item, shared, "PixelValueTransformationSequence")
    slope = float(transform.get("RescaleSlope", 1) or 1) if transform else 1.0
    intercept = float(transform.get("RescaleIntercept", 0) or 0) if transform else 0.0
    mapping = _group(item, shared, "RealWorldValueMappingSequence") if mapped else None
    if mapping is not None and "RealWorldValueSlope" in mapping:
        rwv_slope = float(mapping.RealWorldValueSlope)
        rwv_intercept = float(mapping.get("RealWorldValueIntercept", 0) or 0)
        slope, intercept = rwv_slope * slope, rwv_slope * intercept + rwv_intercept
    return ipp, iop, (spacing[0], spacing[1]), thickness, slope, intercept
