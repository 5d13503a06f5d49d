"""What a DICOM series is made of: slice headers, the stack's geometry, what an sCT keeps.

:func:`stack_geometry` turns the headers of one series into a grid, or refuses it with what was
found: slices of different sizes or planes, several slices at one position, slices shifted in
plane (gantry tilt), missing positions or uneven spacing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.multival import MultiValue

from hmss_ray.io.volume import SeriesError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# carried from the MR series into the sCT series (patient, study, frame of reference)
PATIENT_TAGS = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex")
STUDY_TAGS = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
)
FRAME_TAGS = ("FrameOfReferenceUID", "PositionReferenceIndicator", "PatientPosition")
ORIENTATION_TOLERANCE = 1e-3  # direction cosines
POSITION_TOLERANCE_MM = 0.01


@dataclass
class SliceHeader:
    """One image slice's header: what stacking needs, read without its pixels."""

    member: Any  # dicom_read.Member: where the file is
    series_uid: str
    modality: str
    description: str
    rows: int
    columns: int
    position: np.ndarray  # ImagePositionPatient, LPS mm
    row_dir: np.ndarray  # ImageOrientationPatient[:3]: along a row (increasing column)
    col_dir: np.ndarray  # ImageOrientationPatient[3:]: down a column (increasing row)
    spacing: tuple[float, float]  # PixelSpacing: (between rows, between columns)
    thickness: float | None
    between: float | None  # SpacingBetweenSlices (the slice step of a one-slice "series")
    slope: float
    intercept: float
    sop_class_uid: str
    sop_instance_uid: str
    tags: dict[str, str]
    frame: int | None = None  # the frame of a multi-frame (Enhanced) file; None: a file a slice

    @classmethod
    def from_dataset(cls, ds: Any, member: Any) -> SliceHeader | str:
        """The header of an image slice, or why this file is not one (a short reason)."""
        try:
            return cls._from_dataset(ds, member)
        except Exception:  # a value pydicom cannot convert (NumberOfFrames "abc", bad IS/DS)
            return f"image with malformed tags ({_text(ds, 'Modality', '?')})"

    @classmethod
    def _from_dataset(cls, ds: Any, member: Any) -> SliceHeader | str:
        modality = _text(ds, "Modality", "?")
        if "Rows" not in ds or "Columns" not in ds:
            return f"DICOM without an image ({modality})"
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            return f"multi-frame image ({modality}), not supported: export single slices"
        if int(ds.get("SamplesPerPixel", 1)) != 1:
            return f"colour image ({modality})"
        missing = [
            k
            for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
            if k not in ds
        ]
        if missing:
            return f"image without {'/'.join(missing)} ({modality})"
        orientation = np.asarray([float(v) for v in ds.ImageOrientationPatient])
        position = np.asarray([float(v) for v in ds.ImagePositionPatient])
        spacing = tuple(float(v) for v in ds.PixelSpacing)
        rows, columns = int(ds.Rows), int(ds.Columns)
        if not _usable_geometry(orientation, position, spacing) or min(rows, columns) < 1:
            return f"image with malformed geometry tags ({modality})"
        thickness = float(ds.SliceThickness) if ds.get("SliceThickness") else None
        between = float(ds.SpacingBetweenSlices) if ds.get("SpacingBetweenSlices") else None
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        if not np.isfinite([slope, intercept]).all():
            return f"image with a non-finite rescale ({modality})"
        return cls(
            member=member,
            series_uid=_text(ds, "SeriesInstanceUID", "(no SeriesInstanceUID)"),
            modality=modality,
            description=_text(ds, "SeriesDescription", ""),
            rows=rows,
            columns=columns,
            position=position,
            row_dir=orientation[:3],
            col_dir=orientation[3:],
            spacing=(spacing[0], spacing[1]),
            thickness=thickness if thickness and np.isfinite(thickness) else None,
            between=between if between and np.isfinite(between) else None,
            slope=slope,
            intercept=intercept,
            sop_class_uid=_text(ds, "SOPClassUID", ""),
            sop_instance_uid=_text(ds, "SOPInstanceUID", ""),
            tags={
                k: _dicom_text(ds[k].value)
                for k in (*PATIENT_TAGS, *STUDY_TAGS, *FRAME_TAGS)
                if k in ds
            },
        )

    def describe(self) -> str:
        text = f"{self.modality}, {self.rows}x{self.columns}"
        return f"{text}, {self.description!r}" if self.description else text


def _dicom_text(value: Any) -> str:
    """An element's value as DICOM writes it: several values joined by ``\\`` (pydicom splits
    them again on writing), not Python's ``"['A1', 'B2']"``."""
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(str(v) for v in value)
    return "" if value is None else str(value)


def _text(ds: Any, key: str, default: str) -> str:
    """A single-valued text element, or ``default``; never longer than 64 characters."""
    value = ds.get(key, default)
    return str(value if value is not None else default)[:64]


def _usable_geometry(orientation: np.ndarray, position: np.ndarray, spacing: tuple) -> bool:
    """Finite tags of the right length; unit, orthogonal direction cosines; positive spacing."""
    if orientation.shape != (6,) or position.shape != (3,) or len(spacing) != 2:
        return False
    if not (np.isfinite(orientation).all() and np.isfinite(position).all()):
        return False
    if not all(np.isfinite(v) and v > 0 for v in spacing):
        return False
    row, col = orientation[:3], orientation[3:]
    norms_ok = abs(np.linalg.norm(row) - 1) < 0.01 and abs(np.linalg.norm(col) - 1) < 0.01
    return bool(norms_ok and abs(float(row @ col)) < 0.01)


@dataclass(frozen=True)
class DicomSource:
    """What an sCT series written from this volume keeps of the DICOM series it was read from."""

    series_uid: str
    modality: str
    tags: dict[str, str]  # PATIENT_TAGS, STUDY_TAGS, FRAME_TAGS present in the source
    sop_class_uid: str
    sop_instance_uids: tuple[str, ...]  # one per slice, in the volume's slice order
    frames: tuple[int | None, ...] = ()  # per slice: its frame of a multi-frame file (0-based)

    @classmethod
    def from_slices(cls, slices: list[SliceHeader]) -> DicomSource:
        first = slices[0]
        return cls(
            series_uid=first.series_uid,
            modality=first.modality,
            tags=dict(first.tags),
            sop_class_uid=first.sop_class_uid,
            sop_instance_uids=tuple(s.sop_instance_uid for s in slices),
            frames=tuple(s.frame for s in slices),
        )


@dataclass(frozen=True)
class StackGeometry:
    slices: list[SliceHeader]  # sorted along the normal
    affine: np.ndarray  # RAS+


def stack_geometry(slices: list[SliceHeader], where: str) -> StackGeometry:
    """Sort one series' slices along the normal and check they form one regular grid."""
    first = slices[0]
    _same(slices, lambda s: (s.rows, s.columns), "sizes (rows x columns)", where)
    _same(slices, lambda s: _rounded(s.spacing, 4), "pixel spacings (mm)", where)
    _same(
        slices,
        lambda s: _rounded(np.r_[s.row_dir, s.col_dir], 3),
        "image orientations (a localizer or radial slices?)",
        where,
    )
    normal = np.cross(first.row_dir, first.col_dir)
    normal /= np.linalg.norm(normal)
    order = np.argsort([float(s.position @ normal) for s in slices], kind="stable")
    slices = [slices[i] for i in order]
    positions = np.stack([s.position for s in slices])
    along = positions @ normal
    step = _regular_step(along, where)
    offsets = positions - positions[0] - np.outer(along - along[0], normal)
    shift = float(np.abs(offsets).max()) if len(slices) > 1 else 0.0
    if shift > POSITION_TOLERANCE_MM + 0.01 * min(first.spacing):
        raise SeriesError(
            f"{where}: the slices are not stacked along their normal (shifted up to {shift:.2f} "
            "mm in plane: a gantry tilt?); resample the series to an orthogonal grid first"
        )
    lps = np.eye(4)
    lps[:3, 0] = first.row_dir * first.spacing[1]
    lps[:3, 1] = first.col_dir * first.spacing[0]
    single = first.between or first.thickness or 1.0  # one slice: no positions to measure
    lps[:3, 2] = normal * (step if step is not None else single)
    lps[:3, 3] = positions[0]
    return StackGeometry(slices, LPS_TO_RAS @ lps)


def _same(slices: list[SliceHeader], key, what: str, where: str) -> None:
    counts: dict[Any, int] = {}
    for s in slices:
        counts[key(s)] = counts.get(key(s), 0) + 1
    if len(counts) > 1:
        found = ", ".join(f"{k} x{n}" for k, n in counts.items())
        raise SeriesError(f"{where}: the series mixes {len(counts)} {what}: {found}")


def _rounded(values, digits: int) -> tuple[float, ...]:
    return tuple(round(float(v), digits) + 0.0 for v in values)  # + 0.0: no "-0.0"


def _regular_step(along: np.ndarray, where: str) -> float | None:
    """The spacing of sorted slice positions, or a SeriesError saying how they are irregular."""
    if len(along) < 2:
        return None
    gaps = np.diff(along)
    if gaps.min() < POSITION_TOLERANCE_MM:
        repeats = len(along) - len(np.unique(np.round(along / POSITION_TOLERANCE_MM)))
        raise SeriesError(
            f"{where}: {repeats + 1} slices share a position along the normal (several "
            "acquisitions, echoes or time points in one series?); send one volume"
        )
    step = float(np.median(gaps))
    tolerance = max(POSITION_TOLERANCE_MM, 0.01 * step)
    if np.all(np.abs(gaps - step) <= tolerance):
        return float(gaps.mean())
    multiples = np.rint(gaps / step)
    if np.all(np.abs(gaps - multiples * step) <= tolerance * multiples):
        missing = int((multiples - 1).sum())
        at = [f"{along[i]:.2f}..{along[i + 1]:.2f}" for i in np.flatnonzero(multiples > 1)[:3]]
        raise SeriesError(
            f"{where}: {missing} slice position(s) missing (every {step:.3g} mm expected; gaps "
            f"at {', '.join(at)} mm along the normal) in {len(along)} slices"
        )
    raise SeriesError(
        f"{where}: uneven slice spacing: gaps from {gaps.min():.3g} to {gaps.max():.3g} mm "
        f"(median {step:.3g}) in {len(along)} slices"
    )
