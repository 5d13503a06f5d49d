"""The endpoint's audit trail: one JSON line per synthesis request, with no patient data.

Each line says when, who (``token_id``: a hash of the bearer token, never the token), with which
model version, for which study (``study``: a keyed hash of the DICOM StudyInstanceUID, or null
for inputs that carry none) and with what HTTP status:

    {"time": "2026-12-06T15:40:02.123Z", "event": "synthesize", "token_id": "3f2a...",
     "model": "brain", "model_version": "20261206-1", "study": "9c1e...", "status": 200,
     "client": "10.0.3.7"}

The hashes are HMAC-SHA256 (first 16 hex digits) with the key in ``HMSS_AUDIT_KEY`` when set
(set it: without a key a study UID could be confirmed by hashing a guess), else plain SHA-256.
Lines go to the ``hmss_ray.audit`` logger (Ray keeps each replica's log) and, when
``HMSS_AUDIT_LOG`` names a file, are appended to it (created mode 600).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from typing import Any

AUDIT_KEY_ENV = "HMSS_AUDIT_KEY"
AUDIT_LOG_ENV = "HMSS_AUDIT_LOG"
logger = logging.getLogger("hmss_ray.audit")


def digest(value: str | None) -> str | None:
    """A short keyed hash of ``value`` (None stays None): joins lines without revealing it."""
    if not value:
        return None
    key = os.environ.get(AUDIT_KEY_ENV, "").encode()
    if key:
        return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:16]
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def token_id(authorization: str | None) -> str | None:
    """The caller's identity as the audit records it: a hash of the bearer token."""
    if not authorization or not authorization.startswith("Bearer "):
        return None
    return digest(authorization[7:])


def study_uid(volume: Any) -> str | None:
    """The StudyInstanceUID a volume read from DICOM carries (``meta["dicom"]``), else None."""
    source = getattr(volume, "meta", {}).get("dicom")
    return getattr(source, "tags", {}).get("StudyInstanceUID") if source else None


def line(
    *, authorization: str | None, model: str, version: str, study: str | None, status: int,
    client: str | None,
) -> str:  # fmt: skip
    """The audit line of one request (module docstring)."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    return json.dumps(
        {
            "time": stamp,
            "event": "synthesize",
            "token_id": token_id(authorization),
            "model": model,
            "model_version": version,
            "study": digest(study),
            "status": status,
            "client": client,
        }
    )


def record(request: Any, status: int, model: str, version: str, study: str | None) -> None:
    """Write the audit line of ``request`` (a Starlette request); never raises into the answer."""
    try:
        text = line(
            authorization=request.headers.get("authorization"),
            model=model,
            version=version,
            study=study,
            status=status,
            client=request.client.host if request.client else None,
        )
        logger.info(text)
        path = os.environ.get(AUDIT_LOG_ENV)
        if path:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write(text + "\n")
    except Exception:  # an audit failure is logged, loudly, but the clinician gets the answer
        logger.exception("could not write the audit line")
