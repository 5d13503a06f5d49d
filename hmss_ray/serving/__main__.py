"""``python -m hmss_ray.serving``: a registry entry behind HTTP with Ray Serve (127.0.0.1)."""

from __future__ import annotations

import argparse
import sys
import time

from hmss_ray import cli

EXAMPLES = """example:
  python -m hmss_ray.serving --model outputs/registry/demo --port 8000
  python -m hmss_ray.serving --model s3://hmss-models/registry/brain --host 0.0.0.0 \
      --tls-cert /etc/hmss/tls.crt --tls-key /etc/hmss/tls.key     # HTTPS only
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
    parser.add_argument("--tls-cert", help="PEM certificate (chain): serve HTTPS only")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    return parser


def command(args: argparse.Namespace) -> int:
    from ray import serve

    from hmss_ray.cluster import init_ray
    from hmss_ray.serving import tls
    from hmss_ray.serving.app import deploy

    http_tls = tls.configure(args.tls_cert, args.tls_key)  # before Ray starts: serving/tls.py
    init_ray()
    if http_tls:  # Serve's Python proxy: its own ssl options (deploy then keeps them)
        serve.start(http_options={"host": args.host, "port": args.port, **http_tls})
    url = deploy(args.model, args.host, args.port)
    if args.tls_cert:
        url = "https" + url.removeprefix("http")
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
