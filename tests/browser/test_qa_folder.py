"""The QA page of a predict output folder, opened from file:// in headless chromium: no server,
no network; the volumes render in the three planes, a window preset and the spread overlay change
the pixels, the flags of qa.json are listed, and index.html leads to the study."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from tests.browser.conftest import drawn, planes, save, wait_ready

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def predicted(tiny_entry: str, head_mr: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m hmss_ray.inference`` on a folder of two studies, one of them broken."""
    from hmss_ray.inference import __main__ as inference_cli

    cohort = tmp_path_factory.mktemp("cohort")
    (cohort / "anna.nii.gz").write_bytes(head_mr.read_bytes())
    (cohort / "dora.nii.gz").write_bytes(gzip.compress(b"\x5c\x01" + bytes(200)))
    out = tmp_path_factory.mktemp("predicted") / "out"
    argv = ["--model", tiny_entry, "--mr", str(cohort), "--out", str(out), "--device", "cpu"]
    assert inference_cli.main(argv) == 1  # dora failed, anna written
    return out


def test_the_study_page_renders_offline_from_the_output_folder(page, predicted: Path) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto((predicted / "index.html").as_uri())
    assert "dora: failed" in page.inner_text("body")
    page.click("text=anna")
    wait_ready(page)
    assert page.url.endswith("anna/qa.html")
    assert requests and all(url.startswith(("file://", "data:")) for url in requests), requests

    for role in ("mr", "sct"):
        shown = planes(page, role)
        assert sorted(shown) == ["axial", "coronal", "sagittal"]
        for plane, tile in shown.items():
            assert drawn(tile) > 0.05, f"{role} {plane}: nothing drawn"
    save(page, "qa_page_file_soft.png")

    soft = planes(page, "sct")
    page.click("button[data-preset=bone]")
    bone = planes(page, "sct")
    save(page, "qa_page_file_bone.png")
    assert np.abs(soft["axial"].astype(int) - bone["axial"]).mean() > 2

    page.check("#spread")
    overlaid = planes(page, "sct")
    save(page, "qa_page_file_spread.png")
    assert np.abs(overlaid["axial"].astype(int) - bone["axial"]).mean() > 0.5

    report = json.loads((predicted / "anna" / "qa.json").read_text())
    listed = page.locator("#flags li").all_inner_texts()
    assert listed == (report["flags"] or ["no flags"])
    assert "outline_dice" in page.inner_text("#metrics")
