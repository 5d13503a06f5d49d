"""The QA page served by a live Serve endpoint (GET /qa) in headless chromium: a study chosen
without the token is refused with the endpoint's message; dropped with the token, its sCT comes
back, is drawn in three planes, follows the window presets and downloads as the endpoint's sCT."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
import pytest

from tests.browser.conftest import drawn, planes, save, wait_ready

pytestmark = [pytest.mark.browser, pytest.mark.integration]
TOKEN = "qa-page-token"
DROP = """async ([name, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name));
  document.body.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
}"""


@pytest.fixture(scope="module")
def endpoint(browser, ray_session, tiny_entry: str):

    from hmss_ray.cluster import free_port
    from hmss_ray.serving.app import deploy, shutdown

    url = deploy(
        tiny_entry,
        port=free_port(),
        route_prefix="/clinic",
        env={"HMSS_QA_TOKEN": TOKEN},
        api_token_env="HMSS_QA_TOKEN",
        device="cpu",
    )
    yield url
    shutdown()


def test_the_endpoint_serves_the_page_and_niivue_without_a_token(endpoint: str) -> None:
    page = httpx.get(f"{endpoint}/qa", timeout=30)
    assert page.status_code == 200 and "/clinic/qa/static/qa.js" in page.text
    script = httpx.get(f"{endpoint}/qa/static/niivue.js", timeout=30)
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{endpoint}/qa/static/..%2Fweb.py", timeout=30).status_code == 404


def test_a_dropped_study_comes_back_as_an_sct_to_view_and_download(
    page, endpoint: str, head_mr: Path, tmp_path: Path
) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{endpoint}/qa")
    wait_ready(page)
    page.set_input_files("#file", str(head_mr))  # chosen, no token: refused, nothing shown
    page.wait_for_selector("#status.error")
    assert "401" in page.inner_text("#status") and "API token" in page.inner_text("#status")
    assert page.is_hidden("#download")

    page.fill("#token", TOKEN)
    page.evaluate(DROP, ["anna.nii.gz", base64.b64encode(head_mr.read_bytes()).decode()])
    page.wait_for_function("hmssQA.result", timeout=120_000)
    assert "sCT of anna.nii.gz" in page.inner_text("#status")
    for role in ("mr", "sct"):
        for plane, tile in planes(page, role).items():
            assert drawn(tile) > 0.05, f"{role} {plane}: nothing drawn"
    soft = planes(page, "sct")
    page.click("button[data-preset=lung]")
    lung = planes(page, "sct")
    assert np.abs(soft["coronal"].astype(int) - lung["coronal"]).mean() > 2
    save(page, "qa_page_endpoint.png")

    with page.expect_download() as download:
        page.click("#download")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "anna_sct.nii.gz"
    sct = nib.load(saved)
    assert sct.shape == nib.load(head_mr).shape and sct.get_data_dtype() == np.int16
    assert page.evaluate("sessionStorage.getItem('hmss-token')") == TOKEN
    assert all(url.startswith((endpoint, "blob:", "data:")) for url in requests), requests
