"""``python -m hmss_ray.client``: send an MR NIfTI to the Serve endpoint, save the sCT.

Example:
    python -m hmss_ray.client mr.nii.gz -o sct.nii.gz --url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import os
import sys
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hmss_ray.client",
        description="Send an MR NIfTI to the hmss-ray HTTP endpoint and save the synthetic CT.",
        epilog="example: python -m hmss_ray.client mr.nii.gz -o sct.nii.gz "
        "--url http://127.0.0.1:8000",
    )
    parser.add_argument("mr", help="MR NIfTI (.nii or .nii.gz)")
    parser.add_argument("-o", "--out", required=True, help="where to save the sCT NIfTI")
    parser.add_argument("--mask", help="optional body mask NIfTI on the MR grid")
    parser.add_argument("--url", default=os.environ.get("HMSS_URL", "http://127.0.0.1:8000"))
    parser.add_argument(
        "--token-env",
        default="HMSS_API_TOKEN",
        help="environment variable holding the API token, if the server wants one",
    )
    args = parser.parse_args(argv)
    try:
        response = synthesize(args.url, args.mr, args.mask, os.environ.get(args.token_env))
    except httpx.HTTPError as exc:
        print(f"error: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 3
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        print(f"error: HTTP {response.status_code}: {detail}", file=sys.stderr)
        return 1
    Path(args.out).write_bytes(response.content)
    print(
        f"[hmss] wrote {args.out} (model {response.headers.get('x-model-name')} "
        f"{response.headers.get('x-model-version')}, "
        f"{response.headers.get('x-inference-time-ms')} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
