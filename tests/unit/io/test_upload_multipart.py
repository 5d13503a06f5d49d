"""Multipart uploads: the MR part is a view of the request body (held once), the parts are what
Starlette's parser finds, and malformed forms get a fixed message."""

from __future__ import annotations

import asyncio
import os

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
    theirs = asyncio.run(_starlette(bytes(body), content_type))
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
