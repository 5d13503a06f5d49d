# ruff: noqa: E501  (the table of cases reads best one case a line)
"""Hostile inputs against a real Serve endpoint: status, answer time, leaks, replica memory.

    python -m bench.hostile --json bench/results/hostile.json    (under the Ray lock)

Each case is a request a hostile or broken client may send (issue 25): uploads that name server
files, allocation bombs under 1 MB, malformed volumes, bad tokens. For each: the status (a 4xx
is the goal), the answer time, whether the answer carries a server file's content or a
library's message (a leak), and how far the replica's peak RSS rose. Then a valid request
alone, and beside 8 slow uploads (legal ones, just above serve.min_upload_kbps).
:mod:`tests.security` uses the same cases.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import socket
import struct
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SECRET = "HMSS-HOSTILE-SECRET-7f3a9c"  # written into a server-side file the cases point at
LIBRARY_WORDS = ("Traceback", "itk::", "ITK", "pydicom", "nibabel", "zlib", "Error -", ".py\"",
                 "Exception", "errno", "Errno", "root:x")  # fmt: skip


@dataclass
class Case:
    """One hostile request: ``kind`` is its class (path, alloc, malformed, auth, identity)."""

    name: str
    kind: str
    body: bytes = b""
    headers: dict[str, Any] = field(default_factory=dict)
    path: str = "/v1/synthesize"
    method: str = "POST"
    auth: bool = True  # send the deployment's token


def secret_file(folder: Path) -> Path:
    """A server-side file whose content must never come back in an answer."""
    path = folder / "secret.txt"
    path.write_text("\n".join([SECRET] * 600) + "\n")
    return path


def _nrrd(data_line: str, padding: int = 3000) -> bytes:
    comments = "".join(
        f"# comment line {i:05d} ..........................\n" for i in range(padding)
    )
    head = "NRRD0004\ntype: short\ndimension: 3\nsizes: 8 8 8\nencoding: ascii\n"
    return (head + comments + data_line + "\n\n").encode()


def _nifti(shape=(8, 8, 8), vox_offset: float = 352.0, pixdim=(1.0, 1.0, 1.0), affine=None,
           data: bytes | None = None, nan_sform: bool = False) -> bytes:  # fmt: skip
    import nibabel as nib

    if affine is None:  # the voxel size in the affine too (readers use the sform)
        affine = np.diag([*(p if p > 0 else 1.0 for p in pixdim), 1.0])
    img = nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), affine)
    hdr = img.header
    hdr.set_data_shape(shape)
    hdr["pixdim"][1:4] = pixdim
    raw = bytearray(hdr.binaryblock)
    raw[108:112] = struct.pack("<f", vox_offset)
    if min(pixdim) <= 0:  # no sform, no qform: the reader has only the zero pixdim
        raw[252:256] = struct.pack("<hh", 0, 0)
    if nan_sform:  # a NaN in the voxel-to-world matrix: sform only
        raw[252:256] = struct.pack("<hh", 0, 1)
        raw[280:284] = struct.pack("<f", float("nan"))
    return bytes(raw) + b"\0" * 4 + (data if data is not None else b"\0" * 1024)


def _zip(entries: dict[str, bytes], bad_crc: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, blob in entries.items():
            archive.writestr(name, blob)
    data = bytearray(buffer.getvalue())
    if bad_crc:  # the local header's CRC of the first entry
        data[14:18] = b"\xde\xad\xbe\xef"
        central = data.find(b"PK\x01\x02")
        data[central + 16 : central + 20] = b"\xde\xad\xbe\xef"
    return bytes(data)


def _dicom(mutate=None, deflate: bool = False) -> bytes:
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    if mutate:
        mutate(ds)
    if deflate:
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _big_private(ds) -> None:
    ds.add_new(0x00091010, "OB", b"\0" * (96 * 2**20))  # inflates 96 MiB from ~100 KB


def _many_elements(ds) -> None:
    for k in range(60000):
        ds.add_new((0x0011 + 2 * (k // 0xEF00)) << 16 | (0x1000 + k % 0xEF00), "UN", b"")


def _frames_abc() -> bytes:
    """A DICOM whose NumberOfFrames is the text 'abc' (pydicom will not write it: patched)."""
    data = _dicom(lambda ds: setattr(ds, "NumberOfFrames", "9"))
    element = b"\x28\x00\x08\x00IS\x02\x009 "
    assert element in data
    return data.replace(element, b"\x28\x00\x08\x00IS\x04\x00abc ")


def _multipart(parts: dict[str, tuple[str | None, bytes]], boundary: str = "hmssboundary") -> bytes:
    out = b""
    for name, (filename, blob) in parts.items():
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += (
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + blob + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode()


MULTIPART = {"Content-Type": "multipart/form-data; boundary=hmssboundary"}
OCTET = {"Content-Type": "application/octet-stream"}


def cases(secret: Path, valid: bytes) -> list[Case]:
    """Every hostile case (each under 1 MB), by class."""
    mha = (f"ObjectType = Image\nNDims = 3\nDimSize = 8 8 8\nElementType = MET_UCHAR\n"
           f"ElementDataFile = {secret}\n").encode()  # fmt: skip
    return [
        Case("nrrd_data_file_after_3000_comment_lines", "path", _nrrd(f"data file: {secret}"), OCTET),
        Case("nrrd_datafile_list", "path", _nrrd(f"datafile: LIST\n{secret}", 10), OCTET),
        Case("nrrd_DATA_FILE_upper", "path", _nrrd(f"DATA FILE: {secret}", 100), OCTET),
        Case("mha_element_data_file", "path", mha, OCTET),
        Case("nrrd_in_multipart", "path", _multipart({"mr": ("mr.nrrd", _nrrd(f"data file: {secret}"))}), MULTIPART),
        Case("nifti_gz_vox_offset_400mib", "alloc", gzip.compress(_nifti(vox_offset=400 * 2**20)), OCTET),
        Case("nifti_dims_32768_cubed", "alloc", gzip.compress(_nifti(shape=(32767, 32767, 32767))), OCTET),
        Case("gzip_bomb_200mib", "alloc", gzip.compress(b"\0" * (200 * 2**20), 9), OCTET),
        Case("zip_bomb_200mib", "alloc", _zip({"a/IM1.dcm": b"\0" * (200 * 2**20)}), {"Content-Type": "application/zip"}),
        Case("voxels_1000mm_model_grid_bomb", "alloc", gzip.compress(_nifti(shape=(32, 32, 32), pixdim=(1000.0, 1000.0, 1000.0), data=os.urandom(65536))), OCTET),
        Case("dicom_deflated_96mib", "alloc", _dicom(_big_private, deflate=True), {"Content-Type": "application/dicom"}),
        Case("dicom_60k_empty_elements", "alloc", _dicom(_many_elements), {"Content-Type": "application/dicom"}),
        Case("random_bytes", "malformed", os.urandom(4096), OCTET),
        Case("truncated_gzip", "malformed", valid[: len(valid) // 2], OCTET),
        Case("empty_body", "malformed", b"", OCTET),
        Case("zip_bad_crc", "malformed", _zip({"a/IM1.dcm": _dicom()}, bad_crc=True), {"Content-Type": "application/zip"}),
        Case("nifti_nan_affine", "malformed", gzip.compress(_nifti(nan_sform=True)), OCTET),
        Case("nifti_zero_pixdim", "malformed", gzip.compress(_nifti(pixdim=(0.0, 0.0, 0.0))), OCTET),
        Case("dicom_number_of_frames_abc", "malformed", _frames_abc(), {"Content-Type": "application/dicom"}),
        Case("multipart_without_boundary_end", "malformed", b"--hmssboundary\r\nContent-Disposition: form-data; name=\"mr\"", MULTIPART),
        Case("unknown_format", "malformed", valid, {**OCTET, "X-Query": "format=jpeg"}),
        Case("wrong_content_type", "malformed", valid, {"Content-Type": "text/plain"}),
        Case("no_token", "auth", valid, OCTET, auth=False),
        Case("wrong_token", "auth", valid, {**OCTET, "Authorization": "Bearer wrong-token-123456"}, auth=False),
        Case("non_ascii_authorization", "auth", valid, {**OCTET, "Authorization": "Bearer t\u00f6ken\u00e9".encode()}, auth=False),
        Case("basic_scheme", "auth", valid, {**OCTET, "Authorization": "Basic dXNlcjpwYXNz"}, auth=False),
        Case("openapi_without_token", "auth", path="/openapi.json", method="GET", auth=False),
        Case("docs_without_token", "auth", path="/docs", method="GET", auth=False),
        Case("model_without_token", "auth", path="/v1/model", method="GET", auth=False),
        Case("host_not_allowed", "auth", valid, {**OCTET, "Host": "evil.example"}),
        Case("patient_id_backslash", "identity", _multipart({"mr": ("mr.nii.gz", valid), "patient_id": (None, b"A1\\B2")}), {**MULTIPART, "X-Query": "format=dicom"}),
        Case("patient_name_control_char", "identity", _multipart({"mr": ("mr.nii.gz", valid), "patient_name": (None, b"Doe\x07^Jane")}), {**MULTIPART, "X-Query": "format=dicom"}),
    ]  # fmt: skip


def leaks(text: str) -> list[str]:
    """What an answer carries that it must not: the secret file's content, library words."""
    return [word for word in (SECRET, *LIBRARY_WORDS) if word in text]


def send(url: str, case: Case, token: str | None, timeout: float = 60.0) -> tuple[int, float, str]:
    """``(status, seconds, body text)`` of one case."""
    import httpx

    headers = dict(case.headers)
    query = headers.pop("X-Query", "")
    if case.auth and token:
        headers["Authorization"] = f"Bearer {token}"
    started = time.perf_counter()
    response = httpx.request(case.method, f"{url}{case.path}" + (f"?{query}" if query else ""),
                             content=case.body or None, headers=headers, timeout=timeout)  # fmt: skip
    return response.status_code, time.perf_counter() - started, response.text


# --- the replica's memory -------------------------------------------------------------------


def replica_pid(app: str) -> int:
    """The pid of the (first) replica of ``app``'s SCTSynthesizer."""
    from ray.util.state import list_actors

    actors = list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
    name = f"ServeReplica:{app}:SCTSynthesizer"
    return next(int(a.pid) for a in actors if a.class_name == name)


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def reset_peak(pid: int) -> int:
    """Reset the replica's peak RSS (VmHWM) to its RSS now; returns that RSS in kB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _status_kb(pid, "VmRSS")


def peak_growth_mb(pid: int, base_kb: int) -> float:
    return max(0, _status_kb(pid, "VmHWM") - base_kb) / 1024


# --- slow uploads ---------------------------------------------------------------------------


def slow_upload(url: str, token: str | None, size: int, chunk: int, interval: float,
                stop: threading.Event) -> int | None:  # fmt: skip
    """Send a body of ``size`` bytes, ``chunk`` every ``interval`` s over a raw socket, until
    done or ``stop``; returns the status the server answered (None: none)."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    prefix = "/" + url.split("//")[1].split("/", 1)[1] if url.count("/") > 2 else ""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (f"POST {prefix.rstrip('/')}/v1/synthesize HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}"
            f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n")  # fmt: skip
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(head.encode())
        sent = 0
        try:
            while sent < size and not stop.is_set():
                n = min(chunk, size - sent)
                sock.sendall(b"\0" * n)
                sent += n
                stop.wait(interval)
            sock.settimeout(5)
            answer = sock.recv(64)
        except OSError:
            return None
    return int(answer.split()[1]) if answer.startswith(b"HTTP/") else None


def valid_time(url: str, body: bytes, token: str | None) -> float:
    import httpx

    started = time.perf_counter()
    headers = {"Content-Type": "application/gzip", "Authorization": f"Bearer {token}"}
    response = httpx.post(f"{url}/v1/synthesize", content=body, headers=headers, timeout=120)
    if response.status_code != 200:
        raise RuntimeError(f"the valid request got HTTP {response.status_code}: {response.text}")
    return time.perf_counter() - started


def beside_slow_uploads(url: str, body: bytes, token: str | None, uploads: int = 8,
                        rate: float = 80e3) -> float:  # fmt: skip
    """Seconds of a valid request while ``uploads`` legal slow uploads (``rate`` B/s) go on."""
    stop = threading.Event()
    threads = [
        threading.Thread(target=slow_upload, args=(url, token, 1_900_000, 8000, 8000 / rate, stop))
        for _ in range(uploads)
    ]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # every upload is in, holding its request slot
    try:
        return valid_time(url, body, token)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)


# --- the run ---------------------------------------------------------------------------------

TOKEN = "hostile-bench-token-0123456789"
# the deployment the bench and tests/security use: small limits so that a bomb stays small
SERVE = {
    "max_upload_mb": 2,
    "upload_grace_s": 1.0,
    "min_upload_kbps": 64,
    "request_timeout_s": 60,
    "max_waiting": 2,  # a burst of valid requests: the third waiting one gets a 503
    "allowed_hosts": ["127.0.0.1", "localhost"],
}
IO = {"max_decompressed_mb": 64}


def tiny_entry(folder: Path) -> str:
    """A registry entry holding a tiny seeded (untrained) generator: the demo config, smaller."""
    import torch

    from hmss_ray.config import load_config
    from hmss_ray.models import checkpoint as ckpt
    from hmss_ray.models.factory import build_generator

    torch.manual_seed(0)
    cfg = load_config(Path(__file__).parents[1] / "configs" / "demo.yaml")
    directory = ckpt.save_checkpoint(
        folder / "ckpt", generator=build_generator(cfg), cfg=cfg, epoch=1, metrics={}
    )
    registry = str(folder / "registry")
    return ckpt.write_registry_entry(directory, registry, "hostile", metrics={}, winner={})


def valid_body(folder: Path) -> bytes:
    """A phantom brain MR (.nii.gz): the valid request."""
    from hmss_ray.data.phantom import write_dataset
    from hmss_ray.data.phantom.regions import COARSE_SHAPE

    write_dataset(folder / "phantom", cases=1, regions=["brain"], shape=COARSE_SHAPE)
    return next((folder / "phantom").glob("Task1/brain/*/mr.nii.gz")).read_bytes()


def run_cases(url: str, pid: int, all_cases: list[Case], valid: bytes) -> list[dict[str, Any]]:
    """Each case, then a valid request: status, seconds, leaks, the replica's peak growth."""
    rows = []
    for case in all_cases:
        base = reset_peak(pid)
        status, seconds, text = send(url, case, TOKEN)
        rows.append({
            "case": case.name, "kind": case.kind, "bytes": len(case.body), "status": status,
            "seconds": round(seconds, 3), "leaks": leaks(text),
            "rss_growth_mb": round(peak_growth_mb(pid, base), 1),
            "valid_after_s": round(valid_time(url, valid, TOKEN), 3),
        })  # fmt: skip
    return rows


def measure(workdir: Path) -> dict[str, Any]:

    from hmss_ray.cluster import free_port, init_ray
    from hmss_ray.serving.app import deploy, shutdown

    entry, valid = tiny_entry(workdir), valid_body(workdir)
    all_cases = cases(secret_file(workdir), valid)
    init_ray()
    url = deploy(entry, port=free_port(), serve_config=SERVE, io=IO, env={"HMSS_API_TOKEN": TOKEN})
    try:
        pid = replica_pid("hmss")
        valid_time(url, valid, TOKEN)  # warm
        rows = run_cases(url, pid, all_cases, valid)
        alone = min(valid_time(url, valid, TOKEN) for _ in range(3))
        beside = beside_slow_uploads(url, valid, TOKEN)
    finally:
        shutdown()
    return {"rows": rows, "alone": alone, "beside": beside}


def main(argv: list[str] | None = None) -> int:
    import tempfile

    from bench import command_line, machine_facts, write_json

    parser = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__)
    parser.add_argument("--json", default="bench/results/hostile.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hmss-hostile-") as tmp:
        m = measure(Path(tmp))
    rows = m["rows"]
    small = [r for r in rows if r["bytes"] < 2**20]
    payload = {
        "cases": len(rows),
        "non_4xx": sum(not 400 <= r["status"] < 500 for r in rows),
        "leaks": sum(bool(r["leaks"]) for r in rows),
        "max_answer_s": max(r["seconds"] for r in rows),
        "max_rss_growth_mb": max(r["rss_growth_mb"] for r in small),
        "valid_alone_s": round(m["alone"], 3),
        "valid_beside_slow_uploads_s": round(m["beside"], 3),
        "valid_beside_slow_uploads_ratio": round(m["beside"] / m["alone"], 2),
        "slow_uploads": 8,
        "per_case": rows,
        "command": command_line(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_facts(),
    }
    write_json(args.json, payload)
    for row in rows:
        print(f"{row['case']:42s} {row['status']} {row['seconds']:6.2f}s "
              f"+{row['rss_growth_mb']:6.1f} MB {','.join(row['leaks'])}")  # fmt: skip
    keys = ("cases", "non_4xx", "leaks", "max_answer_s", "max_rss_growth_mb", "valid_alone_s",
            "valid_beside_slow_uploads_s", "valid_beside_slow_uploads_ratio")  # fmt: skip
    print({k: payload[k] for k in keys})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
