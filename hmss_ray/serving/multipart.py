"""A ``multipart/form-data`` body split into its parts without copying them (RFC 7578).

The body is already in memory, bounded by ``serve.max_upload_mb``. Starlette's form parser would
copy each file part into a spooled temporary file (on disk past 1 MiB: patient data left in
``/tmp``), and reading it back copies it again: three copies of the MR at once. Here every part is
a ``memoryview`` of the body: the MR is held once. A malformed form raises ``ValueError`` with a
fixed text (never a parser's own words).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_PARTS = 18  # mr, mask and 16 fields at most
MAX_PART_HEADER_BYTES = 8192
_BOUNDARY = re.compile(r"""boundary\s*=\s*(?:"([^"]{1,70})"|([^\s;"]{1,70}))""", re.IGNORECASE)
_DISPOSITION = re.compile(r"""(name|filename)\s*=\s*(?:"([^"]*)"|([^;\s]*))""", re.IGNORECASE)


@dataclass(frozen=True)
class Part:
    """One part: its form name, its file name (None for a plain field), its bytes (a view)."""

    name: str
    filename: str | None
    data: memoryview

    def text(self) -> str:
        try:
            return bytes(self.data).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"the field {self.name!r} is not UTF-8 text") from None


def boundary_of(content_type: str) -> bytes:
    """The boundary parameter of a ``multipart/form-data`` Content-Type."""
    found = _BOUNDARY.search(content_type)
    if found is None:
        raise ValueError("the Content-Type has no valid boundary")
    return (found.group(1) or found.group(2)).encode("latin-1")


def parse(body: bytes | bytearray, content_type: str) -> dict[str, Part]:
    """The parts of ``body`` by name; each part's data is a view of ``body``.

    Raises:
        ValueError: no boundary, no closing delimiter, more than ``MAX_PARTS`` parts, a part
            without a name, a name given twice, part headers over ``MAX_PART_HEADER_BYTES``.
    """
    delimiter = b"--" + boundary_of(content_type)
    view = memoryview(body)
    at = body.find(delimiter)
    if at < 0:
        raise ValueError("the body holds no part")
    parts: dict[str, Part] = {}
    while True:
        at += len(delimiter)
        if body[at : at + 2] == b"--":
            return parts
        line_end = body.find(b"\r\n", at)
        if line_end < 0 or body[at:line_end].strip(b" \t"):
            raise ValueError("a part delimiter is malformed")
        head_end = body.find(b"\r\n\r\n", line_end, line_end + MAX_PART_HEADER_BYTES)
        if head_end < 0:
            raise ValueError("a part's headers are malformed or too long")
        name, filename = _disposition(bytes(body[line_end + 2 : head_end]))
        start = head_end + 4
        end = body.find(b"\r\n" + delimiter, start)
        if end < 0:
            raise ValueError("the body has no closing delimiter")
        if name in parts or len(parts) >= MAX_PARTS:
            raise ValueError(f"the form repeats {name!r} or has over {MAX_PARTS} parts")
        parts[name] = Part(name, filename, view[start:end])
        at = end + 2


def _disposition(headers: bytes) -> tuple[str, str | None]:
    """(name, filename) from a part's Content-Disposition header."""
    for line in headers.decode("latin-1").split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() != "content-disposition":
            continue
        if not value.strip().lower().startswith("form-data"):
            raise ValueError("a part is not form-data")
        params: dict[str, str] = {}
        for found in _DISPOSITION.finditer(value):
            params.setdefault(found.group(1).lower(), found.group(2) or found.group(3) or "")
        if not params.get("name"):
            raise ValueError("a part has no name")
        return params["name"], params.get("filename")
    raise ValueError("a part has no Content-Disposition")
