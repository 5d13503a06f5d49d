"""Chaos for the model registry and checkpoints: kills, S3 outages, promotion under load.

    python -m bench.chaos --json bench/results/chaos.json [--kills 24] [--quick]

- ``registration_kills`` / ``broken_aliases``: a child process registers new versions in a loop
  (alias ``production`` moved each time) and is SIGKILLed at a random moment, half of the tries on
  a local registry and half on S3 (moto on 127.0.0.1); after each kill the alias must resolve to a
  complete version whose every digest verifies.
- ``s3_outage_checkpoints_lost``: a Ray Train run writes its checkpoints to S3 while the S3 server
  is stopped for 30 s and restarted on the same port; every checkpoint must be there and load.
- ``promotion_failed_requests`` / ``mixed_version_answers``: a live Serve deployment of 2
  replicas pinned to ``@production``, 2 clients sending throughout, a promotion then a rollback,
  each taking effect 3 s after it is written (``effective_at``): no request may fail, and no
  answer may come from another version than the one the pin named for the whole request. The
  same run with changes that take effect at once (each replica switches when its poll sees the
  change, as before activation times) is measured beside it: ``details.promotion_at_once``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import command_line, machine_facts, print_header, write_json

NAME = "chaos"
ROOT = Path(__file__).resolve().parents[1]
PAD_MB = 8  # extra bytes per version, so that a kill often lands mid-write


class Moto:
    """A moto S3 server on 127.0.0.1 that can be stopped and started again on the same port (its
    buckets live in this process and outlive a restart)."""

    def __init__(self) -> None:
        self.server: Any = None
        self.port = 0
        self.start()

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.port = self.server.get_host_and_port()[1]

    def stop(self) -> None:
        self.server.stop()

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """S3 unreachable inside the block, back on the same port after it."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def outage(self, seconds: float, when: Any = None) -> threading.Thread:
        """In the background: once ``when()`` is true, stop S3; start it ``seconds`` later."""

        def run() -> None:
            while when is not None and not when():
                time.sleep(0.2)
            with self.down():
                time.sleep(seconds)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread


def s3_env(port: int) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1"}  # fmt: skip


def make_bucket(port: int) -> str:
    import uuid

    import boto3

    name = f"chaos-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}").create_bucket(Bucket=name)
    return f"s3://{name}"


def staged_version(folder: Path, seed: int = 1) -> Path:
    """A real tiny generator checkpoint plus ``PAD_MB`` of padding, ready to register."""
    import torch

    from hmss_ray.config import ExperimentConfig
    from hmss_ray.models import checkpoint as ckpt
    from hmss_ray.models.factory import build_generator
    from tests.small import TINY_MODEL

    torch.manual_seed(seed)
    cfg = ExperimentConfig().replace(TINY_MODEL)
    ckpt.save_checkpoint(folder, generator=build_generator(cfg), cfg=cfg)
    (folder / "padding.bin").write_bytes(os.urandom(PAD_MB * 2**20))
    return folder


def child_register(staged: str, registry: str, name: str) -> None:
    """Register new versions of ``staged`` forever (a new nonce each time); killed from outside."""
    from hmss_ray.registry import store

    while True:
        (Path(staged) / "nonce.txt").write_text(os.urandom(8).hex())
        store.register(Path(staged), registry, name, aliases=("production",))


def alias_is_sound(registry: str, name: str) -> bool:
    from hmss_ray.registry import load, store

    try:
        found = load.resolve(f"{registry}/{name}")
        store.verify(found.uri)
        return True
    except Exception as exc:  # any failure is a broken alias
        print(f"  broken alias: {exc}")
        return False


def registration_kills(registry: str, kills: int, env: dict[str, str], seed: int = 0) -> dict:
    """``kills`` SIGKILLs of a registering child; returns kills, broken aliases, versions made."""
    from hmss_ray.registry import store

    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="hmss-chaos-"))
    staged = staged_version(work / "staged")
    store.register(staged, registry, "chaos", aliases=("production",))  # a first good version
    broken = 0
    for _ in range(kills):
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.chaos", "--child-register", str(staged), registry,
             "chaos"], cwd=ROOT, env={**os.environ, **env},
        )  # fmt: skip
        time.sleep(rng.uniform(0.8, 2.5))  # the child needs ~1 s to start registering
        child.send_signal(signal.SIGKILL)
        child.wait()
        broken += 0 if alias_is_sound(registry, "chaos") else 1
    made = len(store.versions(registry, "chaos"))
    shutil.rmtree(work, ignore_errors=True)
    return {"kills": kills, "broken_aliases": broken, "versions": made}


def registration_during_outage(registry: str, s3: Moto) -> dict:
    """Register while S3 is down: it must fail, and the previous version stays served."""
    from hmss_ray.registry import load, store

    work = Path(tempfile.mkdtemp(prefix="hmss-chaos-"))
    first = store.register(staged_version(work / "a", 1), registry, "outage",
                           aliases=("production",))  # fmt: skip
    second = staged_version(work / "b", 2)
    failed = False
    with s3.down():
        try:
            store.register(second, registry, "outage", aliases=("production",))
        except OSError:
            failed = True
    found = load.resolve(f"{registry}/outage")
    store.verify(found.uri)
    shutil.rmtree(work, ignore_errors=True)
    return {"registration_failed": failed, "previous_still_served": found.version == first.id}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", default=f"outputs/bench/{NAME}.json", help="where figures go")
    parser.add_argument("--kills", type=int, default=24, help="SIGKILLs, half local, half S3")
    parser.add_argument("--only", choices=["train"], help="only the checkpoint outage run")
    parser.add_argument("--skip-train", action="store_true", help="no checkpoint outage run")
    parser.add_argument("--skip-serve", action="store_true", help="no promotion under Serve")
    parser.add_argument("--child-register", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_register:
        child_register(*args.child_register)
        return 0
    from bench import chaos_live

    facts = machine_facts()
    if args.only == "train":
        return _only_train(args, facts)
    print_header("registry chaos: kills, S3 outages, promotion under Serve", facts)
    os.environ.setdefault("HMSS_RAY_CACHE", tempfile.mkdtemp(prefix="hmss-chaos-cache-"))
    local = registration_kills(tempfile.mkdtemp(prefix="hmss-chaos-reg-"), args.kills // 2, {})
    print(f"local registry: {local}")
    s3 = Moto()
    try:
        env = s3_env(s3.port)
        os.environ.update(env)
        remote = registration_kills(make_bucket(s3.port) + "/registry",
                                    args.kills - args.kills // 2, env)  # fmt: skip
        print(f"S3 registry: {remote}")
        os.environ.update(HMSS_S3_ATTEMPTS="2", HMSS_S3_BACKOFF_S="0.2")
        outage = registration_during_outage(make_bucket(s3.port) + "/registry", s3)
        os.environ.pop("HMSS_S3_ATTEMPTS"), os.environ.pop("HMSS_S3_BACKOFF_S")
        print(f"S3 down during a registration: {outage}")
        lost = None if args.skip_train else chaos_live.checkpoint_outage(s3, make_bucket(s3.port))
        print(f"S3 down 30 s during checkpoint uploads: {lost}")
    finally:
        s3.stop()
    serve = at_once = None
    if not args.skip_serve:
        serve = chaos_live.promotion_under_serve()
        print(f"promotion and rollback under Serve: {serve}")
        at_once = chaos_live.promotion_under_serve(activate_in_s=0.0)
        print(f"the same, each change at once: {at_once}")
    payload = {
        "registration_kills": local["kills"] + remote["kills"],
        "broken_aliases": local["broken_aliases"] + remote["broken_aliases"],
        "s3_outage_checkpoints_lost": None if lost is None else lost["lost"],
        "promotion_failed_requests": None if serve is None else serve["failed"],
        "mixed_version_answers": None if serve is None else serve["mixed"],
        "details": {"local": local, "s3": remote, "registration_outage": outage,
                    "checkpoint_outage": lost, "promotion": serve,
                    "promotion_at_once": at_once},
        "command": command_line(), "date": facts["date"], "machine": facts,
    }  # fmt: skip
    print(f"\nwrote {write_json(args.json, payload)}")
    return 0


def _only_train(args: argparse.Namespace, facts: dict) -> int:
    from bench import chaos_live

    s3 = Moto()
    try:
        os.environ.update(s3_env(s3.port))
        lost = chaos_live.checkpoint_outage(s3, make_bucket(s3.port))
    finally:
        s3.stop()
    print(f"S3 down 30 s during checkpoint uploads: {lost}")
    payload = {"s3_outage_checkpoints_lost": lost["lost"], "details": {"checkpoint_outage": lost},
               "command": command_line(), "date": facts["date"], "machine": facts}  # fmt: skip
    write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
