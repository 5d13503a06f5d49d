"""The endpoint under attack (issue 25): real HTTP against one real Serve deployment.

Every hostile case of :mod:`bench.hostile` (uploads naming server files, allocation bombs under
1 MB, malformed volumes, bad tokens, bad patient fields) must be a 4xx within 5 s that carries
no server file content and no library message, and must raise the replica's peak RSS by less
than 100 MB; a valid request is answered after each class and beside slow uploads.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import threading
import time
import zipfile
from pathlib import Path

import httpx
import pydicom
import pytest

from bench import hostile
from tests.dicom_helpers import write_series, zip_bytes

pytestmark = pytest.mark.integration
MAX_ANSWER_S = 5.0
MAX_GROWTH_MB = 100.0
UID_ROOT = "1.2.826.0.1.3680043.10.25."
AUTH = {"Authorization": f"Bearer {hostile.TOKEN}"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def valid(workdir) -> bytes:
    return hostile.valid_body(workdir)


@pytest.fixture(scope="module")
def cases(workdir, valid) -> list[hostile.Case]:
    return hostile.cases(hostile.secret_file(workdir), valid)


@pytest.fixture(scope="module")
def endpoint(ray_session, workdir):
    """One deployment for the module: a token, a Host allow-list, small limits, a UID root."""

    from hmss_ray.cluster import free_port
    from hmss_ray.serving.app import deploy, shutdown

    entry = hostile.tiny_entry(workdir)
    url = deploy(
        entry,
        port=free_port(),
        name="hostile",
        serve_config=hostile.SERVE,
        io={**hostile.IO, "uid_root": UID_ROOT},
        env={"HMSS_API_TOKEN": f"old-token-abcdefgh, {hostile.TOKEN}"},  # two: rotation
    )
    yield {"url": url, "pid": hostile.replica_pid("hostile")}
    shutdown()  # the next module's deploy() starts Serve on its own port


def _valid_ok(url: str, body: bytes) -> float:
    return hostile.valid_time(url, body, hostile.TOKEN)


def _run_kind(endpoint, cases, valid, kind: str) -> None:
    url, pid = endpoint["url"], endpoint["pid"]
    chosen = [c for c in cases if c.kind == kind]
    assert len(chosen) >= 2
    failures = []
    for case in chosen:
        base = hostile.reset_peak(pid)
        status, seconds, text = hostile.send(url, case, hostile.TOKEN)
        growth = hostile.peak_growth_mb(pid, base)
        leaked = hostile.leaks(text)
        if not 400 <= status < 500 or seconds > MAX_ANSWER_S or leaked or growth > MAX_GROWTH_MB:
            failures.append(f"{case.name}: HTTP {status} in {seconds:.1f} s, +{growth:.0f} MB, "
                            f"leaks {leaked}: {text[:200]}")  # fmt: skip
    assert not failures, "\n".join(failures)
    assert _valid_ok(url, valid) < 60


@pytest.mark.parametrize("kind", ["path", "alloc", "malformed", "auth", "identity"])
def test_hostile_requests_get_a_fast_4xx_that_leaks_nothing(endpoint, cases, valid, kind):
    _run_kind(endpoint, cases, valid, kind)


def test_no_path_named_in_an_upload_is_read(endpoint, cases):
    """The answer to an upload naming a server file says nothing of that file, not even
    whether it exists: the same answer for a path that does not exist."""
    case = next(c for c in cases if c.name == "mha_element_data_file")
    missing = hostile.Case("missing", "path", case.body.replace(b"secret.txt", b"nothere.txt"),
                           case.headers)  # fmt: skip
    answers = [hostile.send(endpoint["url"], c, hostile.TOKEN) for c in (case, missing)]
    assert answers[0][0] == answers[1][0] and 400 <= answers[0][0] < 500
    assert answers[0][2] == answers[1][2]


def _raw_request(url: str, head_extra: str, body: bytes, wait: float) -> tuple[int, float]:
    host, port = url.split("//")[1].split(":")
    started = time.perf_counter()
    with socket.create_connection((host, int(port.split("/")[0])), timeout=30) as sock:
        sock.sendall(f"POST /v1/synthesize HTTP/1.1\r\nHost: {host}\r\n{head_extra}\r\n".encode())
        if body:
            sock.sendall(body)
        time.sleep(wait)
        answer = sock.recv(256)
    return int(answer.split()[1]), time.perf_counter() - started


@pytest.mark.parametrize(
    ("name", "head", "body"),
    [
        ("headers_then_nothing", "Content-Length: 1900000\r\n", b""),
        ("one_byte_then_silence", "Content-Length: 1900000\r\n", b"\0"),
        (
            "chunked_then_silence",
            "Transfer-Encoding: chunked\r\n",
            b"10\r\n" + b"\0" * 16 + b"\r\n",
        ),
    ],
)
def test_a_stalled_upload_gets_408_and_holds_no_buffer(endpoint, name, head, body):
    auth = f"Authorization: Bearer {hostile.TOKEN}\r\nContent-Type: application/octet-stream\r\n"
    base = hostile.reset_peak(endpoint["pid"])
    status, seconds = _raw_request(endpoint["url"], auth + head, body, 0.0)
    assert status == 408, name
    assert seconds < 1.0 + 1.2 + 3  # grace + one 64 KiB chunk at 64 kB/s + slack
    assert hostile.peak_growth_mb(endpoint["pid"], base) < 10  # the declared 1.9 MB: never held


def test_a_declared_length_over_the_limit_is_refused_before_the_body(endpoint):
    auth = f"Authorization: Bearer {hostile.TOKEN}\r\nContent-Type: application/gzip\r\n"
    status, seconds = _raw_request(endpoint["url"], auth + "Content-Length: 600000000\r\n", b"", 0)
    assert status == 413 and seconds < 2


def test_a_valid_request_beside_8_slow_uploads_is_answered_as_fast_as_alone(endpoint, valid):
    url = endpoint["url"]
    alone = min(_valid_ok(url, valid) for _ in range(2))
    beside = hostile.beside_slow_uploads(url, valid, hostile.TOKEN, uploads=8)
    assert beside <= 1.5 * alone + 0.5, (alone, beside)
    assert _valid_ok(url, valid) < 60


def test_a_burst_over_capacity_gets_503_with_retry_after_not_a_wait(endpoint, valid):
    """max_waiting=2: of 10 valid requests sent at once, those that find the one-volume slot
    busy and two others waiting get a 503 with Retry-After at once; the rest are answered."""
    from concurrent.futures import ThreadPoolExecutor

    headers = {**AUTH, "Content-Type": "application/gzip"}

    def post(_):
        started = time.perf_counter()
        answer = httpx.post(f"{endpoint['url']}/v1/synthesize", content=valid, headers=headers,
                            timeout=60)  # fmt: skip
        return answer, time.perf_counter() - started

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(post, range(10)))
    statuses = sorted(a.status_code for a, _ in answers)
    assert set(statuses) <= {200, 503} and 503 in statuses and 200 in statuses, statuses
    for answer, seconds in answers:
        if answer.status_code == 503:
            assert int(answer.headers["retry-after"]) > 0 and seconds < MAX_ANSWER_S
            assert not hostile.leaks(answer.text)


def test_every_rotated_token_works_and_docs_need_one(endpoint):
    url = endpoint["url"]
    for token in ("old-token-abcdefgh", hostile.TOKEN):
        answer = httpx.get(f"{url}/v1/model", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
        assert answer.json()["limits"]["max_upload_mb"] == 2  # the deployment's, not the model's
    assert httpx.get(f"{url}/healthz").status_code == 200  # probes need no token
    spec = httpx.get(f"{url}/openapi.json", headers=AUTH).json()
    post = spec["paths"]["/v1/synthesize"]["post"]
    assert {"multipart/form-data", "application/zip", "application/gzip"} <= set(
        post["requestBody"]["content"]
    )
    assert {"format", "region"} <= {p["name"] for p in post["parameters"]}
    assert {"200", "400", "401", "408", "413", "415", "422", "500", "503"} <= set(post["responses"])
    assert "application/zip" in post["responses"]["200"]["content"]
    assert httpx.get(f"{url}/docs", headers=AUTH).status_code == 200


def _dicom_zip(folder: Path, patient_id) -> bytes:
    write_series(folder, [float(k) for k in range(8)])
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.PatientID = patient_id
        ds.save_as(path)
    return zip_bytes({f"mr/{p.name}": p.read_bytes() for p in sorted(folder.iterdir())})


def test_dicom_answer_keeps_a_multi_valued_patient_id_and_uses_the_uid_root(endpoint, workdir):
    body = _dicom_zip(workdir / "mv", ["A1", "B2"])
    headers = {**AUTH, "Content-Type": "application/zip"}
    url = f"{endpoint['url']}/v1/synthesize?format=dicom"
    answer = httpx.post(url, content=body, headers=headers, timeout=120)
    assert answer.status_code == 200, answer.text
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        ds = pydicom.dcmread(io.BytesIO(archive.read(archive.namelist()[0])))
    assert list(ds.PatientID) == ["A1", "B2"]
    assert ds.SeriesInstanceUID.startswith(UID_ROOT) and ds.SOPInstanceUID.startswith(UID_ROOT)


def _scratch_folders(pid: int) -> list[Path]:
    import tempfile

    return list((Path(tempfile.gettempdir()) / f"hmss-serve-{os.getuid()}").glob(f"r{pid}-*"))


def test_a_replica_killed_mid_request_leaves_no_temp_file(endpoint, valid):
    """SIGKILL in the middle of a request (its body half sent, a temporary file in the
    replica's scratch folder): the client gets a clean error, the next request is answered
    (Serve restarts the replica), and the dead replica's scratch folder is gone."""
    url, pid = endpoint["url"], endpoint["pid"]
    (folder,) = _scratch_folders(pid)
    assert folder.stat().st_mode & 0o777 == 0o700
    (folder / "upload.mha").write_bytes(b"a temporary file of the killed request")
    stop, answer = threading.Event(), {}

    def call() -> None:  # the valid body at 20 kB/s: still uploading when the kill comes
        answer["status"] = hostile.slow_upload(url, hostile.TOKEN, len(valid), 2000, 0.1, stop)

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    thread.join(70)
    assert answer["status"] is None or answer["status"] >= 500  # a closed connection or a 5xx
    deadline = time.monotonic() + 120
    while True:
        try:
            if _valid_ok(url, valid) < 60:
                break
        except (RuntimeError, httpx.HTTPError):
            if time.monotonic() > deadline:
                raise
            time.sleep(2)
    assert not _scratch_folders(pid) and not folder.exists()  # swept by the new replica
    endpoint["pid"] = hostile.replica_pid("hostile")


def test_a_request_past_its_deadline_gets_503_with_retry_after(endpoint, workdir, valid):
    """serve.request_timeout_s covers upload, queue and work: a body still arriving (within the
    upload grace, so no 408) when the deadline passes is answered 503 with Retry-After at the
    deadline, and the endpoint answers the next request."""
    from ray import serve

    from hmss_ray.serving.app import deploy

    port = int(endpoint["url"].rsplit(":", 1)[1])
    serve_config = {**hostile.SERVE, "request_timeout_s": 0.3, "num_cpus": 0}
    deploy(hostile.tiny_entry(workdir / "deadline"), port=port, name="deadline",
                 route_prefix="/deadline", serve_config=serve_config, io=hostile.IO,
                 env={"HMSS_API_TOKEN": hostile.TOKEN})  # fmt: skip
    try:
        chunks = [valid[i : i + 4096] for i in range(0, len(valid), 4096)]
        head = (f"POST /deadline/v1/synthesize HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {hostile.TOKEN}\r\nContent-Type: application/gzip\r\n"
                f"Content-Length: {len(valid)}\r\n\r\n")  # fmt: skip
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(head.encode())
            for chunk in chunks:  # the whole body over ~0.9 s: inside the 1 s grace
                sock.sendall(chunk)
                time.sleep(0.9 / len(chunks))
            answer = sock.recv(4096).decode("latin-1")
        seconds = time.perf_counter() - started
        status, headers = int(answer.split()[1]), answer.lower()
        assert status == 503, answer[:300]
        assert "retry-after:" in headers and "request_timeout_s" in answer
        assert seconds < MAX_ANSWER_S and not hostile.leaks(answer)
        assert _valid_ok(endpoint["url"], valid) < 60
    finally:
        serve.delete("deadline")
