"""``python -m hmss_ray.serving``: a registry entry behind HTTP with Ray Serve (127.0.0.1)."""

from __future__ import annotations

import argparse
import sys
import time

from hmss_ray import cli

EXAMPLES = """example:
  python -m hmss_ray.serving --model outputs/registry/demo --port 8000
  serve run serve/hmss.yaml     # the same application from a Serve config
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        "hmss_ray.serving",
        "Serve a registry entry over HTTP with Ray Serve (binds 127.0.0.1 by default).",
        EXAMPLES,
    )
    parser.add_argument("--model", required=True, help="registry entry URI (path or s3://)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000)
    return parser


def command(args: argparse.Namespace) -> int:
    from ray import serve

    from hmss_ray.cluster import init_ray
    from hmss_ray.serving.app import deploy

    init_ray()
    url = deploy(args.model, args.host, args.port)
    print(f"[hmss] serving {args.model} at {url} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(command, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
