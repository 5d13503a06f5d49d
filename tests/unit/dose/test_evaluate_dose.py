"""``hmss_ray.evaluate --dose``: per-patient dose columns, the dose tables in report.md, a DVH
figure and a dose-difference panel per patient. Phantom cases (target from their tissue labels),
the sCT equal to the CT: every gamma pass rate is 100 % and every difference 0."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip(
    "pyRadPlan", reason="the dose extra is not installed (make test-dose)", exc_type=ImportError
)
pytest.importorskip(
    "pymedphys", reason="the dose extra is not installed (make test-dose)", exc_type=ImportError
)

from hmss_ray.data.phantom import write_dataset
from hmss_ray.evaluate.__main__ import main

ROOT = Path(__file__).parents[3]


def test_evaluate_with_dose_reports_dose_per_patient_and_centre(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HMSS_RANDOM_FEATURES_OK", "1")
    summary = write_dataset(
        tmp_path / "data", cases=1, regions=("brain",), spacing=(5.0, 5.0, 10.0)
    )
    case_id = summary.paired[0]
    pred = tmp_path / "pred"
    pred.mkdir()
    shutil.copy(next((tmp_path / "data").glob(f"Task1/*/{case_id}/ct.nii.gz")),
                pred / f"{case_id}.nii.gz")  # fmt: skip
    out = tmp_path / "report"
    config = str(ROOT / "configs" / "demo.yaml")
    argv = ["--data", str(tmp_path / "data"), "--predictions", str(pred), "--dose", "photon",
            "--config", config, "--out", str(out), "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    row = pd.read_csv(out / "per_patient.csv").iloc[0]
    assert row["photon_gamma_2_2_pct"] == 100.0
    assert abs(row["photon_ptv_d98_diff_pct"]) < 1e-6
    text = (out / "report.md").read_text()
    assert "## Dose (CT plan recomputed on the sCT)" in text and "### Per centre" in text
    for figure in (f"dvh_{case_id}.png", f"dose_diff_{case_id}.png"):
        assert (out / figure).stat().st_size > 10_000 and f"]({figure})" in text
