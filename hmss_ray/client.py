"""``python -m hmss_ray.client``: send an MR volume to the Serve endpoint, save the sCT."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hmss_ray import cli

EXAMPLES = """example:
  python -m hmss_ray.client mr.nii.gz -o sct.nii.gz --url http://127.0.0.1:8000

exit status: 0 saved, 1 the server refused the request (its reason is printed), 2 bad arguments,
3 the server cannot be reached
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        "hmss_ray.client",
        "Send an MR volume to the hmss-ray HTTP endpoint and save the synthetic CT.",
        EXAMPLES,
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
    return parser


def command(args: argparse.Namespace) -> int:
    import httpx

    from hmss_ray.serving.client import synthesize

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


def main(argv: list[str] | None = None) -> int:
    return cli.run(command, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
