"""The HTTP client of the Serve endpoint (``python -m hmss_ray.client`` is its command)."""

from __future__ import annotations

from pathlib import Path

import httpx


def synthesize(
    url: str,
    mr_path: str | Path,
    mask_path: str | Path | None = None,
    token: str | None = None,
    timeout: float = 600.0,
) -> httpx.Response:
    """POST the MR (and mask) to ``url/v1/synthesize``; returns the HTTP response."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    endpoint = url.rstrip("/") + "/v1/synthesize"
    mr_bytes = Path(mr_path).read_bytes()
    if mask_path is None:
        headers["Content-Type"] = "application/octet-stream"
        return httpx.post(endpoint, content=mr_bytes, headers=headers, timeout=timeout)
    files = {"mr": ("mr.nii.gz", mr_bytes), "mask": ("mask.nii.gz", Path(mask_path).read_bytes())}
    return httpx.post(endpoint, files=files, headers=headers, timeout=timeout)
