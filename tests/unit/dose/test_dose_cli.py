"""Bad input to the dose commands: one line on stderr, exit status 2 (no engine needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hmss_ray.dose.__main__ import main as dose_main
from hmss_ray.evaluate.__main__ import main as evaluate_main
from hmss_ray.io import Volume, write_volume


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_evaluate_with_an_unknown_dose_modality(capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate_main(["--data", ".", "--predictions", ".", "--dose", "electron"]) == 2
    assert "unknown dose modality in 'electron'; choose from: photon, proton" in _one_line_error(
        capsys
    )


def test_dose_with_an_oar_without_a_name(tmp_path: Path, capsys) -> None:
    ct = tmp_path / "ct.nii.gz"
    write_volume(Volume(np.zeros((8, 8, 4), np.float32), np.eye(4)), ct)
    argv = ["--ct", str(ct), "--sct", str(ct), "--target", str(ct), "--oar", "eyes.nii.gz"]
    assert dose_main(argv) == 2
    err = _one_line_error(capsys)
    assert "expected NAME=MASK" in err or "'dose' extra" in err


def test_dose_with_a_target_on_another_grid(tmp_path: Path, capsys) -> None:
    pytest.importorskip("pyRadPlan", reason="the dose extra is not installed", exc_type=ImportError)
    ct, target = tmp_path / "ct.nii.gz", tmp_path / "target.nii.gz"
    write_volume(Volume(np.zeros((8, 8, 4), np.float32), np.eye(4)), ct)
    write_volume(Volume(np.ones((8, 8, 5), np.uint8), np.eye(4)), target)
    assert dose_main(["--ct", str(ct), "--sct", str(ct), "--target", str(target)]) == 2
    assert "target target.nii.gz: shape" in _one_line_error(capsys)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--dose", "photon"], "--dose plans on the CT: give --ct and --target too"),
        (["--target", "t.nii.gz"], "--target is the dose check's: give --dose photon[,proton]"),
        (["--dose", "electron", "--ct", "c", "--target", "t"], "unknown dose modality"),
    ],
)
def test_predict_dose_flags_without_what_they_need(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], words: str
) -> None:
    from hmss_ray.inference.__main__ import main as predict_main

    mr = tmp_path / "mr.nii.gz"
    write_volume(Volume(np.zeros((8, 8, 4), np.float32), np.eye(4)), mr)
    argv = ["--model", str(tmp_path / "none"), "-i", str(mr), "-o", str(tmp_path / "out"), *extra]
    assert predict_main(argv) == 2
    assert words in _one_line_error(capsys)
