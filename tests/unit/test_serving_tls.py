"""TLS on the endpoint's HAProxy front, the client's refusal of plain HTTP, the audit line.

The TLS test runs the real HAProxy (ray[serve]'s binary) through the guard on the config Ray
2.60's own code renders, with a self-signed certificate made here, and speaks TLS to it.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from hmss_ray import haproxy
from hmss_ray.cluster import free_port
from hmss_ray.config import UserError
from hmss_ray.serving import audit, tls
from tests.tls_helpers import self_signed


def ray_head_config(folder: Path, port: int) -> Path:
    """Ray 2.60's HAProxy config of a head with no application yet (its /-/healthz answers)."""
    from ray.serve._private.haproxy import HAProxyApi, HAProxyConfig
    from ray.serve.config import HTTPOptions

    cfg = HAProxyConfig(
        http_options=HTTPOptions(host="127.0.0.1", port=port),
        is_head=True,
        socket_path=str(folder / "admin.sock"),
        server_state_base=str(folder),
        server_state_file=str(folder / "server-state"),
        metrics_socket_path=str(folder / "metrics.sock"),
        stats_port=free_port(),
        metrics_port=free_port(),
        enable_hap_optimization=False,
    )
    path = folder / "haproxy.cfg"
    HAProxyApi(cfg, {}, config_file_path=str(path))._generate_config_file_internal()
    return path


def test_the_endpoint_speaks_only_tls_with_the_configured_certificate(tmp_path, monkeypatch):
    real = haproxy.real_binary()
    if real is None:
        pytest.skip("no HAProxy binary (ray[serve] ships one on Linux)")
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "1")
    monkeypatch.delenv(haproxy.TLS_PEM_ENV, raising=False)
    assert tls.configure(cert, key) == {}  # HAProxy front: the PEM goes through the environment
    pem = Path(haproxy.os.environ[haproxy.TLS_PEM_ENV])
    assert pem.stat().st_mode & 0o777 == 0o600
    port = free_port()
    config = ray_head_config(tmp_path, port)
    wrapper = haproxy.install(tmp_path / "bin", real)
    proc = subprocess.Popen([wrapper, "-db", "-f", str(config)], stderr=subprocess.PIPE)
    try:
        url = f"https://127.0.0.1:{port}/-/healthz"
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = httpx.get(url, verify=str(cert), timeout=2)
                break
            except httpx.ConnectError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "HAProxy did not answer over TLS"
                time.sleep(0.2)
        # HAProxy itself answered over TLS (a head without proxies yet says 503 on /-/healthz)
        assert answer.status_code in (200, 503) and answer.http_version == "HTTP/1.1"
        with pytest.raises(httpx.HTTPError):  # the same port in clear: no answer
            httpx.get(f"http://127.0.0.1:{port}/-/healthz", timeout=5)
        with pytest.raises(httpx.ConnectError):  # and a client that checks certificates
            httpx.get(url, timeout=5)  # refuses one its CAs did not sign
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_guard_refuses_to_start_without_a_readable_certificate(tmp_path, monkeypatch):
    real = haproxy.real_binary()
    if real is None:
        pytest.skip("no HAProxy binary")
    monkeypatch.setenv(haproxy.TLS_PEM_ENV, str(tmp_path / "missing.pem"))
    config = ray_head_config(tmp_path, free_port())
    done = subprocess.run(
        [haproxy.install(tmp_path / "bin", real), "-c", "-f", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == haproxy.EX_CONFIG and "cannot be read" in done.stderr


def test_tls_configuration_errors_are_clear(tmp_path, monkeypatch):
    cert, key = self_signed(tmp_path)
    with pytest.raises(UserError, match="both"):
        tls.configure(cert, None)
    with pytest.raises(UserError, match="not a PEM key"):
        tls.configure(cert, cert)
    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "0")  # Serve's Python proxy: its own options
    assert tls.configure(cert, key) == {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    assert tls.configure(None, None) == {}


@pytest.mark.parametrize(
    ("url", "insecure", "refused"),
    [
        ("http://10.0.0.5:8000", False, True),
        ("http://sct.example.org", False, True),
        ("http://10.0.0.5:8000", True, False),
        ("https://sct.example.org", False, False),
        ("http://127.0.0.1:8000", False, False),
        ("http://localhost:8000", False, False),
    ],
)
def test_client_refuses_plain_http_off_this_machine(url, insecure, refused, capsys):
    from hmss_ray import client

    code = client.main(["mr.nii.gz", "-o", "sct.nii.gz", "--url", url]
                       + (["--insecure"] if insecure else []))  # fmt: skip
    err = capsys.readouterr().err
    assert ("refusing plain http://" in err) is refused, err
    assert (code == 2) if refused else ("refusing" not in err)


class _Request:
    def __init__(self, authorization: str | None):
        self.headers = {"authorization": authorization} if authorization else {}
        self.client = type("Client", (), {"host": "10.0.3.7"})()


def test_one_audit_line_per_request_with_hashes_not_identities(tmp_path, monkeypatch):
    log = tmp_path / "audit.jsonl"
    monkeypatch.setenv(audit.AUDIT_LOG_ENV, str(log))
    monkeypatch.setenv(audit.AUDIT_KEY_ENV, "site-key")
    uid, token = "1.2.826.0.1.3680043.8.498.12345", "s3cret-token-value"
    audit.record(_Request(f"Bearer {token}"), 200, "brain", "20261206-1", uid)
    audit.record(_Request(None), 401, "brain", "20261206-1", None)
    text = log.read_text()
    first, second = (json.loads(x) for x in text.splitlines())
    assert set(first) == {"time", "event", "token_id", "model", "model_version", "study",
                          "status", "client"}  # fmt: skip
    assert first["status"] == 200 and first["model_version"] == "20261206-1"
    assert first["study"] == audit.digest(uid) and first["token_id"] == audit.digest(token)
    assert uid not in text and token not in text  # no identifier in clear
    assert second["token_id"] is None and second["study"] is None and second["status"] == 401
    assert log.stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv(audit.AUDIT_KEY_ENV, "another-site")
    assert audit.digest(uid) != first["study"]  # keyed: a guess cannot be checked without it
