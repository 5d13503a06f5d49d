"""Multipart uploads: the MR part is a view of the request body (held once), the parts are what
Starlette's parser finds, and malformed forms get a fixed message."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from starlette.datastructures import UploadFile
from starlette.requests import Request
from urllib3 import encode_multipart_formdata

from hmss_ray.serving import multipart

MR = os.urandom(300_000) + b"\r\n--not-the-boundary\r\n" + os.urandom(1000)
MASK = os.urandom(5000)


def _form(boundary: str | None = None) -> tuple[bytearray, str]:
    fields = {
        "mr": ("mr.nii.gz", MR, "application/gzip"),
        "mask": ("mask.nii.gz", MASK, "application/gzip"),
        "patient_id": "A1",
        "patient_name": "Doe^Jane",
    }
    body, content_type = encode_multipart_formdata(fields, boundary=boundary)
    return bytearray(body), content_type


async def _starlette(body: bytes, content_type: str) -> dict:
    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    headers = [(b"content-type", content_type.encode())]
    form = await Request({"type": "http", "headers": headers}, receive).form()
    return {k: (await v.read() if isinstance(v, UploadFile) else v) for k, v in form.items()}


@pytest.mark.parametrize("boundary", [None, "b0undary-with-dashes"])
def test_parts_are_views_of_the_body_and_match_starlette(boundary) -> None:
    body, content_type = _form(boundary)
    parts = multipart.parse(body, content_type)
    assert parts["mr"].data.obj is body  # a view: no copy of the MR
    assert bytes(parts["mr"].data) == MR and bytes(parts["mask"].data) == MASK
    assert parts["mr"].filename == "mr.nii.gz" and parts["patient_id"].filename is None
    with ThreadPoolExecutor(1) as pool:  # a loop of its own, whatever runs in this thread
        theirs = pool.submit(asyncio.run, _starlette(bytes(body), content_type)).result()
    assert theirs["mr"] == MR and theirs["mask"] == MASK
    assert {k: p.text() for k, p in parts.items() if p.filename is None} == {
        "patient_id": theirs["patient_id"],
        "patient_name": theirs["patient_name"],
    }


def _malformed(body: bytes, content_type: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        multipart.parse(bytearray(body), content_type)


def test_malformed_forms_are_refused_with_a_fixed_text() -> None:
    body, content_type = _form("bnd")
    _malformed(bytes(body), "multipart/form-data", "no valid boundary")
    _malformed(bytes(body)[:-10], content_type, "no closing delimiter")
    repeated = bytes(body).replace(b'name="mask"', b'name="mr"')
    _malformed(repeated, content_type, "repeats 'mr'")
    part = b'--bnd\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nx\r\n'
    many = b"".join(part.replace(b"%d", str(i).encode()) for i in range(30)) + b"--bnd--\r\n"
    _malformed(many, content_type, "over 18 parts")
    long_head = b"--bnd\r\nX-Pad: " + b"a" * 10000 + b"\r\n\r\nx\r\n--bnd--\r\n"
    _malformed(long_head, content_type, "too long")
    no_name = b"--bnd\r\nContent-Disposition: form-data\r\n\r\nx\r\n--bnd--\r\n"
    _malformed(no_name, content_type, "no name")


def test_the_project_clients_encoding_is_understood() -> None:
    """hmss_ray.serving.client sends with httpx: its form parses to the same parts."""
    import httpx

    request = httpx.Request(
        "POST",
        "http://127.0.0.1/v1/synthesize",
        files={"mr": ("mr.nii.gz", MR, "application/gzip"), "mask": ("m.nii.gz", MASK)},
        data={"patient_id": "A1"},
    )
    body = bytearray(request.read())
    parts = multipart.parse(body, request.headers["content-type"])
    assert bytes(parts["mr"].data) == MR and bytes(parts["mask"].data) == MASK
    assert parts["patient_id"].text() == "A1" and parts["patient_id"].filename is None


def test_read_upload_takes_a_form_and_refuses_a_malformed_one() -> None:
    """upload.read_upload behind a real ASGI app: the MR is a view, fields reach PatientFields,
    a form without a file 'mr' or with a broken body is a 400 with our own text."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from hmss_ray.serving.upload import Pace, read_upload

    app = FastAPI()

    @app.post("/")
    async def echo(request: Request) -> dict:
        upload = await read_upload(request, Pace(max_bytes=2**22))
        return {
            "mr_is_view": isinstance(upload.mr, memoryview),
            "mr": len(upload.mr),
            "mask": len(upload.mask or b""),
            "id": upload.patient.id,
        }

    client = TestClient(app)
    files = {"mr": ("mr.nii.gz", MR, "application/gzip"), "mask": ("m.nii.gz", MASK)}
    answer = client.post("/", files=files, data={"patient_id": "A1"}).json()
    assert answer == {"mr_is_view": True, "mr": len(MR), "mask": len(MASK), "id": "A1"}
    missing = client.post("/", files={"other": ("x", b"1")})
    assert missing.status_code == 400 and "file field named 'mr'" in missing.json()["detail"]
    body, content_type = _form("bnd")
    broken = client.post("/", content=bytes(body)[:-12], headers={"content-type": content_type})
    assert broken.status_code == 400
    assert (
        broken.json()["detail"]
        == "the multipart form is malformed: the body has no closing delimiter"
    )


@pytest.mark.parametrize("fmt", ["nifti", "mha", "nrrd", "dicom"])
def test_every_reader_takes_a_part_as_a_view(fmt: str) -> None:
    import numpy as np

    from hmss_ray.config import IOConfig
    from hmss_ray.io import Volume, volume_from_bytes, volume_to_bytes

    volume = Volume(np.arange(120, dtype=np.int16).reshape(6, 5, 4), np.diag([1, 2, 3, 1.0]))
    part = memoryview(bytearray(b"--" + volume_to_bytes(volume, fmt)))[2:]  # not at offset 0
    back = volume_from_bytes(part, IOConfig(), "MR")
    np.testing.assert_array_equal(np.asarray(back.array, np.int16), volume.array)
