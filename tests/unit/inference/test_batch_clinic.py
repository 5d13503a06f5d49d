"""Batch prediction as a clinic uses it: the spread as a DICOM Parametric Map beside a DICOM sCT
series, the per-study progress, and a CT given for QA (CT, difference, MAE).

The tiny seeded, untrained cascade of test_batch.py (8 mm brain contract, flip TTA: a spread
exists); its sCT values mean nothing, the files and numbers around them are what is checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pydicom
import pytest
from pydicom.uid import UID

from hmss_ray.data.phantom import make_case
from hmss_ray.inference import __main__ as inference_cli
from hmss_ray.inference.batch import BatchOptions, Study, find_studies, predict_batch
from hmss_ray.inference.progress import Bars
from hmss_ray.inference.synthesizer import Synthesizer, mask_from_mr
from hmss_ray.io import Format, Volume, read_volume, write_volume
from hmss_ray.io.dicom_spread import DESCRIPTION, PARAMETRIC_MAP_STORAGE
from tests.clinic_helpers import dicom_study, make_entry

pytestmark = pytest.mark.usefixtures("one_thread")
SPACING = (8.0, 8.0, 8.0)
# what a patient's record holds; a spread map may carry these only as the sCT series does
IDENTIFYING = ("Patient", "Study", "Accession", "Referring", "Institution", "Operator", "Other")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesizer:
    return Synthesizer.from_uri(make_entry(tmp_path_factory.mktemp("entry")), device="cpu")


@pytest.fixture(scope="module")
def case():
    return make_case("1BA001", seed=0, spacing=SPACING)


def test_a_dicom_sct_gets_its_spread_as_a_parametric_map_on_its_grid_referencing_mr_and_sct(
    synth: Synthesizer, case, tmp_path: Path
) -> None:
    dicom_study(tmp_path / "in" / "carl", case.mr)
    study = [Study("carl", tmp_path / "in" / "carl")]
    predict_batch(synth, study, tmp_path / "dcm", BatchOptions(Format.DICOM, qa=False))
    predict_batch(synth, study, tmp_path / "nii", BatchOptions(Format.NIFTI, qa=False))
    folder = tmp_path / "dcm" / "carl"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["qa.json", "sct", "spread.dcm", "spread.nii.gz"]
    sct, spread = read_volume(folder / "sct"), read_volume(folder / "spread.dcm")
    assert spread.shape == sct.shape and np.allclose(spread.affine, sct.affine, atol=1e-4)
    expected = read_volume(tmp_path / "nii" / "carl" / "spread.nii.gz")
    assert np.allclose(expected.affine, sct.affine, atol=1e-4)
    assert float(expected.array.max()) > 1.0  # flip TTA: the passes differ
    assert np.abs(spread.array - expected.array).max() <= 0.05 + 1e-4  # stored in 0.1 HU
    ds = pydicom.dcmread(folder / "spread.dcm")
    slices = [pydicom.dcmread(p) for p in sorted((folder / "sct").iterdir())]
    mr = [pydicom.dcmread(p) for p in sorted((tmp_path / "in" / "carl").glob("t1_*"))]
    assert (ds.SOPClassUID, ds.Modality, ds.SeriesDescription) == (
        PARAMETRIC_MAP_STORAGE, "OT", DESCRIPTION
    )  # fmt: skip
    assert ds.FrameOfReferenceUID == slices[0].FrameOfReferenceUID == mr[0].FrameOfReferenceUID
    refs = {
        item.SeriesInstanceUID: {
            r.ReferencedSOPInstanceUID for r in item.ReferencedInstanceSequence
        }
        for item in ds.ReferencedSeriesSequence
    }
    assert refs == {
        slices[0].SeriesInstanceUID: {s.SOPInstanceUID for s in slices},
        "1.2.9.1": {s.SOPInstanceUID for s in mr},
    }
    known = {slices[0].SeriesInstanceUID, "1.2.9.1"} | refs[slices[0].SeriesInstanceUID]
    for uid in (ds.SeriesInstanceUID, ds.SOPInstanceUID):
        assert UID(uid).is_valid and uid not in known | refs["1.2.9.1"]
    shown = [k for k in ds.dir() if k.startswith(IDENTIFYING)]
    assert "PatientName" in shown and "StudyInstanceUID" in shown
    for keyword in shown:  # nothing of the patient's beyond what the sCT series carries
        assert ds[keyword].value == slices[0][keyword].value, keyword
    assert ds.NumberOfFrames == sct.shape[2] and ds.pixel_array.dtype == np.uint16


class Recorder:
    """A :class:`~hmss_ray.inference.batch.Progress` that keeps what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def study(self, name: str) -> None:
        self.events.append(("study", name))

    def slices(self, done: int, total: int) -> None:
        self.events.append(("slices", done, total))

    def finished(self) -> None:
        self.events.append(("finished",))


def test_the_progress_is_told_each_study_and_its_slices_up_to_the_total(
    synth: Synthesizer, case, tmp_path: Path
) -> None:
    write_volume(Volume(case.mr, case.affine), tmp_path / "anna.nii.gz")
    (tmp_path / "bob.nii.gz").write_bytes(b"not a volume")
    studies = [Study("anna", tmp_path / "anna.nii.gz"), Study("bob", tmp_path / "bob.nii.gz")]
    recorder = Recorder()
    results = predict_batch(synth, studies, tmp_path / "out", BatchOptions(qa=False), recorder)
    assert [r.status for r in results] == ["ok", "failed"]
    kinds = [e[0] for e in recorder.events]
    assert kinds[0] == "study" and kinds[-2:] == ["study", "finished"]  # bob: no slices
    anna = [e for e in recorder.events[: kinds.index("finished")] if e[0] == "slices"]
    done, totals = [e[1] for e in anna], {e[2] for e in anna}
    assert len(totals) == 1 and done[0] == 0 and done[-1] == totals.pop() > 16  # 2+ batches
    assert done == sorted(done) and len(anna) >= 3
    with Bars(2, enabled=True) as bars:  # the command's bars follow the same calls
        for event in recorder.events:
            getattr(bars, event[0])(*event[1:])
        assert bars.overall.n == 2 and bars.current is None


def _ct_on_half_voxels(case) -> Volume:
    """The CT on a 4 mm grid over the same field of view: each 8 mm voxel as 2x2x2 copies, so
    that trilinear sampling at the 8 mm centres gives the CT back exactly."""
    fine = case.ct
    for axis in range(3):
        fine = np.repeat(fine, 2, axis=axis)
    affine = case.affine @ np.diag([0.5, 0.5, 0.5, 1.0])
    affine[:3, 3] = (case.affine @ [-0.25, -0.25, -0.25, 1.0])[:3]
    return Volume(fine, affine)


def test_a_ct_given_by_study_name_puts_ct_difference_and_mae_into_the_qa(
    synth: Synthesizer, case, tmp_path: Path
) -> None:
    cohort, cts = tmp_path / "cohort", tmp_path / "ct"
    cohort.mkdir()
    for name in ("anna", "bert", "cora", "dirk"):
        write_volume(Volume(case.mr, case.affine), cohort / f"{name}.nii.gz")
    cts.mkdir()
    write_volume(Volume(case.ct[:, ::-1].copy(), case.affine @ _flip_y(case.ct.shape)),
                 cts / "anna.nii.gz")  # fmt: skip  # another storage order: reordered exactly
    write_volume(_ct_on_half_voxels(case), cts / "bert.mha")  # another grid: resampled
    far = case.affine.copy()
    far[:3, 3] += 5000.0
    write_volume(Volume(case.ct, far), cts / "dirk.nii.gz")  # cora: none
    studies = find_studies(cohort, cts)
    assert [s.ct.name if s.ct else None for s in studies] == [
        "anna.nii.gz", "bert.mha", None, "dirk.nii.gz"
    ]  # fmt: skip
    results = {r.study: r for r in predict_batch(synth, studies, tmp_path / "out", BatchOptions())}
    assert "does not overlap" in results["dirk"].error
    assert results["bert"].ct == str(cts / "bert.mha") and results["cora"].ct == ""
    sct = read_volume(tmp_path / "out" / "anna" / "sct.nii.gz").array
    body = mask_from_mr(case.mr, case.affine) > 0
    expected = float(np.abs(sct[body].astype(float) - case.ct[body]).mean())
    for name in ("anna", "bert"):
        values = json.loads((tmp_path / "out" / name / "qa.json").read_text())["values"]
        assert values["ct_mae_hu"] == pytest.approx(expected, abs=1e-3)
        assert values["ct_coverage"] == 1.0
        page = (tmp_path / "out" / name / "qa-data.js").read_text()
        assert '"ct":' in page and '"diff":' in page
    assert "ct_mae_hu" not in json.loads((tmp_path / "out" / "cora" / "qa.json").read_text())
    with_ct, without = (plt.imread(tmp_path / "out" / n / "qa.png") for n in ("anna", "cora"))
    assert with_ct.shape[0] > without.shape[0] * 1.2  # two more rows: CT and sCT - CT


def _flip_y(shape: tuple[int, ...]) -> np.ndarray:
    flip = np.eye(4)
    flip[1, 1], flip[1, 3] = -1.0, shape[1] - 1
    return flip


def test_one_study_with_ct_on_the_command_line_writes_a_result_folder(
    synth: Synthesizer, case, tmp_path: Path, capsys
) -> None:
    write_volume(Volume(case.mr, case.affine), tmp_path / "anna.nii.gz")
    write_volume(Volume(case.ct, case.affine), tmp_path / "anna_ct.nii.gz")
    mr, out, ct = (str(tmp_path / n) for n in ("anna.nii.gz", "out", "anna_ct.nii.gz"))
    argv = ["--model", synth.info.uri, "-i", mr, "-o", out, "--ct", ct, "--device", "cpu"]
    assert inference_cli.main(argv) == 0
    values = json.loads((tmp_path / "out" / "anna" / "qa.json").read_text())["values"]
    assert values["ct_mae_hu"] > 0 and (tmp_path / "out" / "anna" / "qa.png").exists()
    assert inference_cli.main([*argv[:-4], "--ct", str(tmp_path / "none.nii.gz")]) == 2
    assert "no such file or folder (--ct)" in capsys.readouterr().err
    argv[5] = str(tmp_path / "sct.nii.gz")  # -o a file: the results need a folder
    assert inference_cli.main(argv) == 2
    assert "-o is a folder" in capsys.readouterr().err and not Path(argv[5]).exists()
