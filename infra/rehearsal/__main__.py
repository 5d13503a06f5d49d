"""``python -m infra.rehearsal up|down|status|env|runtime-env|serve``: the rehearsal cluster.

    python -m infra.rehearsal up --s3           # head + autoscaler (+ an S3 server on loopback)
    eval "$(python -m infra.rehearsal env)"      # RAY_ADDRESS, token path, S3 endpoint
    ray job submit --working-dir . --runtime-env-json "$(python -m infra.rehearsal runtime-env)" \\
        -- python -m hmss_ray.tune ... --set train.accelerator_resource=accel
    python -m infra.rehearsal status             # nodes by type, alive now
    python -m infra.rehearsal serve --model s3://hmss-data/registry/demo   # GPU Serve config
    python -m infra.rehearsal down               # stops exactly what `up` started
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from infra.rehearsal.cluster import DEFAULT_STATE, Rehearsal, RehearsalError, down, up

EPILOG = __doc__.split("\n\n", 1)[1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.rehearsal",
        description="Ray's fake multi-node autoscaler on this machine, the cloud's node types.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "command",
        choices=["up", "down", "status", "env", "runtime-env", "serve"],
        help="what to do",
    )
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help="state dir (one cluster)")
    parser.add_argument("--s3", action="store_true", help="up: also start an S3 server (moto)")
    parser.add_argument(
        "--idle-timeout-minutes", type=float, help="up: worker nodes leave after this long idle"
    )
    parser.add_argument("--keep-logs", action="store_true", help="down: keep the state dir")
    parser.add_argument("--model", help="serve: the registry entry to deploy (s3://...)")
    parser.add_argument("--port", type=int, default=8000, help="serve: HTTP port on 127.0.0.1")
    return parser


def runtime_env(environ: dict[str, str] | None = None) -> dict:
    """The ``runtime_env`` that hands a job the caller's S3 settings (every ``AWS_*`` variable).

    On AWS or KubeRay the nodes' IAM role supplies credentials and this carries at most the
    endpoint; on the rehearsal it is the only way S3 settings reach the nodes.
    """
    environ = os.environ if environ is None else environ
    env_vars = {k: v for k, v in environ.items() if k.startswith("AWS_")}
    return {"env_vars": {**env_vars, "PYTHONUNBUFFERED": "1"}}


def _status(rehearsal: Rehearsal) -> str:
    nodes = rehearsal.nodes()
    alive = Counter(n.node_type for n in nodes if n.alive)
    gone = Counter(n.node_type for n in nodes if not n.alive)
    lines = [f"rehearsal cluster at {rehearsal.address} (GCS {rehearsal.gcs_address})"]
    for kind in sorted(alive | gone):
        lines.append(f"  {kind}: {alive[kind]} alive, {gone[kind]} removed")
    if rehearsal.s3_endpoint:
        lines.append(f"  S3 server: {rehearsal.s3_endpoint}")
    return "\n".join(lines)


def _require(state: Path) -> Rehearsal:
    rehearsal = Rehearsal.load(state)
    if rehearsal is None:
        raise RehearsalError(f"no rehearsal cluster in {state}: start one with `up`")
    return rehearsal


def command(args: argparse.Namespace) -> int:
    if args.command == "up":
        t0 = time.monotonic()
        rehearsal = up(args.state, s3=args.s3, idle_timeout_minutes=args.idle_timeout_minutes)
        print(f"up in {time.monotonic() - t0:.1f} s; state, logs and token in {args.state}")
        print(_status(rehearsal))
        print(f'use it from a shell: eval "$(python -m infra.rehearsal env --state {args.state})"')
    elif args.command == "down":
        killed = down(args.state, keep=args.keep_logs)
        print(f"rehearsal in {args.state} stopped ({killed} leftover process(es) killed)")
    elif args.command == "status":
        print(_status(_require(args.state)))
    elif args.command == "env":
        env = _require(args.state).cli_env()
        print("\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items()))
    elif args.command == "serve":
        _serve(_require(args.state), args.model, args.port)
    else:
        print(json.dumps(runtime_env()))
    return 0


def _serve(rehearsal: Rehearsal, model: str | None, port: int) -> None:
    from infra.rehearsal import serving

    if not model:
        raise RehearsalError("serve needs --model: a registry entry such as s3://bucket/registry/x")
    config = serving.serve_config(model, port, runtime_env()["env_vars"])
    serving.deploy(rehearsal, config)
    low, high = serving.replica_bounds(config)
    url = f"http://127.0.0.1:{port}"
    print(f"deploying {model}: {low}-{high} replicas, one accel node each, behind {url}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return command(args)
    except RehearsalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
