"""Batch prediction of a folder of studies in mixed formats: the model loaded once, the right
DICOM series chosen, a broken study reported and skipped, the spread map, QA figures and the PDF.

A tiny seeded, untrained cascade from a real registry entry (8 mm brain contract) with flip TTA,
so that the spread map exists; its values mean nothing here (see test_spread.py for that).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import pydicom
import pytest

from hmss_ray import storage
from hmss_ray.data.phantom import make_case
from hmss_ray.inference import __main__ as inference_cli
from hmss_ray.inference.batch import BatchOptions, find_studies, predict_batch, summary_table
from hmss_ray.inference.synthesizer import Synthesizer
from hmss_ray.io import read_volume
from tests.clinic_helpers import STUDIES, dicom_study, make_cohort, make_entry
from tests.dicom_helpers import write_series

pytestmark = pytest.mark.usefixtures("one_thread")
# a QA figure to look at (gitignored)
ARTEFACTS = Path(__file__).resolve().parents[3] / "outputs" / "test-artefacts"


@pytest.fixture(scope="module")
def entry(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_entry(tmp_path_factory.mktemp("entry"))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cohort(tmp_path_factory.mktemp("cohort"))


def test_a_cohort_in_mixed_formats_gives_an_sct_per_study_and_reports_the_broken_one(
    entry: str, cohort: Path, tmp_path: Path
) -> None:
    synth = Synthesizer.from_uri(entry, device="cpu")
    studies = find_studies(cohort)
    assert [s.name for s in studies] == STUDIES
    results = predict_batch(synth, studies, tmp_path / "out", BatchOptions())
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "out" / "carl" / "qa.png", ARTEFACTS / "qa_carl.png")
    status = {r.study: r.status for r in results}
    assert status == {n: "ok" for n in ("anna", "bert", "carl", "emil", "fred")} | {
        "dora": "failed"
    }
    carl = next(r for r in results if r.study == "carl")
    assert carl.series.startswith("series 1.2.9.1 (MR") and "modality CT" in carl.series
    dora = next(r for r in results if r.study == "dora")
    assert "dora" in summary_table(results) and dora.error and "Traceback" not in dora.error
    for name in ("anna", "bert", "carl", "emil", "fred"):
        folder = tmp_path / "out" / name
        sct, mr_in = read_volume(folder / "sct.nii.gz"), next(s for s in studies if s.name == name)
        assert sct.shape == read_volume(mr_in.path).shape
        spread = read_volume(folder / "spread.nii.gz")
        assert spread.shape == sct.shape and float(spread.array.max()) > 0  # flip TTA: 2 passes
        assert (folder / "qa.png").stat().st_size > 10_000
        assert "values" in json.loads((folder / "qa.json").read_text())
    assert not (tmp_path / "out" / "dora").exists()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    pdf = (tmp_path / "out" / "qa_report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page[^s]", pdf)) == 5
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(summary["studies"]) == 6


def test_the_batch_command_writes_the_studies_and_exits_1_when_one_failed(
    entry: str, cohort: Path, tmp_path: Path, capsys
) -> None:
    argv = ["--model", entry, "-i", str(cohort), "-o", str(tmp_path / "out"), "--no-qa"]
    assert inference_cli.main(argv) == 1
    out = capsys.readouterr().out
    assert "5 of 6 studies written" in out and "dora" in out
    assert (tmp_path / "out" / "carl" / "sct.nii.gz").exists()
    assert not (tmp_path / "out" / "carl" / "qa.png").exists()
    # again without --overwrite: nothing is replaced
    before = (tmp_path / "out" / "anna" / "sct.nii.gz").stat().st_mtime_ns
    assert inference_cli.main(argv) == 1
    assert "exists (--overwrite)" in capsys.readouterr().out
    assert (tmp_path / "out" / "anna" / "sct.nii.gz").stat().st_mtime_ns == before


def test_a_study_folder_with_several_mr_series_takes_a_description_rule(
    entry: str, tmp_path: Path
) -> None:
    case = make_case("1BA001", seed=0, spacing=(8.0, 8.0, 8.0))
    dicom_study(tmp_path / "study", case.mr)
    write_series(tmp_path / "study" / "t2", [0, 1, 2, 3], series_uid="1.2.9.4")
    for path in (tmp_path / "study").glob("t1_*"):
        ds = pydicom.dcmread(path)
        ds.SeriesDescription = "T1 3D"
        ds.save_as(path)
    out = tmp_path / "sct.nii.gz"
    base = ["--model", entry, "-i", str(tmp_path / "study"), "-o", str(out)]
    assert inference_cli.main(base) == 2  # two MR volumes: which one?
    assert inference_cli.main([*base, "--series-description", "t1"]) == 0
    assert nib.load(out).shape == case.mr.shape


def test_a_cohort_on_object_storage_is_read_and_written_there(
    entry: str, cohort: Path, s3_bucket: str, tmp_path: Path
) -> None:
    for name in ("anna.nii.gz", "dora.nii.gz", "emil.dcm"):
        storage.write_bytes(f"{s3_bucket}/in/{name}", (cohort / name).read_bytes())
    before = set(Path(tempfile.gettempdir()).glob("hmss-predict-*"))
    argv = ["--model", entry, "-i", f"{s3_bucket}/in", "-o", f"{s3_bucket}/out", "--no-qa"]
    assert inference_cli.main(argv) == 1  # dora is broken
    assert storage.listdir(f"{s3_bucket}/out") == ["anna", "emil", "summary.json"]
    assert "sct.nii.gz" in storage.listdir(f"{s3_bucket}/out/anna")
    summary = storage.read_json(f"{s3_bucket}/out/summary.json")
    assert [row["status"] for row in summary["studies"]] == ["ok", "failed", "ok"]
    assert set(Path(tempfile.gettempdir()).glob("hmss-predict-*")) == before  # nothing left
