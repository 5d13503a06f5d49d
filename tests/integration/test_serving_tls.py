"""The endpoint over TLS with a configured certificate, and its audit trail, for real.

``python -m hmss_ray.serving --tls-cert --tls-key`` as a user starts it (its own local Ray, Serve's
HAProxy front through the guard), a self-signed certificate made by the test, the real client
CLI trusting it through ``SSL_CERT_FILE``; then the audit file holds one line per request with
the hashed token and study and no identifier in clear. ~60-90 s on 2 cores (one Ray start).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
import pytest
import ray

from hmss_ray.cluster import free_port
from hmss_ray.models import checkpoint as ckpt
from hmss_ray.models.factory import build_generator
from hmss_ray.serving import audit
from tests.dicom_helpers import write_series
from tests.tls_helpers import self_signed

from .conftest import ROOT, tiny_config

pytestmark = [pytest.mark.integration, pytest.mark.own_ray]
TOKEN = "tls-test-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def _no_shared_ray():
    assert not ray.is_initialized(), "own_ray tests run in a pytest run without ray_session"


@pytest.fixture(scope="module")
def entry(tmp_path_factory) -> str:
    import torch

    torch.manual_seed(0)
    cfg = tiny_config()
    tmp = tmp_path_factory.mktemp("entry")
    directory = ckpt.save_checkpoint(tmp / "ckpt", generator=build_generator(cfg), cfg=cfg, epoch=1)
    return ckpt.write_registry_entry(
        directory, str(tmp / "registry"), "tiny", metrics={"ssim": 0.5}, winner={"trial_id": "t"}
    )


def _start(entry: str, port: int, cert: Path, key: Path, env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "hmss_ray.serving", "--model", entry, "--port", str(port),
               "--tls-cert", str(cert), "--tls-key", str(key)]  # fmt: skip
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip


def _wait_serving(proc: subprocess.Popen, timeout: float = 240) -> str:
    deadline, said = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        said.append(line)
        if "[hmss] serving" in line:
            return line
        if not line and proc.poll() is not None:
            break
    raise AssertionError("the endpoint did not start:\n" + "".join(said)[-3000:])


def _client(mr: Path, out: Path, url: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hmss_ray.client", str(mr), "-o", str(out), "--url", url],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_endpoint_over_tls_with_an_audit_line_per_request(entry, phantom_dir, tmp_path):
    import psutil  # Ray's vendored copy, importable once ray is

    cert, key = self_signed(tmp_path)
    log = tmp_path / "audit.jsonl"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HMSS_", "AWS_"))}
    server_env = {**base, "HMSS_API_TOKEN": TOKEN, "HMSS_AUDIT_LOG": str(log),
                  "HMSS_AUDIT_KEY": "test-site", "HMSS_RAY_NUM_CPUS": "4"}  # fmt: skip
    port = free_port()
    proc = _start(entry, port, cert, key, server_env)
    try:
        assert f"at https://127.0.0.1:{port}" in _wait_serving(proc)
        url = f"https://127.0.0.1:{port}"
        client_env = {**base, "SSL_CERT_FILE": str(cert), "HMSS_API_TOKEN": TOKEN}
        case = sorted(phantom_dir.glob("Task1/brain/*/mr.nii.gz"))[0]
        done = _client(case, tmp_path / "sct.nii.gz", url, client_env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert nib.load(tmp_path / "sct.nii.gz").shape == nib.load(case).shape
        # a DICOM MR: its study is audited as a hash
        mr = np.asanyarray(nib.load(case).dataobj)
        pixels = np.clip(np.rint(mr * 4), 0, 32767).astype(np.int16)
        series = write_series(tmp_path / "dicom", list(range(mr.shape[2])), pixels=pixels,
                              pixel_spacing=1.0)  # fmt: skip
        done = _client(tmp_path / "dicom", tmp_path / "sct_dicom", url, client_env)
        assert done.returncode == 0, done.stdout + done.stderr
        # no token: refused, and audited too
        refused = httpx.post(f"{url}/v1/synthesize", content=case.read_bytes(), verify=str(cert))
        assert refused.status_code == 401
        # the same port in clear gets nothing; HAProxy's other listeners stay on loopback
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        ours = psutil.Process(proc.pid).children(recursive=True)
        haproxy_pids = {p.pid for p in ours if p.name() == "haproxy"}
        listening = [c.laddr for c in psutil.net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN and c.pid in haproxy_pids]  # fmt: skip
        assert any(a.port == port for a in listening)
        assert {a.ip for a in listening} == {"127.0.0.1"}, listening
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["status"] for x in lines] == [200, 200, 401], lines
    uid = series[0].StudyInstanceUID
    os.environ[audit.AUDIT_KEY_ENV] = "test-site"
    try:
        assert lines[0]["study"] is None and lines[1]["study"] == audit.digest(str(uid))
        assert lines[0]["token_id"] == lines[1]["token_id"] == audit.digest(TOKEN)
    finally:
        del os.environ[audit.AUDIT_KEY_ENV]
    assert lines[2]["token_id"] is None
    assert all(x["model_version"] for x in lines)
    assert str(uid) not in log.read_text() and TOKEN not in log.read_text()
