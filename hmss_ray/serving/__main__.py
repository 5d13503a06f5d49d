"""``hmss-ray serve`` (``python -m hmss_ray.serving``): a registry entry behind HTTP with Ray
Serve, on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from hmss_ray import cli

EXAMPLES = """examples:
  hmss-ray serve --model outputs/demo/registry/demo --port 8000
  hmss-ray serve --model outputs/demo/registry/demo --set serve.precision=bf16 \\
      --set io.max_voxels=200000000
  hmss-ray serve --model outputs/demo/registry/demo --host 0.0.0.0 \\
      --tls-cert /etc/hmss/tls.crt --tls-key /etc/hmss/tls.key     # HTTPS only
  serve run serve/hmss.yaml     # the same application from a Serve config

--set takes the keys a replica applies over the entry's own config: io.* (input limits),
serve.precision, serve.compile, serve.channels_last and inference.tta.
"""
ENGINE_KEYS = ("precision", "compile", "channels_last")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        "serve",
        "Serve a registry entry over HTTP with Ray Serve (binds 127.0.0.1 by default).",
        EXAMPLES,
    )
    cli.add_model(parser, "registry entry URI (path or s3://)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000)
    cli.add_config_args(
        parser,
        config=False,
        sets="override the entry's config: io.*, serve.precision, serve.compile, "
        "serve.channels_last, inference.tta (repeatable)",
    )
    parser.add_argument("--tls-cert", help="PEM certificate (chain): serve HTTPS only")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    return parser


def replica_options(model: str, sets: list[str]) -> dict[str, Any]:
    """``--set`` as the replica's options (``io``, ``engine``, ``tta``), checked against the
    entry's config first so that a bad key or value is an error line, not a failed replica."""
    from hmss_ray.config import parse_overrides
    from hmss_ray.models.checkpoint import localize, read_meta

    overrides = parse_overrides(sets)
    allowed = {f"serve.{k}" for k in ENGINE_KEYS} | {"inference.tta"}
    wrong = [k for k in overrides if not k.startswith("io.") and k not in allowed]
    if wrong:
        raise cli.UserError(
            f"--set {wrong[0]}: serve takes io.*, {', '.join(sorted(allowed))} (the rest of the "
            "config is the entry's own)"
        )
    if not overrides:
        return {}
    read_meta(localize(model)).cfg.replace(overrides)  # a ConfigError names the key
    options: dict[str, Any] = {}
    io = {k[3:]: v for k, v in overrides.items() if k.startswith("io.")}
    engine = {k[6:]: v for k, v in overrides.items() if k.startswith("serve.")}
    if io:
        options["io"] = io
    if engine:
        options["engine"] = engine
    if "inference.tta" in overrides:
        options["tta"] = str(overrides["inference.tta"])
    return options


def command(args: argparse.Namespace) -> int:
    from ray import serve

    from hmss_ray.cluster import init_ray
    from hmss_ray.serving import tls
    from hmss_ray.serving.app import deploy

    options = replica_options(args.model, args.set)
    http_tls = tls.configure(args.tls_cert, args.tls_key)  # before Ray starts: serving/tls.py
    init_ray()
    if http_tls:  # Serve's Python proxy: its own ssl options (deploy then keeps them)
        serve.start(http_options={"host": args.host, "port": args.port, **http_tls})
    url = deploy(args.model, args.host, args.port, **options)
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
