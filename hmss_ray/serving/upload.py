"""What a ``POST /v1/synthesize`` carries, read at a bounded cost, and the answer's format.

The body is streamed (``request.stream()``) and refused with 413 the moment it passes
``serve.max_upload_mb``, whether or not a Content-Length was sent; a declared length over the
limit is refused before a byte is read. A multipart form is parsed from the bounded body.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import HTTPException, Request

from hmss_ray.config import UserError
from hmss_ray.io import Format, LimitExceeded, SeriesError
from hmss_ray.io.dicom_write import PatientFields
from hmss_ray.serving import multipart
from hmss_ray.serving.hosts import is_loopback

# bodies that may hold a volume; what it is comes from its first bytes, not from this
VOLUME_TYPES = {
    "application/octet-stream",
    "application/gzip",
    "application/x-gzip",
    "application/nifti",
    "application/x-nifti",
    "application/vnd.nifti",
    "application/zip",
    "application/x-zip-compressed",
    "application/dicom",
    "application/x-metaimage",
    "application/x-nrrd",
}
ACCEPT_FORMATS = {
    "application/gzip": Format.NIFTI,
    "application/x-gzip": Format.NIFTI,
    "application/nifti": Format.NIFTI,
    "application/x-nifti": Format.NIFTI,
    "application/vnd.nifti": Format.NIFTI,
    "application/x-metaimage": Format.MHA,
    "application/x-mha": Format.MHA,
    "application/x-nrrd": Format.NRRD,
    "application/nrrd": Format.NRRD,
    "application/zip": Format.DICOM,
    "application/x-zip-compressed": Format.DICOM,
    "application/dicom+zip": Format.DICOM,
    # anything goes: the default, NIfTI
    "*/*": Format.NIFTI,
    "application/*": Format.NIFTI,
    "application/octet-stream": Format.NIFTI,
}
PATIENT_FIELDS = ("name", "id", "birth_date", "sex", "position")


def bad(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail=message)


def http_error(exc: UserError) -> HTTPException:
    """A reader's or the synthesizer's refusal as the HTTP status that fits it."""
    if isinstance(exc, LimitExceeded):
        return bad(413, str(exc))
    if isinstance(exc, SeriesError):
        return bad(422, str(exc))
    from hmss_ray.inference.synthesizer import InputError

    return bad(422 if isinstance(exc, InputError) else 400, str(exc))


@dataclass
class Upload:
    """The files and fields of one request."""

    # a bytearray when read into one buffer (see _bounded_body); views of it from a form
    mr: bytes | bytearray | memoryview
    mask: bytes | memoryview | None = None
    patient: PatientFields = field(default_factory=PatientFields)
    # seconds per phase in the replica (upload, queue, parse, inference, encode): Server-Timing
    timings: dict[str, float] = field(default_factory=dict)
    study: str | None = None  # the DICOM MR's StudyInstanceUID: hashed into the audit line only


def gzip_level(accept_encoding: str, client_host: str | None) -> int:
    """How hard to compress a gzipped answer (a ``.nii.gz``): 1 (fast) when the client lists
    ``gzip`` in ``Accept-Encoding`` (q > 0) and is not on loopback; else 0, a stored gzip that
    costs no compression time and stays a valid ``.nii.gz`` for any client."""
    if client_host is None or is_loopback(client_host):
        return 0
    for item in accept_encoding.split(","):
        coding, *params = (part.strip().lower() for part in item.split(";"))
        q = next((p[2:] for p in params if p.startswith("q=")), "1")
        try:
            wanted = float(q) > 0
        except ValueError:
            continue
        if coding in ("gzip", "x-gzip", "*") and wanted:
            return 1
    return 0


def choose_format(query: str | None, accept: str) -> Format:
    """``?format=`` wins; else the first ``Accept`` type we can send (by q); else NIfTI."""
    if query:
        try:
            return Format(query.strip().lower())
        except ValueError:
            valid = ", ".join(f.value for f in Format)
            raise bad(400, f"format={query!r} is not one of: {valid}") from None
    if not accept.strip():
        return Format.NIFTI
    ranked = []
    for position, item in enumerate(accept.split(",")):
        kind, *params = (part.strip() for part in item.split(";"))
        q = next((p[2:] for p in params if p.startswith("q=")), "1")
        try:
            ranked.append((-float(q), position, kind.lower()))
        except ValueError:
            continue
    for neg_q, _, kind in sorted(ranked):
        if neg_q < 0 and kind in ACCEPT_FORMATS:
            return ACCEPT_FORMATS[kind]
    raise bad(
        406,
        f"cannot answer in any of Accept: {accept!r}; use ?format=nifti|mha|nrrd|dicom or "
        "Accept: application/gzip (NIfTI), application/x-metaimage, application/x-nrrd, "
        "application/zip (DICOM series)",
    )


async def read_upload(request: Request, max_bytes: int) -> Upload:
    """The request's MR (and mask, patient fields), or a 4xx that says what is wrong."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise bad(413, f"upload of {int(declared)} bytes is over the {max_bytes} byte limit "
                       "(serve.max_upload_mb)")  # fmt: skip
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "multipart/form-data" and ctype not in VOLUME_TYPES:
        raise bad(
            415,
            f"content type {ctype or 'none'!r} is not accepted: send the MR as "
            "application/octet-stream (NIfTI, .mha, .nrrd), application/gzip (.nii.gz), "
            "application/zip (a DICOM series), or multipart/form-data with a file field 'mr' "
            "and optional 'mask'",
        )
    body = await _bounded_body(request, max_bytes)
    if ctype == "multipart/form-data":
        return await _multipart(request, body)
    if not body:
        raise bad(400, "the request body is empty: send an MR volume")
    return Upload(body)


async def _bounded_body(request: Request, max_bytes: int) -> bytes | bytearray:
    """The body, at most ``max_bytes``. With a Content-Length it is read into one buffer of that
    size (the chunks are not kept and joined: one copy of the upload, and the parsed voxels of
    an uncompressed ``.nii`` are a view of it)."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        parts: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise bad(413, f"upload is over the {max_bytes} byte limit (serve.max_upload_mb)")
            parts.append(chunk)
        return b"".join(parts)
    body, size = bytearray(int(declared)), 0  # declared <= max_bytes: checked by the caller
    async for chunk in request.stream():
        if size + len(chunk) > len(body):
            raise bad(400, f"the body is longer than its Content-Length ({declared} bytes)")
        body[size : size + len(chunk)] = chunk
        size += len(chunk)
    if size < len(body):
        raise bad(400, f"the body ended after {size} of its Content-Length ({declared}) bytes")
    return body


async def _multipart(request: Request, body: bytes | bytearray) -> Upload:
    """The form's parts as views of ``body`` (:mod:`.multipart`): the MR is held once."""
    try:
        form = multipart.parse(body, request.headers.get("content-type", ""))
        patient = {k: form[f"patient_{k}"].text() for k in PATIENT_FIELDS if f"patient_{k}" in form}
    except ValueError as exc:  # our own fixed texts
        raise bad(400, f"the multipart form is malformed: {exc}") from None
    mr, mask = form.get("mr"), form.get("mask")
    if mr is None or mr.filename is None:
        raise bad(400, "multipart upload needs a file field named 'mr'")
    try:
        fields = PatientFields(**patient)
    except UserError as exc:
        raise bad(400, str(exc)) from None
    has_mask = mask is not None and mask.filename is not None
    return Upload(mr=mr.data, mask=mask.data if has_mask else None, patient=fields)
