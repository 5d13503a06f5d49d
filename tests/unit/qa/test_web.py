"""The QA page's files without a browser: the embedded volumes decode to the voxels (and the
world positions) they came from, large volumes are strided under the limit, a study page and the
batch's index and assets are written (the browser tests look at them in chromium)."""

from __future__ import annotations

import base64
import gzip
import json

import nibabel as nib
import numpy as np

from hmss_ray.qa import web


def _decode(text: str) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(base64.b64decode(text)))


def test_an_embedded_volume_keeps_its_hu_and_its_world_positions() -> None:
    affine = np.array([[0, 0, 2.0, -30], [-1.5, 0, 0, 40], [0, 3.0, 0, 5], [0, 0, 0, 1]])
    sct = np.arange(-1000, -1000 + 10 * 12 * 14, dtype=np.int16).reshape(10, 12, 14)
    image = _decode(web.encode(sct, affine))
    assert image.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asanyarray(image.dataobj), sct)
    np.testing.assert_allclose(image.affine, affine)
    spread = np.linspace(0, 312.5, sct.size, dtype=np.float32).reshape(sct.shape)
    back = _decode(web.encode(spread, affine)).get_fdata()
    np.testing.assert_allclose(back, spread, atol=0.01)  # int16 with a slope


def test_a_large_volume_is_strided_under_the_limit_and_stays_in_place() -> None:
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    affine[:3, 3] = (-10, 20, 30)
    mr = np.random.default_rng(0).random((40, 30, 20), dtype=np.float32)
    image = _decode(web.encode(mr, affine, max_voxels=2000))
    assert image.shape == (14, 10, 7)  # a step of 3: 2 gives 3000 voxels, over 2000
    np.testing.assert_allclose(image.affine @ [1, 1, 1, 1], affine @ [3, 3, 3, 1])
    np.testing.assert_allclose(image.get_fdata(), mr[::3, ::3, ::3], atol=1e-3)


def test_a_study_page_and_the_batch_index_are_written_next_to_the_volumes(tmp_path) -> None:
    study = tmp_path / "anna"
    study.mkdir()
    volume = np.zeros((4, 5, 6), np.int16)
    page = web.StudyPage(
        "anna", np.eye(4), volume, volume, ct=volume + 10, qa={"flags": ["x"], "values": {}}
    )
    web.write_study_page(study, page)
    html = (study / "qa.html").read_text()
    assert '<script src="../qa-viewer/niivue.js">' in html and "qa-data.js" in html
    data = json.loads((study / "qa-data.js").read_text().split("=", 1)[1].rstrip(";\n"))
    assert set(data["volumes"]) == {"mr", "sct", "ct", "diff"}
    assert (np.asanyarray(_decode(data["volumes"]["diff"]).dataobj) == -10).all()
    rows = [
        {"study": "anna", "status": "ok", "qa": {"flags": []}},
        {"study": "<dora>", "status": "failed", "error": "not a volume"},
    ]
    index = web.write_viewer(tmp_path, rows).read_text()
    assert '<a href="anna/qa.html">anna</a>: no flags' in index
    assert "&lt;dora&gt;: failed: not a volume" in index
    assert sorted(p.name for p in (tmp_path / web.VIEWER).iterdir()) == sorted(web.ASSETS)


def test_the_routes_serve_the_page_under_its_prefix_and_only_the_three_assets() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    web.add_routes(app)
    client = TestClient(app, root_path="/clinic")
    page = client.get("/qa")
    assert page.status_code == 200 and '<script src="/clinic/qa/static/niivue.js">' in page.text
    assert "{{" not in page.text
    for name in web.ASSETS:
        assert client.get(f"/qa/static/{name}").content == (web.STATIC / name).read_bytes()
    assert client.get("/qa/static/qa.html").status_code == 404
    assert client.get("/qa/static/..%2Fweb.py").status_code == 404
