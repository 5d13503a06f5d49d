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
    argv = ["--model", tiny_entry, "-i", str(cohort), "-o", str(out), "--device", "cpu"]
    assert inference_cli.main(argv) == 1  # dora failed, anna written
    return out


def test_the_study_page_renders_offline_from_the_output_folder(page, predicted: Path) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto((predicted / "index.html").as_uri())
    assert "dora: failed" in page.inner_text("body")
    save(page, "qa_index.png")
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


def test_with_a_ct_the_page_shows_the_ct_and_the_difference(
    page, tiny_entry: str, head_mr: Path, tmp_path: Path
) -> None:
    """``hmss-ray predict -i anna.nii.gz --ct anna_ct.nii.gz -o out/``: one study with its CT."""
    from hmss_ray.data.phantom import make_case
    from hmss_ray.inference import __main__ as inference_cli
    from hmss_ray.io import Volume, write_volume

    case = make_case("1BA001", seed=0, spacing=(8.0, 8.0, 8.0))  # head_mr's case, with its CT
    write_volume(Volume(case.ct, case.affine), tmp_path / "anna_ct.nii.gz")
    argv = ["--model", tiny_entry, "-i", str(head_mr), "--ct", str(tmp_path / "anna_ct.nii.gz"),
            "-o", str(tmp_path / "out"), "--device", "cpu"]  # fmt: skip
    assert inference_cli.main(argv) == 0
    study = tmp_path / "out" / "anna"
    assert "ct_mae_hu" in json.loads((study / "qa.json").read_text())["values"]
    page.goto((study / "qa.html").as_uri())
    wait_ready(page)
    assert page.locator(".panel h2").all_inner_texts() == ["MR", "sCT", "CT", "sCT - CT (HU)"]
    for role in ("ct", "diff"):
        for plane, tile in planes(page, role).items():
            assert drawn(tile) > 0.05 or role == "diff", f"{role} {plane}: nothing drawn"
            assert tile.std() > 5, f"{role} {plane}: a flat image"
    page.click("button[data-preset=bone]")
    save(page, "qa_page_file_ct.png")
