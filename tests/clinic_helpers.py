"""A cohort of studies in mixed formats and a tiny registry entry with flip TTA, for the batch
prediction tests (local and Ray Data)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pydicom
import torch

from hmss_ray.config import ExperimentConfig
from hmss_ray.data.phantom import make_case
from hmss_ray.io import Volume, write_volume
from hmss_ray.models import checkpoint as ckpt
from hmss_ray.models.factory import build_generator
from tests.dicom_helpers import write_enhanced, write_series
from tests.small import TINY_MODEL

TINY = {**TINY_MODEL, "data.spacing.brain": [8.0, 8.0, 8.0], "inference.tta": "flip_lr"}
STUDIES = ["anna", "bert", "carl", "dora", "emil", "fred"]  # dora is broken


def make_entry(tmp: Path) -> str:
    """A registry entry: a tiny seeded, untrained cascade (8 mm brain contract, flip TTA)."""
    torch.manual_seed(0)
    cfg = ExperimentConfig().replace(TINY)
    directory = ckpt.save_checkpoint(tmp / "ckpt", generator=build_generator(cfg), cfg=cfg)
    return ckpt.write_registry_entry(
        directory, str(tmp / "registry"), "tiny", metrics={}, winner={"trial_id": "t0"}
    )


def dicom_study(folder: Path, mr: np.ndarray) -> None:
    """A localiser, the MR volume (8 mm) and a CT series of one study, as a scanner export
    mixes them (the MR's files straight in the folder, the others in subfolders)."""
    positions = [8.0 * k for k in range(mr.shape[2])]
    pixels = np.clip(mr, 0, 3000).astype(np.int16)
    write_series(folder / "t1", positions, pixels=pixels, pixel_spacing=8.0, series_uid="1.2.9.1")
    write_series(folder / "loc", [0.0], series_uid="1.2.9.2")
    write_series(folder / "ct", [0.0, 1.0], template="CT_small.dcm", series_uid="1.2.9.3")
    study = pydicom.dcmread(next((folder / "t1").iterdir())).StudyInstanceUID
    for path in (folder / "ct").iterdir():  # one study: the CT too
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study
        ds.save_as(path)
    for path in (folder / "t1").iterdir():
        path.rename(folder / f"t1_{path.name}")
    (folder / "t1").rmdir()


def make_cohort(root: Path) -> Path:
    """NIfTI, MetaImage, a DICOM study of three series, a broken file, an Enhanced MR, NRRD."""
    root.mkdir(parents=True, exist_ok=True)
    case = make_case("1BA001", seed=0, spacing=(8.0, 8.0, 8.0))
    write_volume(Volume(case.mr, case.affine), root / "anna.nii.gz")
    write_volume(Volume(case.mr[::-1].copy(), case.affine), root / "bert.mha")
    dicom_study(root / "carl", case.mr)
    (root / "dora.nii.gz").write_bytes(gzip.compress(b"\x5c\x01" + bytes(200)))  # broken
    positions = [8.0 * k for k in range(case.mr.shape[2])]
    pixels = np.clip(case.mr, 0, 3000).astype(np.int16)
    write_enhanced(root / "emil.dcm", positions, pixels, pixel_spacing=8.0)  # Enhanced MR
    write_volume(Volume(case.mr, case.affine), root / "fred.nrrd")
    return root
