"""Ray Serve for real: the registry entry behind HTTP on 127.0.0.1, called with httpx."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
import pydicom
import pytest

from hmss_ray.cluster import free_port
from hmss_ray.config import IOConfig
from hmss_ray.inference.synthesizer import Synthesizer, synthesize_volume
from hmss_ray.io import read_volume, volume_from_bytes, volume_to_bytes
from hmss_ray.models import checkpoint as ckpt
from hmss_ray.models.factory import build_generator
from tests.dicom_helpers import write_series, zip_bytes

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

    from hmss_ray.serving.app import deploy, shutdown

    port = free_port()
    # small limits so that the bombs below stay small; the voxel limit is the default
    url = deploy(entry, port=port, max_upload_mb=2, io={"max_decompressed_mb": 64})
    secure = deploy(
        entry,
        port=port,
        name="secure",
        route_prefix="/secure",
        env={"HMSS_TEST_TOKEN": TOKEN},
        api_token_env="HMSS_TEST_TOKEN",
    )
    yield {"url": url, "secure": secure}
    shutdown()


@pytest.fixture(scope="module")
def case(phantom_dir: Path) -> Path:
    return sorted(phantom_dir.glob("Task1/brain/*/mr.nii.gz"))[0].parent


@pytest.fixture(scope="module")
def dicom_mr(case: Path, tmp_path_factory) -> Path:
    """The phantom MR as an MR series made from pydicom's shipped MR_small.dcm (int16, 1 mm)."""
    mr = np.asanyarray(nib.load(case / "mr.nii.gz").dataobj)
    pixels = np.clip(np.rint(mr * 4), 0, 32767).astype(np.int16)
    folder = tmp_path_factory.mktemp("dicom") / "mr"
    write_series(folder, list(range(mr.shape[2])), pixels=pixels, pixel_spacing=1.0)
    return folder


def _zip_folder(*folders: Path) -> bytes:
    return zip_bytes({f"{f.name}/{p.name}": p.read_bytes() for f in folders for p in f.iterdir()})


def _nifti_bytes(array: np.ndarray, affine=None) -> bytes:
    return gzip.compress(nib.Nifti1Image(array, np.eye(4) if affine is None else affine).to_bytes())


def _post(url: str, body, ctype: str = "application/gzip", **kwargs) -> httpx.Response:
    headers = {"Content-Type": ctype, **kwargs.pop("headers", {})}
    return httpx.post(f"{url}/v1/synthesize", content=body, headers=headers, timeout=120, **kwargs)


def test_synthesize_returns_sct_on_the_input_grid_equal_to_offline(server, entry, case, one_thread):
    """Offline on one torch thread, as the replica (num_cpus 1) runs: another thread count may
    sum a convolution in another order and round one voxel the other way."""
    mr_img = nib.load(case / "mr.nii.gz")
    response = _post(server["url"], (case / "mr.nii.gz").read_bytes())
    assert response.status_code == 200, response.text
    assert response.headers["x-model-name"] == "tiny"
    assert response.headers["x-model-version"] == entry.rsplit("@", 1)[1]  # the version
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


def test_int16_nii_goes_in_as_it_is_and_comes_back_int16_stored_on_loopback(
    server, entry, case, tmp_path
):
    """The client sends an uncompressed int16 .nii as its bytes and asks for no compression on
    loopback; the answer is int16, the offline sCT, in a stored gzip (gzip accepted or not), and
    says where the replica's time went (Server-Timing)."""
    from hmss_ray.serving.client import synthesize

    mr = nib.load(case / "mr.nii.gz")
    data = np.clip(np.rint(np.asanyarray(mr.dataobj)), 0, 32767).astype(np.int16)
    path = tmp_path / "mr.nii"
    nib.save(nib.Nifti1Image(data, mr.affine), path)
    response = synthesize(server["url"], path)
    assert response.status_code == 200, response.text
    assert response.request.headers["accept-encoding"] == "identity"
    assert response.request.content == path.read_bytes()  # int16, as it is
    raw = gzip.decompress(response.content)
    assert len(response.content) > len(raw)  # stored: nothing compressed on loopback
    sct = nib.Nifti1Image.from_bytes(raw)
    assert sct.get_data_dtype() == np.int16
    offline = synthesize_volume(Synthesizer.from_uri(entry, device="cpu"), read_volume(path))
    np.testing.assert_array_equal(np.asanyarray(sct.dataobj), offline.array)
    timing = response.headers["server-timing"].split(",")
    phases = dict(item.strip().split(";dur=") for item in timing)
    assert {"upload", "parse", "inference", "encode"} <= set(phases)
    gzip_ok = {"Accept-Encoding": "gzip"}
    again = _post(server["url"], raw, "application/octet-stream", headers=gzip_ok)
    assert again.status_code == 200 and len(again.content) > len(gzip.decompress(again.content))


def test_one_volume_as_nifti_metaimage_and_dicom_gives_the_same_sct(server, entry, dicom_mr):
    """The same MR sent three ways; every answer (NIfTI, MetaImage, DICOM) within 1 HU."""
    mr = read_volume(dicom_mr)
    expected = synthesize_volume(Synthesizer.from_uri(entry, device="cpu"), mr).array
    bodies = {
        "nifti": (volume_to_bytes(mr, "nifti"), "application/gzip"),
        "mha": (volume_to_bytes(mr, "mha"), "application/octet-stream"),
        "dicom": (_zip_folder(dicom_mr), "application/zip"),
    }
    limits = IOConfig()
    for fmt, (body, ctype) in bodies.items():
        response = _post(server["url"], body, ctype, params={"format": fmt})
        assert response.status_code == 200, (fmt, response.text)
        sct = volume_from_bytes(response.content, limits, "answer")
        assert sct.shape == mr.shape, fmt
        np.testing.assert_allclose(sct.affine, mr.affine, atol=1e-4)
        assert np.abs(sct.array.astype(np.int32) - expected).max() <= 1, fmt
    # the DICOM answer is a CT series of the MR's patient, study and frame of reference
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        first = pydicom.dcmread(archive.open(archive.namelist()[0]))
    source = pydicom.dcmread(next(dicom_mr.iterdir()))
    assert first.Modality == "CT" and "Synthetic CT tiny" in first.SeriesDescription
    for keyword in ("PatientID", "StudyInstanceUID", "FrameOfReferenceUID"):
        assert first[keyword].value == source[keyword].value
    assert first.SeriesInstanceUID != source.SeriesInstanceUID


def test_dicom_answer_from_nifti_carries_the_patient_fields(server, case):
    files = {"mr": ("mr.nii.gz", (case / "mr.nii.gz").read_bytes())}
    fields = {"patient_id": "P-7", "patient_name": "Doe^Jane", "patient_position": "HFS"}
    response = httpx.post(
        f"{server['url']}/v1/synthesize",
        files=files,
        data=fields,
        headers={"Accept": "application/zip"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        first = pydicom.dcmread(archive.open(archive.namelist()[0]))
    assert (first.PatientID, first.PatientName, first.PatientPosition) == ("P-7", "Doe^Jane", "HFS")


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


def test_one_volume_at_a_time_per_replica(server, case):
    """Three volumes sent at once: the replica takes all three, synthesises one at a time (the
    others wait for the slot, X-Queue-Time-Ms), and answers /healthz meanwhile."""
    from concurrent.futures import ThreadPoolExecutor

    image = nib.load(case / "mr.nii.gz")
    big = np.tile(np.asanyarray(image.dataobj), (1, 1, 4))  # 4x the slices: ~1 s of inference
    body = _nifti_bytes(big, image.affine)
    with ThreadPoolExecutor(4) as pool:
        answers = [pool.submit(_post, server["url"], body) for _ in range(3)]
        health = httpx.get(f"{server['url']}/healthz", timeout=30)
        responses = [a.result() for a in answers]
    assert health.status_code == 200
    assert [r.status_code for r in responses] == [200, 200, 200]
    queued = sorted(float(r.headers["x-queue-time-ms"]) for r in responses)
    inference = min(float(r.headers["x-inference-time-ms"]) for r in responses)
    assert queued[-1] >= 0.9 * inference  # the last one waited for at least one whole volume


def test_model_and_health_endpoints(server):
    info = httpx.get(f"{server['url']}/v1/model", timeout=30).json()
    assert info["name"] == "tiny" and info["config"]["image_size"] == 64
    contract = {"orientation": "RAS", "spacing": {"brain": [4.0, 4.0, 10.0]}}  # demo.yaml
    assert info["config"]["geometry"] == contract  # the model's geometry contract
    assert info["epoch"] == 3 and info["validation_metrics"] == {"ssim": 0.5}
    assert info["limits"]["max_decompressed_mb"] == 64 and info["limits"]["max_upload_mb"] == 2
    assert httpx.get(f"{server['url']}/healthz", timeout=30).json() == {"status": "ok"}
    schema = httpx.get(f"{server['url']}/openapi.json", timeout=30).json()
    assert "/v1/synthesize" in schema["paths"]


def test_the_http_front_is_haproxy_on_loopback(server):
    # hmss_ray.cluster.SERVE_ENV: HAProxy answers on the endpoint's port and hands requests to
    # the replica's own HTTP server (8-12 ms a call less than Serve's proxy actor)
    import psutil

    port = httpx.URL(server["url"]).port
    listening = [
        c
        for c in psutil.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    ]
    assert listening and {c.laddr.ip for c in listening} == {"127.0.0.1"}
    assert {psutil.Process(c.pid).name() for c in listening} == {"haproxy"}
    # and nothing else of HAProxy's (its stats page and Prometheus exporter) on another interface
    haproxy = {c.pid for c in listening}
    others = [c.laddr for c in psutil.net_connections("tcp")
              if c.status == psutil.CONN_LISTEN and c.pid in haproxy]  # fmt: skip
    assert len(others) >= 3 and {a.ip for a in others} == {"127.0.0.1"}, others


def _nifti_bomb(shape, dtype=np.uint8) -> bytes:
    """A gzip of a valid NIfTI header and 64 MiB of zero voxels (about 70 kB sent)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    return gzip.compress(header.binaryblock + b"\0" * 4) + gzip.compress(bytes(1 << 20), 9) * 64


@pytest.fixture(scope="module")
def bad_bodies(case: Path, dicom_mr: Path) -> dict:
    """Malformed uploads, made once; a few are bombs of a few hundred kB."""
    good = (case / "mr.nii.gz").read_bytes()
    first_slice = next(iter(sorted(dicom_mr.iterdir())))
    other = dicom_mr.parent / "other"
    if not other.exists():
        write_series(other, [0, 1, 2])  # a second MR volume: which one is meant?
    meta = b"ObjectType = Image\nNDims = 3\nDimSize = 8 8 8\nElementType = MET_UCHAR\n"
    return {
        "truncated": good[: len(good) // 2],
        "4d": _nifti_bytes(np.zeros((16, 16, 16, 2), np.float32)),
        "nan": _nifti_bytes(np.full((16, 16, 16), np.nan, np.float32)),
        "small": _nifti_bytes(np.ones((16, 16, 2), np.float32)),
        "huge": b"\0" * (3 * 2**20),
        "ok": good,
        "gzip_bomb": gzip.compress(bytes(1 << 20), 9) * 1024,  # 1 GiB of zeros, ~1 MB sent
        "decompressed_bomb": _nifti_bomb((512, 512, 256), np.float32),  # 256 MiB of data
        "voxel_bomb": _nifti_bomb((1024, 1024, 1024)),  # the 1024^3 uint8
        "zip_slip": zip_bytes({"../../etc/cron.d/evil.dcm": first_slice.read_bytes()}),
        "zip_bomb": zip_bytes({"slice.dcm": bytes(100 << 20)}),  # declares 100 MiB, ~100 kB sent
        "zip_garbage": zip_bytes({f"{i}.dcm": np.random.bytes(4096) for i in range(5)}),
        "not_a_zip": b"PK\x03\x04" + np.random.bytes(4096),
        "mixed_series": _zip_folder(dicom_mr, other),
        "single_slice": zip_bytes({"only.dcm": first_slice.read_bytes()}),
        "outside_file": meta + b"ElementDataFile = /etc/hostname\n",
    }


@pytest.mark.parametrize(
    ("body", "ctype", "status", "words"),
    [
        (b"this is not an image", "application/octet-stream", 400, "not a recognised volume"),
        (b"", "application/octet-stream", 400, "empty"),
        ("truncated", "application/gzip", 400, "truncated"),
        ("4d", "application/gzip", 422, "3D volume"),
        ("nan", "application/gzip", 422, "non-finite"),
        ("small", "application/gzip", 422, "too small"),
        ("huge", "application/octet-stream", 413, "over the"),
        ("ok", "text/plain", 415, "content type 'text/plain'"),
        ("gzip_bomb", "application/gzip", 400, "no NIfTI-1 or NIfTI-2 header"),
        ("decompressed_bomb", "application/gzip", 413, "io.max_decompressed_mb"),
        ("voxel_bomb", "application/gzip", 413, "1,073,741,824 voxels"),
        ("zip_slip", "application/zip", 400, "unsafe path"),
        ("zip_bomb", "application/zip", 413, "io.max_file_mb"),
        ("zip_garbage", "application/zip", 400, "no DICOM image slice (5 not DICOM)"),
        ("not_a_zip", "application/zip", 400, "not a"),
        ("mixed_series", "application/zip", 422, "holds 2 MR series: choose one"),
        ("single_slice", "application/zip", 422, "too small"),
        ("outside_file", "application/octet-stream", 400, "ElementDataFile = LOCAL"),
        ("chunked", "application/octet-stream", 413, "over the 2097152 byte limit"),
    ],
)
def test_bad_requests_get_a_clear_4xx_fast_and_the_server_stays_up(
    server, bad_bodies, body, ctype, status, words
):
    chunked = iter([bytes(1 << 20)] * 3)  # 3 MiB, no Content-Length: read up to the limit only
    content = chunked if body == "chunked" else bad_bodies.get(body, body)
    response = _post(server["url"], content, ctype)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert response.elapsed.total_seconds() < 10
    after = _post(server["url"], bad_bodies["ok"])
    assert after.status_code == 200, after.text


def test_format_choice_errors(server, case):
    body = (case / "mr.nii.gz").read_bytes()
    wrong = _post(server["url"], body, params={"format": "png"})
    assert wrong.status_code == 400 and "not one of: nifti, mha, nrrd, dicom" in wrong.text
    unacceptable = _post(server["url"], body, headers={"Accept": "image/png"})
    assert unacceptable.status_code == 406 and "Accept" in unacceptable.json()["detail"]
    files = {"mr": ("mr.nii.gz", body)}
    fields = {"patient_id": "P-7"}
    nifti_with_patient = httpx.post(
        f"{server['url']}/v1/synthesize", files=files, data=fields, timeout=120
    )
    assert nifti_with_patient.status_code == 400
    assert "only apply to DICOM output" in nifti_with_patient.json()["detail"]


def test_api_token_is_enforced_when_configured(server, case):
    body = (case / "mr.nii.gz").read_bytes()
    assert _post(server["secure"], body).status_code == 401
    wrong = _post(server["secure"], body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "API token" in wrong.json()["detail"]
    ok = _post(server["secure"], body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    assert httpx.get(f"{server['secure']}/v1/model", timeout=30).status_code == 401


def test_a_region_the_model_does_not_cover_is_a_422(server, case):
    url = f"{server['url']}/v1/synthesize?region=pelvis"
    body = (case / "mr.nii.gz").read_bytes()
    response = httpx.post(
        url, content=body, headers={"Content-Type": "application/gzip"}, timeout=120
    )
    assert response.status_code == 422
    assert "region 'pelvis' is not one of this model's" in response.json()["detail"]


def test_client_cli_sends_the_region(server, case, tmp_path, capsys):
    from hmss_ray import client

    argv = [str(case / "mr.nii.gz"), "-o", str(tmp_path / "sct.nii.gz"), "--url", server["url"]]
    assert client.main([*argv, "--region", "pelvis"]) == 1  # the server's refusal, printed
    assert "region 'pelvis' is not one of this model's" in capsys.readouterr().err
    assert client.main([*argv, "--region", "brain"]) == 0


def test_client_cli_dicom_in_and_out(server, case, dicom_mr, tmp_path):
    from hmss_ray import client

    out = tmp_path / "sct.nii.gz"
    assert client.main([str(case / "mr.nii.gz"), "-o", str(out), "--url", server["url"]]) == 0
    assert nib.load(out).shape == nib.load(case / "mr.nii.gz").shape
    series = tmp_path / "sct_series"
    assert client.main([str(dicom_mr), "-o", str(series), "--url", server["url"]]) == 0
    back = read_volume(series)
    assert back.shape == read_volume(dicom_mr).shape
    assert len(list(series.glob("CT_*.dcm"))) == back.shape[2]
    assert client.main([str(dicom_mr), "-o", str(series), "--url", server["url"]]) == 2  # not empty


def test_metrics_reach_rays_prometheus_endpoint(server, case):
    """Requests by status, latency, voxels and inference time, as Prometheus scrapes them."""
    import time

    import ray

    _post(server["url"], (case / "mr.nii.gz").read_bytes())
    port = next(n["MetricsExportPort"] for n in ray.nodes() if n["Alive"])
    wanted = (
        "ray_hmss_requests_total{",
        'status="200"',
        'status="413"',
        "ray_hmss_request_seconds_bucket",
        "ray_hmss_request_voxels_bucket",
        "ray_hmss_inference_seconds_bucket",
    )
    deadline, text = time.monotonic() + 60, ""
    while time.monotonic() < deadline:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        if all(word in text for word in wanted):
            break
        time.sleep(2)
    missing = [word for word in wanted if word not in text]
    assert not missing, f"not exported on port {port}: {missing}"


def test_serve_runs_the_entrys_tta_and_ensemble(ray_session, server, tmp_path, case, request):
    """An entry with a two-member ensemble and flip TTA: /v1/model says so, and the served sCT
    is the offline Synthesizer's (the members' mean over both flips, in HU)."""
    import torch
    from ray import serve

    from hmss_ray.inference import ensemble
    from hmss_ray.serving.app import deploy

    cfg = tiny_config(
        "inference.tta=flip_lr", "inference.ensemble=run", "inference.ensemble_size=2",
    )  # fmt: skip
    for epoch, score in enumerate((0.2, 0.1)):
        torch.manual_seed(epoch)
        folder = tmp_path / "run" / f"epoch_{epoch:04d}"
        ckpt.save_checkpoint(folder, generator=build_generator(cfg), cfg=cfg, epoch=epoch,
                             metrics={"score": score})  # fmt: skip
    winner = str(tmp_path / "run" / "epoch_0001")
    entry = ckpt.write_registry_entry(
        winner, str(tmp_path / "registry"), "ens", metrics={}, winner={"trial_id": "t0"},
        extra=lambda d: ensemble.write_members(str(d), cfg, [(winner, 0.1, "t0")]),
    )  # fmt: skip
    # no CPU reserved (the deployment's choice): the fixture's two applications hold the two
    url = deploy(entry, port=int(server["url"].rsplit(":", 1)[1]), name="ens", route_prefix="/ens",
                 serve_config={"num_cpus": 0})  # fmt: skip
    request.addfinalizer(lambda: serve.delete("ens"))
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
