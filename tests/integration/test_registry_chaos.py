"""The registry under failures, for real: SIGKILLs mid-registration, S3 (moto on 127.0.0.1)
stopped during a registration and a training run's checkpoint uploads, and a promotion and a
rollback under a live Serve deployment with a client sending throughout."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bench import chaos, chaos_live
from hmss_ray import storage
from hmss_ray.inference.synthesizer import Synthesizer
from hmss_ray.registry import load, store

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HMSS_RAY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"


def test_twenty_kills_mid_registration_never_leave_a_broken_alias(tmp_path, cache):
    result = chaos.registration_kills(str(tmp_path / "registry"), 20, {}, seed=1)
    assert result["kills"] == 20 and result["broken_aliases"] == 0
    assert result["versions"] > 2  # the children did register between the kills


def test_s3_down_during_registration_keeps_the_previous_version_served(tmp_path, cache,
                                                                      monkeypatch):  # fmt: skip
    s3 = chaos.Moto()
    try:
        for key, value in chaos.s3_env(s3.port).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("HMSS_S3_ATTEMPTS", "2")
        monkeypatch.setenv("HMSS_S3_BACKOFF_S", "0.1")
        registry = chaos.make_bucket(s3.port) + "/registry"
        result = chaos.registration_during_outage(registry, s3)
        assert result == {"registration_failed": True, "previous_still_served": True}
        synth = Synthesizer.from_uri(f"{registry}/outage", device="cpu")
        # the remote version was cached privately, by version and digest
        assert stat.S_IMODE(cache.stat().st_mode) == 0o700
        found = load.resolve(f"{registry}/outage")
        assert (cache / "outage" / f"{found.version}-{found.digest[:16]}").is_dir()
        assert synth.info.version == found.version
        # a changed weight on S3 is refused, cached copy or not
        weights = storage.join(found.uri, "generator.safetensors")
        storage.write_bytes(weights, storage.read_bytes(weights)[:-1] + b"\0")
        with pytest.raises(store.IntegrityError, match="refused"):
            store.verify(found.uri)
        for folder in cache.glob("outage/*"):  # a cache copy that no longer matches is fetched
            (folder / "generator.safetensors").write_bytes(b"changed")
        with pytest.raises(store.IntegrityError, match="refused"):
            Synthesizer.from_uri(f"{registry}/outage", device="cpu")
    finally:
        s3.stop()


def test_promotion_and_rollback_switch_every_replica_at_once_and_lose_no_request(
    ray_session, tmp_path, cache
):
    """2 replicas, 2 clients over HTTP: every answer before a change's activation time is the
    old version, every answer after it the new one, none failed."""
    result = chaos_live.promotion_under_serve(tmp_path)
    assert result["replicas"] == 2 and result["answers"] > 20, result
    assert result["failed"] == 0, result
    assert result["mixed"] == 0, result
    info = result["model_info"]  # GET /v1/model: the pinned alias's version, its card
    assert info["version"] == result["old"] and info["card_shown"], info
    assert info["registry"]["alias"] == "production", info
    order = [run.split()[0] for run in result["order"]]
    assert order == [result["old"], result["new"], result["old"]], result


@pytest.mark.slow
@pytest.mark.own_ray  # its own Ray, in a subprocess: never beside the session's
def test_s3_down_30_s_during_checkpoint_uploads_loses_no_checkpoint(tmp_path):
    """In its own process: its Ray must see this test's S3 server, stopped and restarted."""
    out = tmp_path / "chaos.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--only", "train", "--json", str(out)],
        cwd=ROOT, env={**os.environ, "HMSS_RAY_CACHE": str(tmp_path / "cache")},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    lost = json.loads(out.read_text())["details"]["checkpoint_outage"]
    assert lost["lost"] == 0 and lost["present"] == lost["expected"] > 2, lost


def test_a_replica_started_during_an_s3_outage_serves_once_s3_is_back(ray_session, tmp_path,
                                                                      monkeypatch):  # fmt: skip
    """The replica's first load meets S3 stopped; S3 starts again 4 s later on the same port:
    the load's retries carry it through and the endpoint answers with the registry's version."""
    import threading
    import time

    import httpx

    from hmss_ray.cluster import free_port
    from hmss_ray.serving.app import deploy, shutdown

    s3 = chaos.Moto()
    try:
        env = {**chaos.s3_env(s3.port), "HMSS_S3_ATTEMPTS": "8", "HMSS_S3_BACKOFF_S": "0.5",
               "HMSS_RAY_CACHE": str(tmp_path / "replica-cache")}  # fmt: skip
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        old, _ = chaos_live.two_versions(tmp_path / "local" / "registry")
        registry = chaos.make_bucket(s3.port) + "/registry"
        storage.copy_dir(str(tmp_path / "local" / "registry"), registry)
        back = threading.Thread(target=lambda: (time.sleep(4.0), s3.start()), daemon=True)
        s3.stop()
        back.start()
        t0 = time.monotonic()
        url = deploy(f"{registry}/tiny", port=free_port(), name="outage", env=env,
                     route_prefix="/outage", device="cpu")  # fmt: skip
        started_s = time.monotonic() - t0
        back.join()
        answer = httpx.post(f"{url}/v1/synthesize", content=chaos_live.mr_bytes(), timeout=60,
                            headers={"Content-Type": "application/gzip"})  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-model-version"] == old
        assert started_s >= 4.0  # it did wait for S3
    finally:
        shutdown()
        s3.stop()
