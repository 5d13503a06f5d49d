"""What ``/openapi.json`` says about ``POST /v1/synthesize``: every body, answer and status.

FastAPI cannot see a body that the route reads as a stream, so the request body, the answers
and the errors are written out here, once, and passed to the route decorator.
"""

from __future__ import annotations

from typing import Any

from hmss_ray.io.formats import MEDIA_TYPES

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_ERROR = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {
                "detail": {"type": "string", "description": "what is wrong, in words"},
                "request_id": {"type": "string", "description": "500 only: quote it"},
            },
            "required": ["detail"],
        }
    }
}
_PATIENT = {
    f"patient_{key}": {"type": "string", "maxLength": 64, "description": text}
    for key, text in (
        ("name", "DICOM person name, e.g. Doe^Jane (no backslash, no control characters)"),
        ("id", "patient ID (single-valued: no backslash, no control characters)"),
        ("birth_date", "YYYYMMDD"),
        ("sex", "M, F or O"),
        ("position", "HFS, HFP, FFS, FFP, HFDR, HFDL, FFDR, FFDL"),
    )
}

REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "The MR: NIfTI (.nii, .nii.gz), MetaImage (.mha, one file), NRRD (.nrrd, "
    "attached data) or a zipped DICOM MR series; what it is comes from its first bytes. Or a "
    "multipart form: file 'mr', optional file 'mask' (on the MR grid), optional patient_* "
    "fields (DICOM output from a non-DICOM MR only). At most serve.max_upload_mb.",
    "content": {
        **{
            kind: _BINARY
            for kind in (
                "application/octet-stream",
                "application/gzip",
                "application/x-nifti",
                "application/x-metaimage",
                "application/x-nrrd",
                "application/zip",
            )
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "mr": {"type": "string", "format": "binary"},
                    "mask": {"type": "string", "format": "binary"},
                    **_PATIENT,
                },
                "required": ["mr"],
            }
        },
    },
}

_STATUSES = {
    400: "the upload or a field is malformed (message says what)",
    401: "missing, malformed or wrong API token (when the deployment sets one)",
    404: "unknown path",
    406: "no format of Accept can be sent",
    408: "the upload came slower than serve.min_upload_kbps",
    413: "over serve.max_upload_mb or an io.* limit",
    415: "content type not accepted",
    421: "Host not in serve.allowed_hosts",
    422: "readable but not usable: region not covered, mask off the MR grid, a broken series",
    499: "the client went away",
    500: "a server fault: answered with a request id that the server log carries",
    503: "over capacity or over serve.request_timeout_s: retry after Retry-After seconds",
}


def synthesize_responses() -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of ``POST /v1/synthesize``: the sCT in each format, then the errors."""
    media = {media_type: _BINARY for media_type, _ in MEDIA_TYPES.values()}
    answers: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "the sCT (int16 HU on the MR grid) as ?format= or Accept asks: "
            "NIfTI (.nii.gz), MetaImage, NRRD, or a zipped DICOM CT series",
            "content": media,
        }
    }
    for status, text in _STATUSES.items():
        answers[status] = {"description": text, "content": _ERROR}
    answers[503]["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return answers


FORMAT_DESCRIPTION = "answer format: nifti (default), mha, nrrd, dicom (a zip); else by Accept"
REGION_DESCRIPTION = (
    "the MR's region (brain, pelvis, HN, TH, AB): needed when the model covers regions with "
    "different geometry contracts"
)
