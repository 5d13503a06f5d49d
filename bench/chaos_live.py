"""The two chaos runs that need Ray: promotion under a live Serve deployment, and an S3 outage
during a training run's checkpoint uploads (used by :mod:`bench.chaos` and the tests)."""

from __future__ import annotations

import gzip
import itertools
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

POLL_S = 0.5  # how often the replicas re-read their alias in these runs
ACTIVATE_S = 3.0  # a change takes effect this long after it is written: > 2 x POLL_S + a load
REPLICA_CONFIG = {"min_replicas": 2, "max_replicas": 2, "num_cpus": 0.5}  # 2 on a 2-CPU Ray
TINY_SERVE = {"data.spacing.brain": [8.0, 8.0, 8.0]}  # a 16-voxel MR fits the 32 px canvas


def two_versions(registry: Path) -> tuple[str, str]:
    """An entry ``tiny`` with two versions of a tiny generator; ``production`` names the first."""
    import torch

    from hmss_ray.config import ExperimentConfig
    from hmss_ray.models import checkpoint as ckpt
    from hmss_ray.models.factory import build_generator
    from hmss_ray.registry.names import split_uri
    from tests.small import TINY_MODEL

    cfg = ExperimentConfig().replace({**TINY_MODEL, **TINY_SERVE})
    made = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        folder = ckpt.save_checkpoint(registry.parent / f"ckpt{seed}",
                                      generator=build_generator(cfg), cfg=cfg)  # fmt: skip
        uri = ckpt.write_registry_entry(folder, str(registry), "tiny", metrics={"ssim": 0.5},
                                        winner={"trial_id": f"t{seed}"})  # fmt: skip
        made.append(split_uri(uri).ref)
    return made[0], made[1]


def mr_bytes() -> bytes:
    import nibabel as nib

    mr = np.zeros((16, 16, 16), np.float32)
    mr[3:13, 3:13, 3:13] = 100.0
    return gzip.compress(nib.Nifti1Image(mr, np.diag([8.0, 8.0, 8.0, 1.0])).to_bytes())


class Client(threading.Thread):
    """Sends the same MR over and over; records (sent, received, HTTP status or error,
    X-Model-Version), times as seconds since the epoch."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.body = url, mr_bytes()
        self.answers: list[tuple[float, float, Any, str | None]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        import httpx

        with httpx.Client(timeout=60) as http:
            while not self.stopped.is_set():
                sent = time.time()
                try:
                    r = http.post(f"{self.url}/v1/synthesize", content=self.body,
                                  headers={"Content-Type": "application/gzip"})  # fmt: skip
                    answer = (r.status_code, r.headers.get("x-model-version"))
                except Exception as exc:  # a failed request, counted
                    answer = (type(exc).__name__, None)
                self.answers.append((sent, time.time(), *answer))

    def wait_for(self, version: str, after: float = 0.0, then: int = 3,
                 timeout: float = 120.0) -> float:  # fmt: skip
        """Seconds from ``after`` (default: now) until ``version`` answered a request sent
        then or later; then ``then`` more answers."""
        after = after or time.time()
        while not any(v == version and sent >= after for sent, _, _, v in self.answers):
            if time.time() - after > timeout:
                raise TimeoutError(f"version {version} never answered")
            time.sleep(0.05)
        seen = min(got for sent, got, _, v in self.answers if v == version and sent >= after)
        mark = len(self.answers)
        while len(self.answers) < mark + then:
            time.sleep(0.05)
        return seen - after


def pinned_at(changes: list[tuple[float, str]], when: float) -> str:
    """The version the pin names at ``when``: the last change due by then."""
    return [version for due, version in changes if due <= when][-1]


def wrong_answers(answers: list[tuple[float, float, Any, str | None]],
                  changes: list[tuple[float, str]]) -> int:  # fmt: skip
    """Answers made by another version than the one the pin named for the whole request (a
    request sent before and answered after a switch may be either)."""
    wrong = 0
    for sent, got, _, version in answers:
        before, after = pinned_at(changes, sent), pinned_at(changes, got)
        wrong += before == after and version is not None and version != before
    return wrong


def promotion_under_serve(
    workdir: Path | None = None, activate_in_s: float = ACTIVATE_S, clients: int = 2
) -> dict[str, Any]:
    """Promote then roll back ``production`` under a live deployment of ``REPLICAS`` replicas
    with ``clients`` clients sending throughout; each change takes effect ``activate_in_s``
    after it is written (0: each replica switches when it has loaded the version)."""

    from hmss_ray.cluster import free_port, init_ray
    from hmss_ray.registry import ops, store
    from hmss_ray.serving.app import deploy, shutdown

    registry = Path(workdir or tempfile.mkdtemp(prefix="hmss-chaos-serve-")) / "registry"
    old, new = two_versions(registry)
    init_ray()
    url = deploy(f"{registry}/tiny", port=free_port(), name="chaos", route_prefix="/chaos",
                 env={"HMSS_REGISTRY_POLL_S": str(POLL_S)}, device="cpu",
                 serve_config=REPLICA_CONFIG)  # fmt: skip
    import httpx

    shown = httpx.get(f"{url}/v1/model", timeout=30).json()  # the version and its model card
    senders = [Client(url) for _ in range(clients)]
    changes = [(0.0, old)]

    def change(version: str) -> float:
        pointer = store.read_alias(str(registry), "tiny", "production")
        due = pointer.effective_at or time.time()  # no activation time: as soon as written
        changes.append((due, version))
        return due

    for each in senders:
        each.start()
    try:
        senders[0].wait_for(old)
        ops.promote(str(registry), "tiny", new, "production", note="chaos promotion",
                    activate_in_s=activate_in_s)  # fmt: skip
        promote_s = senders[0].wait_for(new, after=change(new))
        ops.rollback(str(registry), "tiny", "production", note="chaos rollback",
                     activate_in_s=activate_in_s)  # fmt: skip
        rollback_s = senders[0].wait_for(old, after=change(old))
    finally:
        for each in senders:
            each.stopped.set()
            each.join(timeout=120)
        # Serve keeps the port it first started on: shut it down, so that the next deploy()
        # (a test module, a bench) starts Serve on the port it asks for
        shutdown()
    answers = sorted(a for each in senders for a in each.answers)
    versions = [v for _, _, _, v in answers]
    return {
        "replicas": REPLICA_CONFIG["min_replicas"], "clients": clients,
        "activate_in_s": activate_in_s, "poll_s": POLL_S, "answers": len(answers),
        "model_info": {"version": shown.get("version"), "registry": shown.get("registry"),
                       "card_shown": "not a medical device" in (shown.get("card") or "")},
        "failed": sum(1 for _, _, status, _ in answers if status != 200),
        "mixed": wrong_answers(answers, changes),
        # in the order the requests were sent: version changes beyond old -> new -> old
        "interleaved": max(0, sum(a != b for a, b in itertools.pairwise(versions)) - 2),
        "order": _runs(versions),
        "old": old, "new": new,
        # after its activation time: when the first request sent from then on was answered
        "promotion_seen_s": round(promote_s, 2), "rollback_seen_s": round(rollback_s, 2),
    }  # fmt: skip


def _runs(versions: list[str | None]) -> list[str]:
    """``["<version> x<n>", ...]``: the answers' versions as consecutive runs."""
    out: list[list[Any]] = []
    for v in versions:
        if out and out[-1][0] == v:
            out[-1][1] += 1
        else:
            out.append([v, 1])
    return [f"{v} x{n}" for v, n in out]


def checkpoint_outage(s3: Any, bucket: str, outage_s: float = 30.0) -> dict[str, Any]:
    """A Ray Train run checkpointing to ``bucket`` while S3 is down ``outage_s`` seconds (from
    its first checkpoint on); every checkpoint the schedule names must be there and load."""
    from hmss_ray import prepare, storage
    from hmss_ray.cluster import init_ray
    from hmss_ray.data.phantom import COARSE_SHAPE, write_dataset
    from hmss_ray.models import checkpoint as ckpt
    from hmss_ray.train import schedule
    from hmss_ray.train.trainer import build_trainer
    from tests.integration.conftest import ROOT, tiny_config

    work = Path(tempfile.mkdtemp(prefix="hmss-chaos-train-"))
    write_dataset(work / "phantom", cases=9, regions=["brain"], shape=COARSE_SHAPE,
                  progress=False)  # fmt: skip
    demo = str(ROOT / "configs" / "demo.yaml")
    assert prepare.main(["--data", str(work / "phantom"), "--out", str(work / "shards"),
                         "--config", demo]) == 0  # fmt: skip
    cfg = tiny_config("train.stage_epochs=[3, 0, 3]", "train.keep_checkpoints=20")
    run_uri = f"{bucket}/runs/outage"
    init_ray()

    def first_checkpoint() -> bool:
        return any(n.startswith("epoch_") for n in storage.listdir(run_uri))

    t0 = time.monotonic()
    outage = s3.outage(outage_s, when=first_checkpoint)
    result = build_trainer(cfg, str(work / "shards"), f"{bucket}/runs", "outage").fit()
    outage.join()
    expected = [
        e for e in range(schedule.total_epochs(cfg)) if schedule.is_checkpoint_epoch(cfg, e)
    ]
    present = []
    for epoch in expected:
        uri = f"{run_uri}/epoch_{epoch:04d}"
        try:
            ckpt.load_generator(ckpt.localize(uri, files=ckpt.GENERATOR_FILES))
            present.append(epoch)
        except Exception as exc:  # missing or unreadable: lost
            print(f"  checkpoint of epoch {epoch}: {exc}")
    return {
        "expected": len(expected), "present": len(present),
        "lost": len(expected) - len(present), "outage_s": outage_s,
        "run_error": None if result.error is None else str(result.error)[:300],
        "wall_s": round(time.monotonic() - t0, 1),
    }  # fmt: skip
