"""``hmss-ray predict --ct --target --dose``: the dose check in a study's QA (qa.json, dose.png,
a page of the batch's PDF), the tiny seeded, untrained cascade of the clinic tests on a phantom
head at 8 mm; its sCT means nothing, the dose page around it is what is checked.

Skipped, with the reason, where the optional ``dose`` extra is not installed (``make test-dose``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "pyRadPlan", reason="the dose extra is not installed (make test-dose)", exc_type=ImportError
)

from hmss_ray.data.phantom import make_case
from hmss_ray.dose.structures import sphere
from hmss_ray.inference import __main__ as inference_cli
from hmss_ray.io import Volume, write_volume
from tests.clinic_helpers import make_entry

pytestmark = pytest.mark.usefixtures("one_thread")


def test_predict_with_a_ct_and_a_target_adds_the_dose_check_to_the_qa(tmp_path: Path) -> None:
    case = make_case("1BA001", seed=0, spacing=(8.0, 8.0, 8.0))
    entry = make_entry(tmp_path / "entry")
    for folder in ("cohort", "ct", "target"):
        (tmp_path / folder).mkdir()
    centre = tuple(int(c) for c in np.argwhere(case.mask > 0).mean(axis=0))
    target = sphere(case.mr.shape, (8.0,) * 3, centre, 12.0).astype(np.uint8)
    for name in ("anna", "bert"):
        write_volume(Volume(case.mr, case.affine), tmp_path / "cohort" / f"{name}.nii.gz")
        write_volume(Volume(case.ct, case.affine), tmp_path / "ct" / f"{name}.nii.gz")
    write_volume(Volume(target, case.affine), tmp_path / "target" / "anna.nii.gz")  # bert: none
    out = tmp_path / "out"
    argv = ["--model", entry, "-i", str(tmp_path / "cohort"), "-o", str(out), "--ct",
            str(tmp_path / "ct"), "--target", str(tmp_path / "target"), "--dose", "photon",
            "--no-progress"]  # fmt: skip
    assert inference_cli.main(argv) == 0
    dose = json.loads((out / "anna" / "qa.json").read_text())["dose"]
    row = dose["photon"]
    assert 0.0 <= row["gamma_2_2_pct"] <= 100.0 and np.isfinite(row["ptv_d98_diff_pct"])
    assert (out / "anna" / "dose.png").is_file() and (out / "anna" / "dose.json").is_file()
    assert "dose" not in json.loads((out / "bert" / "qa.json").read_text())  # no target
    pdf = (out / "qa_report.pdf").read_bytes()
    assert (
        pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") + pdf.count(b"/Type/Page") >= 3
    )  # anna: QA + dose, bert: QA
