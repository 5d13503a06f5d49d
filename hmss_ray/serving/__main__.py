"""``python -m hmss_ray.serving``: a registry entry behind HTTP with Ray Serve (127.0.0.1)."""

from __future__ import annotations

import argparse
import sys
import time

from hmss_ray import cli

EXAMPLES = """example:
  python -m hmss_ray.serving --model outputs/registry/demo --port 8000
  HMSS_API_TOKEN_FILE=/run/secrets/hmss-tokens python -m hmss_ray.serving \\
      --model s3://bucket/registry/brain --host 0.0.0.0 --set serve.max_upload_mb=256
  serve run serve/hmss.yaml     # the same application from a Serve config

Off loopback a token is required (HMSS_API_TOKEN or HMSS_API_TOKEN_FILE): docs/security/endpoint.md.
The limits are this deployment's (--set serve.KEY=VALUE, --set io.KEY=VALUE), not the model's.
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
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="serve.KEY=VALUE",
        help="a serve.* or io.* key of this deployment, e.g. --set serve.request_timeout_s=120",
    )
    return parser


def command(args: argparse.Namespace) -> int:
    from ray import serve

    from hmss_ray.cluster import init_ray
    from hmss_ray.config import UserError, parse_overrides
    from hmss_ray.serving import guard
    from hmss_ray.serving.app import deploy, deployment_config

    keys = parse_overrides(args.set)
    sections: dict[str, dict] = {"serve": {}, "io": {}}
    for key, value in keys.items():
        section, _, name = key.partition(".")
        if section not in sections or not name:
            raise UserError(f"--set {key}: only serve.* and io.* keys are this deployment's")
        sections[section][name] = value
    cfg, _ = deployment_config(sections["serve"], sections["io"])
    guard.require_token_off_loopback(args.host, guard.load_tokens(cfg))  # before Ray starts
    init_ray()
    url = deploy(
        args.model, args.host, args.port, serve_config=sections["serve"], io=sections["io"]
    )
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
