"""Structures for the dose check: an RTSTRUCT and a NIfTI of the same mask give the same DVH;
phantom targets sit in the organ their region treats. No planning engine needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from skimage.measure import find_contours

from hmss_ray.config import UserError
from hmss_ray.dose.metrics import dose_at_volume, dvh
from hmss_ray.dose.structures import read_mask, rtstruct_masks, sphere
from hmss_ray.io import Volume, write_volume

RT_STRUCTURE_SET = "1.2.840.10008.5.1.4.1.1.481.3"


def write_rtstruct(path: Path, masks: dict[str, np.ndarray], affine: np.ndarray) -> Path:
    """An RTSTRUCT whose closed planar contours trace each mask's axial slices (LPS mm)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RT_STRUCTURE_SET
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = RT_STRUCTURE_SET, meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.StructureSetROISequence, ds.ROIContourSequence = Sequence(), Sequence()
    for number, (name, mask) in enumerate(masks.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ROIName = number, name
        ds.StructureSetROISequence.append(roi)
        contours = Sequence()
        for k in range(mask.shape[2]):
            padded = np.pad(mask[:, :, k].astype(float), 1)  # closed contours at the edges too
            for line in find_contours(padded, 0.5):
                ijk = np.column_stack([line - 1, np.full(len(line), k), np.ones(len(line))])
                ras = (affine @ ijk.T).T[:, :3]
                lps = ras * [-1, -1, 1]
                contour = Dataset()
                contour.ContourGeometricType = "CLOSED_PLANAR"
                contour.NumberOfContourPoints = len(lps)
                contour.ContourData = [f"{v:.4f}" for v in lps.ravel()]
                contours.append(contour)
        item = Dataset()
        item.ReferencedROINumber, item.ContourSequence = number, contours
        ds.ROIContourSequence.append(item)
    pydicom.dcmwrite(str(path), ds, enforce_file_format=True)
    return path


@pytest.fixture
def ct() -> Volume:
    affine = np.diag([-2.0, -2.0, 3.0, 1.0])  # LPS storage, as scanners write
    affine[:3, 3] = [60.0, 40.0, -20.0]
    return Volume(np.zeros((40, 36, 12), np.int16), affine)


def test_rtstruct_and_nifti_masks_give_the_same_dvh(tmp_path: Path, ct: Volume) -> None:
    target = sphere(ct.shape, ct.spacing, (20, 17, 6), 14.0)
    ring = sphere(ct.shape, ct.spacing, (12, 17, 6), 12.0) & ~sphere(
        ct.shape, ct.spacing, (12, 17, 6), 5.0
    )
    write_volume(ct.like(target.astype(np.uint8)), tmp_path / "target.nii.gz")
    rs = write_rtstruct(tmp_path / "rs.dcm", {"PTV": target, "ring": ring}, ct.affine)

    from_nifti = read_mask(tmp_path / "target.nii.gz", ct)
    from_rs = rtstruct_masks(rs, ct)
    dose = np.random.default_rng(0).uniform(0.5, 1.1, ct.shape)
    np.testing.assert_array_equal(dvh(dose, from_rs["PTV"]), dvh(dose, from_nifti))
    assert dose_at_volume(dose, from_rs["PTV"], 98) == dose_at_volume(dose, from_nifti, 98)
    np.testing.assert_array_equal(from_rs["ring"], ring)  # the hole stays a hole


def test_rtstruct_names_a_missing_roi(tmp_path: Path, ct: Volume) -> None:
    rs = write_rtstruct(
        tmp_path / "rs.dcm", {"PTV": sphere(ct.shape, ct.spacing, (20, 17, 6), 9.0)}, ct.affine
    )
    with pytest.raises(UserError, match=r"no ROI \['CTV'\].*\['PTV'\]"):
        rtstruct_masks(rs, ct, ["CTV"])


def test_phantom_brain_target_lies_in_the_brain() -> None:
    from hmss_ray.data.phantom.render import make_case
    from hmss_ray.data.phantom.tissues import T
    from hmss_ray.dose.phantom import phantom_structures

    case = make_case("1BA001", seed=0, spacing=(3.0, 3.0, 3.0))
    structures = phantom_structures(case.labels, case.mask > 0, "brain", case.spacing)
    inside = np.isin(case.labels[structures.target], [T.GREY, T.WHITE, T.CSF])
    assert structures.target.sum() > 100 and inside.mean() > 0.9
    assert not (structures.target & structures.oars["eyes"]).any()
