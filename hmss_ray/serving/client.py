"""The HTTP client of the Serve endpoint (``python -m hmss_ray.client`` is its command)."""

from __future__ import annotations

import io
import zipfile
from dataclasses import asdict
from pathlib import Path

import httpx

from hmss_ray.io import Format, format_to_read, read_volume, volume_to_bytes
from hmss_ray.io.dicom_write import PatientFields, check_series_target
from hmss_ray.serving.hosts import is_loopback

CONTENT_TYPES = {
    Format.NIFTI: "application/octet-stream",
    Format.MHA: "application/octet-stream",
    Format.NRRD: "application/octet-stream",
    Format.DICOM: "application/zip",
}


def upload_body(path: str | Path) -> tuple[bytes, Format]:
    """The bytes to send for an input path: a single-file volume as it is, a DICOM folder zipped,
    a ``.mhd``/``.nhdr`` (header + data file) re-encoded as one ``.mha``/``.nrrd``."""
    path = Path(path)
    fmt = format_to_read(path)
    if path.is_dir():
        return zip_folder(path), Format.DICOM
    if path.name.lower().endswith((".mhd", ".nhdr")):
        return volume_to_bytes(read_volume(path), fmt), fmt
    return path.read_bytes(), fmt


def zip_folder(folder: Path) -> bytes:
    """Every file under ``folder`` (hidden ones left out), stored by its relative path."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def synthesize(
    url: str,
    mr_path: str | Path,
    mask_path: str | Path | None = None,
    token: str | None = None,
    timeout: float = 600.0,
    fmt: Format = Format.NIFTI,
    patient: PatientFields | None = None,
    region: str | None = None,
) -> httpx.Response:
    """POST the MR (and mask) to ``url/v1/synthesize?format=fmt``; returns the HTTP response.

    The MR file's bytes go as they are (an int16 NIfTI stays int16: no float copy, no
    re-encoding); on loopback the client asks for no compression (``Accept-Encoding:
    identity``), elsewhere httpx's default (gzip) lets the server compress the answer.

    Args:
        url: the endpoint's base URL.
        mr_path: an MR file, DICOM folder or zip (see :func:`upload_body`).
        mask_path: an optional body mask file on the MR grid.
        token: the API token, when the server wants one.
        timeout: seconds for the whole call.
        fmt: the answer's format.
        patient: patient fields for a DICOM answer from a non-DICOM MR.
        region: the volume's region (``?region=``), needed by a model whose regions have
            different geometry contracts.
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if is_loopback(httpx.URL(url).host):  # on loopback compressing costs more than it saves
        headers["Accept-Encoding"] = "identity"
    endpoint = url.rstrip("/") + "/v1/synthesize"
    params = {"format": fmt.value, **({"region": region} if region else {})}
    body, in_format = upload_body(mr_path)
    fields = {f"patient_{k}": v for k, v in asdict(patient or PatientFields()).items() if v}
    if mask_path is None and not fields:
        headers["Content-Type"] = CONTENT_TYPES[in_format]
        return httpx.post(endpoint, content=body, headers=headers, params=params, timeout=timeout)
    files = {"mr": ("mr", body)}
    if mask_path is not None:
        files["mask"] = ("mask", upload_body(mask_path)[0])
    return httpx.post(
        endpoint, files=files, data=fields, headers=headers, params=params, timeout=timeout
    )


def save_answer(content: bytes, out: str | Path, fmt: Format) -> Path:
    """Write the answer: a file, or for a DICOM series a ``.zip`` or the files of a new folder."""
    out = Path(out)
    if fmt is not Format.DICOM or out.suffix.lower() == ".zip":
        out.write_bytes(content)
        return out
    check_series_target(out)
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        for info in archive.infolist():
            name = Path(info.filename).name  # flat: the server writes CT_0001.dcm, ...
            if name and not info.is_dir():
                (out / name).write_bytes(archive.read(info))
    return out
