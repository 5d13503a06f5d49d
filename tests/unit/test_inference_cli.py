"""``python -m hmss_ray.inference`` with every format in and out, and one line for a bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from hmss_ray.config import load_config
from hmss_ray.inference import __main__ as inference
from hmss_ray.io import Volume, read_volume, write_volume
from hmss_ray.io.align import align_to
from hmss_ray.models import checkpoint as ckpt
from hmss_ray.models.factory import build_generator
from tests.dicom_helpers import DICOMDIR_TESTS, write_series

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> dict[str, Path]:
    """A registry entry with the demo generator (seeded, untrained) and one MR in three formats:
    a DICOM series made from pydicom's MR_small.dcm, and the same volume as NIfTI and MetaImage."""
    import torch

    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("cli")
    cfg = load_config(ROOT / "configs" / "demo.yaml")
    directory = ckpt.save_checkpoint(tmp / "ckpt", generator=build_generator(cfg), cfg=cfg)
    entry = ckpt.write_registry_entry(
        directory, str(tmp / "registry"), "demo", metrics={}, winner={"trial_id": "t0"}
    )
    zz, yy, xx = np.meshgrid(np.arange(12), np.arange(40), np.arange(40), indexing="ij")
    head = ((xx - 20) ** 2 + (yy - 20) ** 2 < 15**2) * (800 + 10 * zz) + 50 * ((xx + yy) % 7)
    pixels = np.ascontiguousarray(head.transpose(2, 1, 0)).astype(np.int16)  # (x, y, z)
    # 4 mm pixels, 8 mm slices: a 120 mm disc, as coarse as the demo model's contract
    write_series(tmp / "mr_dicom", [8.0 * k for k in range(12)], pixels=pixels, pixel_spacing=4.0)
    mr = read_volume(tmp / "mr_dicom")
    write_volume(mr, tmp / "mr.nii.gz")
    write_volume(mr, tmp / "mr.mha")
    return {"entry": Path(entry), "tmp": tmp}


def _run(workdir, *argv: str) -> int:
    return inference.main(["--model", str(workdir["entry"]), "--device", "cpu", *argv])


def test_every_input_format_gives_the_same_sct_in_every_output_format(workdir) -> None:
    tmp = workdir["tmp"]
    runs = {
        "mr.nii.gz": "sct.nii.gz",
        "mr.mha": "sct.mha",
        "mr_dicom": "sct_dicom",
    }
    for mr, out in runs.items():
        assert _run(workdir, "-i", str(tmp / mr), "-o", str(tmp / out)) == 0
    reference = read_volume(tmp / "sct.nii.gz")
    assert reference.shape == (40, 40, 12) and reference.array.dtype == np.int16
    for out in ("sct.mha", "sct_dicom"):
        other = align_to(read_volume(tmp / out), reference.affine, reference.shape)
        assert np.abs(other.array.astype(int) - reference.array).max() <= 1, out
    first = pydicom.dcmread(sorted((tmp / "sct_dicom").iterdir())[0])
    source = pydicom.dcmread(sorted((tmp / "mr_dicom").iterdir())[0])
    assert first.Modality == "CT" and first.StudyInstanceUID == source.StudyInstanceUID


def test_patient_options_fill_a_series_made_from_nifti(workdir) -> None:
    tmp = workdir["tmp"]
    argv = ["-i", str(tmp / "mr.nii.gz"), "-o", str(tmp / "p.zip")]
    patient = ["--patient-id", "P-9", "--patient-name", "Doe^Jane", "--patient-sex", "F"]
    assert _run(workdir, *argv, *patient) == 0
    import zipfile

    with zipfile.ZipFile(tmp / "p.zip") as archive:
        ds = pydicom.dcmread(archive.open("CT_0001.dcm"))
    assert (ds.PatientID, ds.PatientName, ds.PatientSex) == ("P-9", "Doe^Jane", "F")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["-i", "{dicomdir}/98892003/MR2", "-o", "{tmp}/x.nii"], "holds no MR volume"),
        (["-i", "{tmp}/mr_dicom", "-o", "{tmp}/x", "--patient-id", "1"], "drop --patient-*"),
        (["-i", "{tmp}/mr.mha", "-o", "{tmp}/x.nii", "--patient-id", "1"], "DICOM output"),
        (["-i", "{tmp}/mr.mha", "-o", "{tmp}/x.png"], "cannot tell the output format"),
        (["-i", "{tmp}/mr.mha", "-o", "{tmp}/x.nii", "--set", "io.max_voxels=100"], "io.max"),
        (["-i", "{tmp}/mr.mha", "-o", "{tmp}/mr_dicom"], "is not empty"),
        (["-i", "{tmp}/mr.mha", "--mask", "{tmp}/other.nii", "-o", "{tmp}/y.nii"], "grid"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(workdir, argv, words, capsys) -> None:
    tmp = workdir["tmp"]
    write_volume(
        Volume(np.ones((40, 40, 12), np.uint8), np.diag([2.0, 2, 2, 1])), tmp / "other.nii"
    )
    filled = [a.format(tmp=tmp, dicomdir=DICOMDIR_TESTS) for a in argv]
    assert _run(workdir, *filled) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and words in err
