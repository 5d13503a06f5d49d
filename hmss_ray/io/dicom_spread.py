"""The TTA/ensemble spread of an sCT as a DICOM Parametric Map (one multi-frame file).

Why a Parametric Map and not another CT or MR series: ``docs/decisions/spread-dicom.md``. The
map is Parametric Map Storage (``1.2.840.10008.5.1.4.1.1.30``), Modality OT, one frame per slice
of the sCT's grid (PlanePosition per frame, PixelMeasures and PlaneOrientation shared), unsigned
16-bit pixels in tenths of a HU: the Real World Value Mapping (slope 0.1, units UCUM
``[hnsf'U]``) gives the standard deviation in HU; the Pixel Value Transformation is the identity,
as the IOD asks. Patient, study and frame of reference are copied from the sCT series (nothing
else of the patient's), and the Common Instance Reference names both the sCT series and the MR
series it was made from, every instance listed.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np

from hmss_ray.config import UserError
from hmss_ray.io.dicom_series import FRAME_TAGS, PATIENT_TAGS, STUDY_TAGS, DicomSource
from hmss_ray.io.dicom_write import dataset_bytes, lps_grid, series_reference, uid_maker
from hmss_ray.io.volume import Volume

PARAMETRIC_MAP_STORAGE = "1.2.840.10008.5.1.4.1.1.30"
DESCRIPTION = "hmss-ray sCT spread (HU SD)"
HU_PER_UNIT = 0.1  # a stored value of 1 is 0.1 HU: 6553.5 HU at most, more than any spread
SERIES_NUMBER = 902  # the sCT series is 901
IMAGE_POSITION = 0x00200032  # the dimension index: ImagePositionPatient ...
PLANE_POSITION = 0x00209113  # ... in the PlanePositionSequence


def write_spread_map(
    spread: Volume, path: str | Path, sct: DicomSource, mr: DicomSource | None, uid_root=""
) -> Path:
    """Write ``spread`` (float HU on the sCT's grid) as a Parametric Map file at ``path``.

    Args:
        spread: the standard deviation of the passes in HU, on exactly the sCT series' grid.
        path: the ``.dcm`` file to write (written under a temporary name, then renamed).
        sct: the written sCT series (its UIDs, patient, study, frame of reference).
        mr: the DICOM MR series the sCT came from; None for a NIfTI/MetaImage MR.
        uid_root: ``io.uid_root`` for the new UIDs.
    """
    values = np.asarray(spread.array, dtype=np.float64)
    if values.ndim != 3 or values.shape[2] != len(sct.sop_instance_uids):
        raise UserError(f"the spread {values.shape} is not on the sCT series' grid")
    if not np.isfinite(values).all() or values.min() < 0:
        raise UserError("the spread must be finite and non-negative")
    path = Path(path)
    blob = _dataset_bytes(spread, values, sct, mr, uid_root)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        partial.write_bytes(blob)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _dataset_bytes(spread: Volume, values, sct: DicomSource, mr: DicomSource | None, root):
    from pydicom.dataset import Dataset

    new_uid = uid_maker(root)
    ds = Dataset()
    _header(ds, sct, new_uid)
    ds.ReferencedSeriesSequence = [series_reference(s) for s in (sct, mr) if s is not None]
    _image(ds, values.shape)
    ds.SharedFunctionalGroupsSequence = [_shared(spread)]
    ds.PerFrameFunctionalGroupsSequence = _per_frame(spread)
    ds.DimensionOrganizationSequence = [Dataset()]
    ds.DimensionOrganizationSequence[0].DimensionOrganizationUID = new_uid()
    index = Dataset()
    index.DimensionOrganizationUID = ds.DimensionOrganizationSequence[0].DimensionOrganizationUID
    index.DimensionIndexPointer, index.FunctionalGroupPointer = IMAGE_POSITION, PLANE_POSITION
    index.DimensionDescriptionLabel = "Image Position (Patient)"
    ds.DimensionIndexSequence = [index]
    ds.DimensionOrganizationType = "3D"  # the frames are one regular volume
    stored = np.clip(np.rint(values / HU_PER_UNIT), 0, 65535).astype("<u2")
    ds.PixelData = np.ascontiguousarray(stored.transpose(2, 1, 0)).tobytes()  # frames, rows=y
    return dataset_bytes(ds, PARAMETRIC_MAP_STORAGE)


def _header(ds, sct: DicomSource, new_uid) -> None:
    """SOP common, patient, study, series, frame of reference and equipment."""
    now = dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = PARAMETRIC_MAP_STORAGE
    ds.SOPInstanceUID = new_uid()
    ds.Modality = "OT"
    ds.SeriesInstanceUID = new_uid()
    ds.SeriesNumber, ds.InstanceNumber = SERIES_NUMBER, 1
    ds.SeriesDescription = DESCRIPTION
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.ContentDate, ds.ContentTime = date, time
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    for keyword in (*PATIENT_TAGS, *STUDY_TAGS, *FRAME_TAGS):  # only what the sCT carries
        setattr(ds, keyword, sct.tags.get(keyword, ""))
    if not ds.FrameOfReferenceUID:
        raise UserError("the sCT series has no FrameOfReferenceUID: the spread cannot register")
    ds.Manufacturer, ds.ManufacturerModelName = "hmss-ray", "hmss-ray"
    ds.DeviceSerialNumber, ds.SoftwareVersions = "none", "hmss-ray"
    ds.ContentLabel = "SPREAD"
    ds.ContentDescription = "voxel-wise SD of the TTA/ensemble passes of the synthetic CT"
    ds.ContentCreatorName = ""
    ds.ContentQualification = "RESEARCH"
    ds.ImageComments = "Uncertainty of a SYNTHETIC CT computed from MR; not an acquired image."


def _image(ds, shape: tuple[int, ...]) -> None:
    """The Parametric Map Image and Image Pixel modules."""
    ds.ImageType = ["DERIVED", "PRIMARY", "VOLUME", "NONE"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns, ds.NumberOfFrames = int(shape[1]), int(shape[0]), int(shape[2])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 0
    ds.PresentationLUTShape = "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation, ds.RecognizableVisualFeatures = "NO", "NO"
    ds.PixelPresentation = "MONOCHROME"
    ds.AcquisitionContextSequence = []


def _shared(spread: Volume):
    """Geometry, the identity transform, the mapping to HU and a display window."""
    from pydicom.dataset import Dataset
    from pydicom.valuerep import format_number_as_ds as as_ds

    grid = lps_grid(spread)
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [as_ds(grid.spacing[1]), as_ds(grid.spacing[0])]  # rows, columns
    measures.SliceThickness = as_ds(grid.spacing[2])
    measures.SpacingBetweenSlices = as_ds(grid.spacing[2])
    shared.PixelMeasuresSequence = [measures]
    plane = Dataset()
    plane.ImageOrientationPatient = [as_ds(float(v)) for v in (*grid.row_dir, *grid.col_dir)]
    shared.PlaneOrientationSequence = [plane]
    identity = Dataset()
    identity.RescaleIntercept, identity.RescaleSlope, identity.RescaleType = "0", "1", "US"
    shared.PixelValueTransformationSequence = [identity]
    frame_type = Dataset()
    frame_type.FrameType = ["DERIVED", "PRIMARY", "VOLUME", "NONE"]
    shared.ParametricMapFrameTypeSequence = [frame_type]
    window = Dataset()
    window.WindowCenter, window.WindowWidth = "500", "1000"  # stored units: 0..100 HU
    window.VOILUTFunction = "LINEAR"
    shared.FrameVOILUTSequence = [window]
    shared.RealWorldValueMappingSequence = [_hu_mapping()]
    return shared


def _hu_mapping():
    from pydicom.dataset import Dataset

    units = Dataset()
    units.CodeValue, units.CodingSchemeDesignator = "[hnsf'U]", "UCUM"
    units.CodeMeaning = "Hounsfield unit"
    mapping = Dataset()
    mapping.RealWorldValueFirstValueMapped, mapping.RealWorldValueLastValueMapped = 0, 65535
    mapping.RealWorldValueSlope, mapping.RealWorldValueIntercept = HU_PER_UNIT, 0.0
    mapping.LUTExplanation = "SD of the sCT passes (HU)"
    mapping.LUTLabel = "SPREAD_HU"
    mapping.MeasurementUnitsCodeSequence = [units]
    return mapping


def _per_frame(spread: Volume) -> list:
    from pydicom.dataset import Dataset
    from pydicom.valuerep import format_number_as_ds as as_ds

    grid = lps_grid(spread)
    frames = []
    for k in range(spread.shape[2]):
        item = Dataset()
        position = Dataset()
        position.ImagePositionPatient = [as_ds(float(v)) for v in grid.origin + k * grid.step]
        item.PlanePositionSequence = [position]
        content = Dataset()
        content.DimensionIndexValues = [k + 1]
        item.FrameContentSequence = [content]
        item.DerivationImageSequence = []
        frames.append(item)
    return frames


def series_source(folder: Path) -> DicomSource:
    """What a spread map references of a series hmss-ray has just written into ``folder`` (our
    own files, so pydicom reads their headers directly), in InstanceNumber order."""
    import pydicom

    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.iterdir())]
    headers.sort(key=lambda ds: int(ds.InstanceNumber))
    first = headers[0]
    tags = {k: str(first[k].value) for k in (*PATIENT_TAGS, *STUDY_TAGS, *FRAME_TAGS) if k in first}
    return DicomSource(
        series_uid=str(first.SeriesInstanceUID),
        modality=str(first.Modality),
        tags=tags,
        sop_class_uid=str(first.SOPClassUID),
        sop_instance_uids=tuple(str(ds.SOPInstanceUID) for ds in headers),
    )
