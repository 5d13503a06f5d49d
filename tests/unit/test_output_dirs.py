"""Every output folder is written aside and takes its name only when complete
(``storage.output_dir``): a failure midway leaves no half folder under the final name and the
previous output as it was; on S3 the file readers look for is uploaded last."""

from __future__ import annotations

from pathlib import Path

import pytest

from hmss_ray import phantom, storage
from hmss_ray.config import ExperimentConfig, UserError
from hmss_ray.evaluate.run import check_output
from hmss_ray.tune.report import TrialRow, write_report


def write_report_files(out: Path, text: str, fail: bool = False) -> None:
    (out / "summary.csv").write_text(text)
    (out / "figures").mkdir()
    (out / "figures" / "a.png").write_bytes(b"png")
    if fail:
        raise OSError("disk full")
    (out / "report.md").write_text(text)


def test_a_failure_midway_leaves_the_previous_output_and_no_half_folder(tmp_path):
    target = tmp_path / "eval"
    with storage.output_dir(str(target), last="report.md") as out:
        write_report_files(out, "first")
    assert (target / "report.md").read_text() == "first"
    with pytest.raises(OSError, match="disk full"), storage.output_dir(str(target)) as out:
        write_report_files(out, "second", fail=True)
    assert (target / "report.md").read_text() == "first"
    assert (target / "summary.csv").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]  # no partial, no old copy
    with storage.output_dir(str(target)) as out:
        write_report_files(out, "second")
    assert (target / "summary.csv").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]
    assert target.stat().st_mode & 0o055  # a folder others may read, as mkdir makes it


def test_on_s3_nothing_is_uploaded_before_the_output_is_complete(s3_bucket):
    uri = f"{s3_bucket}/reports/eval"
    with pytest.raises(OSError), storage.output_dir(uri, last="report.md") as out:
        write_report_files(out, "first", fail=True)
    assert storage.listdir(uri) == []
    with storage.output_dir(uri, last="report.md") as out:
        write_report_files(out, "first")
    assert storage.read_text(f"{uri}/report.md") == "first"
    assert storage.read_bytes(f"{uri}/figures/a.png") == b"png"


def test_the_search_report_is_written_whole(tmp_path):
    row = TrialRow(trial_id="t1", score=0.5, ssim=0.8, mae_hu=70.0, kid=0.01, psnr=25.0,
                   params={"optim.lr_g": 1e-4}, checkpoint_path="x")  # fmt: skip
    out = tmp_path / "search" / "report"
    write_report([row], str(out), ExperimentConfig())
    assert {p.name for p in out.iterdir()} == {"results.csv", "results.md", "pareto.png"}
    assert [p.name for p in out.parent.iterdir()] == ["report"]


def test_evaluate_refuses_a_report_folder_it_did_not_write_or_that_holds_the_predictions(
    tmp_path,
):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "thesis.tex").write_text("mine")
    with pytest.raises(UserError, match="holds files evaluate did not write"):
        check_output(str(mine), None)
    report = tmp_path / "eval"
    (report / "sct").mkdir(parents=True)
    (report / "report.md").write_text("# an earlier report")
    check_output(str(report), None)  # an earlier report: replaced whole
    with pytest.raises(UserError, match="lies inside the report folder"):
        check_output(str(report), str(report / "sct"))
    check_output(str(tmp_path / "new"), None)


def test_phantom_writes_its_folder_whole(tmp_path, capsys):
    out = tmp_path / "phantom"
    args = ["--cases", "1", "--regions", "brain", "--coarse", "--quiet", "-o", str(out)]
    assert phantom.main(args) == 0
    assert (out / phantom.MARKER).is_file() and list(out.glob("Task1/brain/*/mr.*"))
    assert [p.name for p in tmp_path.iterdir()] == ["phantom"]
    assert f"wrote {out / 'Task1'}" in capsys.readouterr().out
