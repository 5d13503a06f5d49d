"""Ray Serve for real: the registry entry behind HTTP on 127.0.0.1, called with httpx."""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
import pytest

from hmss_ray.cluster import free_port
from hmss_ray.inference.synthesizer import Synthesizer, synthesize_volume
from hmss_ray.io import read_volume
from hmss_ray.models import checkpoint as ckpt
from hmss_ray.models.factory import build_generator

from .conftest import tiny_config

pytestmark = pytest.mark.integration
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def entry(tmp_path_factory) -> str:
    """A registry entry holding a tiny (seeded, untrained) generator."""
    import torch

    torch.manual_seed(0)
    cfg = tiny_config()
    tmp = tmp_path_factory.mktemp("entry")
    directory = ckpt.save_checkpoint(
        tmp / "ckpt", generator=build_generator(cfg), cfg=cfg, epoch=3, metrics={"ssim": 0.5}
    )
    return ckpt.write_registry_entry(
        directory, str(tmp / "registry"), "tiny", metrics={"ssim": 0.5}, winner={"trial_id": "t0"}
    )


@pytest.fixture(scope="module")
def server(ray_session, entry):
    from ray import serve

    from hmss_ray.serving.app import deploy

    port = free_port()
    url = deploy(entry, port=port, max_upload_mb=2)
    secure = deploy(
        entry,
        port=port,
        name="secure",
        route_prefix="/secure",
        env={"HMSS_TEST_TOKEN": TOKEN},
        api_token_env="HMSS_TEST_TOKEN",
    )
    yield {"url": url, "secure": secure}
    serve.shutdown()


@pytest.fixture(scope="module")
def case(phantom_dir: Path) -> Path:
    return sorted(phantom_dir.glob("Task1/brain/*/mr.nii.gz"))[0].parent


def _nifti_bytes(array: np.ndarray, affine=None) -> bytes:
    return gzip.compress(nib.Nifti1Image(array, np.eye(4) if affine is None else affine).to_bytes())


def _post(url: str, body: bytes, ctype: str = "application/gzip", **headers) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/synthesize",
        content=body,
        headers={"Content-Type": ctype, **headers},
        timeout=120,
    )


def test_synthesize_returns_sct_on_the_input_grid_equal_to_offline(server, entry, case):
    mr_img = nib.load(case / "mr.nii.gz")
    response = _post(server["url"], (case / "mr.nii.gz").read_bytes())
    assert response.status_code == 200, response.text
    assert response.headers["x-model-name"] == "tiny"
    assert len(response.headers["x-model-version"]) == 12
    assert float(response.headers["x-inference-time-ms"]) > 0
    sct = nib.Nifti1Image.from_bytes(gzip.decompress(response.content))
    assert sct.shape == mr_img.shape
    np.testing.assert_allclose(sct.affine, mr_img.affine)
    data = np.asanyarray(sct.dataobj)
    assert data.dtype == np.int16 and data.min() >= -1024 and data.max() <= 3000
    offline = synthesize_volume(
        Synthesizer.from_uri(entry, device="cpu"), read_volume(case / "mr.nii.gz")
    )
    np.testing.assert_array_equal(data, offline.array)


def test_multipart_with_mask(server, case):
    files = {
        "mr": ("mr.nii.gz", (case / "mr.nii.gz").read_bytes()),
        "mask": ("mask.nii.gz", (case / "mask.nii.gz").read_bytes()),
    }
    response = httpx.post(f"{server['url']}/v1/synthesize", files=files, timeout=120)
    assert response.status_code == 200, response.text
    sct = np.asanyarray(nib.Nifti1Image.from_bytes(gzip.decompress(response.content)).dataobj)
    mask = np.asanyarray(nib.load(case / "mask.nii.gz").dataobj)
    assert (sct[mask == 0] == -1000).all()  # outside the given body outline is air


def test_model_and_health_endpoints(server):
    info = httpx.get(f"{server['url']}/v1/model", timeout=30).json()
    assert info["name"] == "tiny" and info["config"]["image_size"] == 64
    contract = {"orientation": "RAS", "spacing": {"brain": [1.0, 1.0, 1.0]}}
    assert info["config"]["geometry"] == contract  # the model's geometry contract
    assert info["epoch"] == 3 and info["validation_metrics"] == {"ssim": 0.5}
    assert httpx.get(f"{server['url']}/healthz", timeout=30).json() == {"status": "ok"}
    schema = httpx.get(f"{server['url']}/openapi.json", timeout=30).json()
    assert "/v1/synthesize" in schema["paths"]


@pytest.mark.parametrize(
    ("body", "ctype", "status", "words"),
    [
        (b"this is not a nifti", "application/octet-stream", 400, "not a readable NIfTI"),
        (b"", "application/octet-stream", 400, "empty"),
        ("truncated", "application/gzip", 400, "not a readable NIfTI"),
        ("4d", "application/gzip", 422, "3D volume"),
        ("nan", "application/gzip", 422, "non-finite"),
        ("small", "application/gzip", 422, "too small"),
        ("huge", "application/octet-stream", 413, "over the"),
        ("ok", "text/plain", 415, "content type 'text/plain'"),
    ],
)
def test_bad_requests_get_a_clear_4xx_and_the_server_stays_up(
    server, case, body, ctype, status, words
):
    good = (case / "mr.nii.gz").read_bytes()
    bodies = {
        "truncated": good[: len(good) // 2],
        "4d": _nifti_bytes(np.zeros((16, 16, 16, 2), np.float32)),
        "nan": _nifti_bytes(np.full((16, 16, 16), np.nan, np.float32)),
        "small": _nifti_bytes(np.ones((16, 16, 2), np.float32)),
        "huge": b"\0" * (3 * 2**20),
        "ok": good,
    }
    response = _post(server["url"], bodies.get(body, body), ctype)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert httpx.get(f"{server['url']}/healthz", timeout=30).status_code == 200


def test_api_token_is_enforced_when_configured(server, case):
    body = (case / "mr.nii.gz").read_bytes()
    assert _post(server["secure"], body).status_code == 401
    wrong = _post(server["secure"], body, Authorization="Bearer nope")
    assert wrong.status_code == 401 and "API token" in wrong.json()["detail"]
    assert _post(server["secure"], body, Authorization=f"Bearer {TOKEN}").status_code == 200
    assert httpx.get(f"{server['secure']}/v1/model", timeout=30).status_code == 401


def test_a_region_the_model_does_not_cover_is_a_422(server, case):
    url = f"{server['url']}/v1/synthesize?region=pelvis"
    body = (case / "mr.nii.gz").read_bytes()
    response = httpx.post(
        url, content=body, headers={"Content-Type": "application/gzip"}, timeout=120
    )
    assert response.status_code == 422
    assert "region 'pelvis' is not one of this model's" in response.json()["detail"]


def test_client_cli_saves_the_sct(server, case, tmp_path):
    from hmss_ray import client

    out = tmp_path / "sct.nii.gz"
    assert client.main([str(case / "mr.nii.gz"), "-o", str(out), "--url", server["url"]]) == 0
    assert nib.load(out).shape == nib.load(case / "mr.nii.gz").shape


def test_serve_runs_the_entrys_tta_and_ensemble(ray_session, server, tmp_path, case):
    """An entry with a two-member ensemble and flip TTA: /v1/model says so, and the served sCT
    is the offline Synthesizer's (the members' mean over both flips, in HU)."""
    import torch

    from hmss_ray.inference import ensemble
    from hmss_ray.serving.app import deploy

    cfg = tiny_config(
        "inference.tta=flip_lr", "inference.ensemble=run", "inference.ensemble_size=2"
    )
    for epoch, score in enumerate((0.2, 0.1)):
        torch.manual_seed(epoch)
        folder = tmp_path / "run" / f"epoch_{epoch:04d}"
        ckpt.save_checkpoint(folder, generator=build_generator(cfg), cfg=cfg, epoch=epoch,
                             metrics={"score": score})  # fmt: skip
    winner = str(tmp_path / "run" / "epoch_0001")
    entry = ckpt.write_registry_entry(winner, str(tmp_path / "registry"), "ens", metrics={},
                                      winner={"trial_id": "t0"})  # fmt: skip
    ensemble.write_members(entry, cfg, [(winner, 0.1, "t0")])
    url = deploy(entry, port=int(server["url"].rsplit(":", 1)[1]), name="ens", route_prefix="/ens")
    info = httpx.get(f"{url}/v1/model", timeout=30).json()
    assert info["inference"] == {"tta": "flip_lr", "members": 2, "passes": 4}
    response = _post(url, (case / "mr.nii.gz").read_bytes())
    assert response.status_code == 200, response.text
    served = np.asanyarray(nib.Nifti1Image.from_bytes(gzip.decompress(response.content)).dataobj)
    offline = synthesize_volume(
        Synthesizer.from_uri(entry, device="cpu"), read_volume(case / "mr.nii.gz")
    )
    np.testing.assert_array_equal(served, offline.array)
    single = synthesize_volume(
        Synthesizer.from_uri(winner, device="cpu"), read_volume(case / "mr.nii.gz")
    )
    assert np.abs(served.astype(float) - single.array).mean() > 1.0  # the members really averaged
