"""The model registry on real files: immutable verified versions, aliases, the change log, the
command, old flat entries; tampering is refused with one line."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from hmss_ray.config import ExperimentConfig
from hmss_ray.inference.synthesizer import Synthesizer
from hmss_ray.models import checkpoint as ckpt
from hmss_ray.models.factory import build_generator
from hmss_ray.registry import __main__ as registry_cli
from hmss_ray.registry import load, ops, store
from hmss_ray.registry.live import NotReady
from hmss_ray.registry.names import RegistryError, split_uri
from tests.small import TINY_MODEL


def tiny_checkpoint(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    cfg = ExperimentConfig().replace(TINY_MODEL)
    return ckpt.save_checkpoint(folder, generator=build_generator(cfg), cfg=cfg,
                                metrics={"score": 0.1 * seed})  # fmt: skip


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two tiny checkpoints with different weights."""
    root = tmp_path_factory.mktemp("ckpts")
    return [tiny_checkpoint(root / f"c{i}", seed=i + 1) for i in range(2)]


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HMSS_RAY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HMSS_REGISTRY_USER", "tester@site")
    return tmp_path / "cache"


def publish(checkpoint: Path, registry: Path, name: str = "brain", **kw) -> str:
    return ckpt.write_registry_entry(checkpoint, str(registry), name, metrics={"mae_hu": 70.0},
                                     winner={"trial_id": "t0"}, **kw)  # fmt: skip


def cli(*argv: str) -> int:
    return registry_cli.main(list(argv))


@pytest.mark.parametrize("bad", ["../registry", "a/b", ".hidden", "", "a..b", "x y", "é"])
def test_an_entry_name_that_could_escape_the_registry_is_refused(bad, checkpoints, tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "keep.txt").write_text("mine")
    with pytest.raises(RegistryError, match="bad registry entry name"):
        publish(checkpoints[0], tmp_path / "registry", bad)
    assert (tmp_path / "precious" / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "registry").exists()


def test_a_version_is_complete_immutable_and_the_first_one_serves(checkpoints, tmp_path):
    registry = tmp_path / "registry"
    uri = publish(checkpoints[0], registry)
    ref = split_uri(uri)
    folder = registry / "brain" / "versions" / ref.ref
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == set(ckpt.REGISTRY_FILES)
    weights = manifest["files"][ckpt.GENERATOR_FILE]["sha256"]
    assert weights == store.sha256_file(checkpoints[0] / ckpt.GENERATOR_FILE)
    assert manifest["digest"].startswith(ref.ref)
    assert store.aliases(str(registry), "brain") == {"latest": ref.ref, "production": ref.ref}
    card = (folder / "MODEL_CARD.md").read_text()
    assert "not a medical device" in card and "mae_hu = 70" in card and "HU range" in card
    assert not list((registry / "brain" / "versions").glob(".staging-*"))
    # the same bytes again: the same version, nothing rewritten
    assert publish(checkpoints[0], registry) == uri


def test_a_new_winner_moves_latest_not_production_and_the_log_says_who(checkpoints, tmp_path):
    registry = tmp_path / "registry"
    first = split_uri(publish(checkpoints[0], registry)).ref
    second = split_uri(publish(checkpoints[1], registry)).ref
    assert first != second
    assert store.aliases(str(registry), "brain") == {"latest": second, "production": first}
    assert Synthesizer.from_uri(str(registry / "brain"), device="cpu").info.version == first
    info = Synthesizer.from_uri(f"{registry}/brain@latest", device="cpu").info
    assert info.version == second and info.registry["alias"] == "latest"
    assert "Model card: brain" in info.card
    changes = store.read_log(str(registry), "brain")
    moved = [c for c in changes if c["action"] == "alias" and c["alias"] == "latest"]
    assert [(c["from"], c["to"]) for c in moved] == [(None, first), (first, second)]
    assert all(c["who"] == "tester@site" and c["when"].endswith("Z") for c in changes)


def test_promote_needs_a_passing_report_of_that_version_and_rollback_goes_back(
    checkpoints, tmp_path, capsys
):
    registry = tmp_path / "registry"
    first = split_uri(publish(checkpoints[0], registry)).ref
    second = split_uri(publish(checkpoints[1], registry)).ref
    report = tmp_path / "eval"
    report.mkdir()
    (report / "summary.csv").write_text("group,patients,mae_mean,ssim_mean\nall,3,92.5,0.81\n")
    (report / "report.md").write_text(f"model: {registry}/brain@{second}\n")
    entry = f"{registry}/brain"
    assert cli("promote", f"{entry}@latest", "--require-report", str(report), "--require",
               "mae<=80") == 2  # fmt: skip
    assert "fails mae<=80" in capsys.readouterr().err
    assert store.get_alias(str(registry), "brain", "production") == first
    (report / "report.md").write_text(f"model: {registry}/brain@{first}\n")
    assert cli("promote", f"{entry}@latest", "--require-report", str(report)) == 2
    assert "not an evaluation of version" in capsys.readouterr().err
    (report / "report.md").write_text(f"model: {registry}/brain@{second}\n")
    assert cli("promote", f"{entry}@latest", "--require-report", str(report), "--require",
               "mae<=95", "--require", "ssim>=0.8", "--note", "ticket 42") == 0  # fmt: skip
    assert store.get_alias(str(registry), "brain", "production") == second
    assert cli("rollback", entry) == 0
    assert store.get_alias(str(registry), "brain", "production") == first
    assert f"{second} -> {first}" in capsys.readouterr().out
    notes = [c.get("note") for c in store.read_log(str(registry), "brain")]
    assert "ticket 42" in notes and f"rollback from {second}" in notes


def test_a_tampered_weight_is_refused_in_one_line(checkpoints, tmp_path, capsys):
    registry = tmp_path / "registry"
    version = split_uri(publish(checkpoints[0], registry)).ref
    weights = registry / "brain" / "versions" / version / ckpt.GENERATOR_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(store.IntegrityError, match=r"generator\.safetensors has sha256"):
        Synthesizer.from_uri(str(registry / "brain"), device="cpu")
    assert cli("verify", str(registry / "brain")) == 1
    assert "FAILED" in capsys.readouterr().out
    import nibabel as nib
    import numpy as np

    from hmss_ray.inference import __main__ as inference_cli

    mr = tmp_path / "mr.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((16, 16, 16), np.float32), np.eye(4)), mr)
    code = inference_cli.main(["--model", str(registry / "brain"), "-i", str(mr), "-o",
                               str(tmp_path / "sct.nii.gz"), "--device", "cpu"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "refused" in err[0]


def test_uri_forms_and_a_missing_alias_names_the_known_ones(checkpoints, tmp_path):
    registry = tmp_path / "registry"
    version = split_uri(publish(checkpoints[0], registry)).ref
    folder = registry / "brain" / "versions" / version
    for uri in (f"{registry}/brain", f"{registry}/brain@production", f"{registry}/brain@{version}",
                str(folder)):  # fmt: skip
        assert load.resolve(uri).version == version
    with pytest.raises(RegistryError, match=r"no alias .staging. .*latest, production"):
        load.resolve(f"{registry}/brain@staging")
    assert load.resolve(str(checkpoints[0])) is None  # a plain checkpoint loads as before


def test_export_and_import_move_the_same_bytes_between_sites(checkpoints, tmp_path):
    registry, other = tmp_path / "registry", tmp_path / "site-b"
    version = split_uri(publish(checkpoints[0], registry)).ref
    archive = tmp_path / "brain.tar.gz"
    assert cli("export", f"{registry}/brain", "--out", str(archive)) == 0
    assert cli("import", str(archive), "--registry", str(other), "--alias", "staging") == 0
    assert store.aliases(str(other), "brain") == {"staging": version}
    assert cli("verify", f"{other}/brain@staging") == 0
    assert cli("import", str(tmp_path / "brain.tar.gz"), "--registry", str(other), "--name",
               "../escape") == 2  # fmt: skip


def test_an_old_flat_entry_still_loads_and_register_moves_it_into_a_version(checkpoints, tmp_path):
    flat = tmp_path / "registry" / "old"
    flat.mkdir(parents=True)
    for name in ckpt.GENERATOR_FILES:
        shutil.copy2(checkpoints[0] / name, flat / name)
    (flat / "winner.json").write_text('{"trial_id": "t9"}')
    (flat / "metrics.json").write_text('{"ssim": 0.7}')
    assert Synthesizer.from_uri(str(flat), device="cpu").info.name == "old"
    assert cli("register", str(flat), "--registry", str(tmp_path / "registry"), "--name",
               "brain", "--alias", "production") == 0  # fmt: skip
    info = Synthesizer.from_uri(str(tmp_path / "registry" / "brain"), device="cpu").info
    assert info.registry is not None and info.metrics == {"score": pytest.approx(0.1)}


def test_a_killed_local_write_leaves_no_version_and_is_cleaned(checkpoints, tmp_path):
    registry = tmp_path / "registry"
    versions = registry / "brain" / "versions"
    versions.mkdir(parents=True)
    stale = versions / ".staging-0123456789abcdef-x"
    stale.mkdir()
    (stale / ckpt.GENERATOR_FILE).write_bytes(b"half")
    import os

    os.utime(stale, (0, 0))
    assert store.versions(str(registry), "brain") == []
    publish(checkpoints[0], registry)
    assert not stale.exists()
    assert ops.resolve_ref(str(registry), "brain", "production")


def test_a_replica_follows_its_alias_and_keeps_serving_when_the_new_version_is_bad(
    checkpoints, tmp_path
):
    from hmss_ray.registry.live import LiveModel

    registry = tmp_path / "registry"
    first = split_uri(publish(checkpoints[0], registry)).ref
    second = split_uri(publish(checkpoints[1], registry)).ref
    swapped = []
    live = LiveModel(f"{registry}/brain", loader, swapped.append, poll_s=3600)
    pinned = LiveModel(f"{registry}/brain@{first}", loader, None)
    assert live.follows and not pinned.follows and live.current.info.version == first
    assert live.check() is False  # nothing moved
    store.set_alias(str(registry), "brain", "production", second)
    weights = registry / "brain" / "versions" / second / ckpt.GENERATOR_FILE
    good = weights.read_bytes()
    weights.write_bytes(good[:-1] + b"\0")
    assert live.check() is False and live.current.info.version == first  # refused: kept serving
    weights.write_bytes(good)
    assert live.check() is True and live.current.info.version == second
    assert [s.info.version for s in swapped] == [second]
    live.stop()


def loader(uri: str, at: float | None) -> Synthesizer:
    return Synthesizer.from_uri(uri, device="cpu", at=at)


def test_a_scheduled_promotion_names_the_old_version_until_its_time_then_the_new(
    checkpoints, tmp_path
):
    from hmss_ray.registry.live import LiveModel

    registry = tmp_path / "registry"
    first = split_uri(publish(checkpoints[0], registry)).ref
    second = split_uri(publish(checkpoints[1], registry)).ref
    storage_down = []

    def flaky(uri: str, at: float | None) -> Synthesizer:
        if storage_down:
            raise OSError("S3 unreachable")
        return loader(uri, at)

    live = LiveModel(f"{registry}/brain", flaky, poll_s=3600, wait_s=0.2)
    ops.promote(str(registry), "brain", second, "production", activate_in_s=4.0)
    due = store.read_alias(str(registry), "brain", "production").effective_at
    assert store.get_alias(str(registry), "brain", "production") == second
    # every reader names the old version until the activation time, the new one from then on
    assert load.resolve(f"{registry}/brain").version == first
    assert load.resolve(f"{registry}/brain", at=due).version == second
    late = LiveModel(f"{registry}/brain", loader, poll_s=3600)  # a replica started meanwhile
    assert late.current.info.version == first
    assert live.model_now().info.version == first
    assert live.check() is True  # pre-loaded, not yet serving
    assert live.model_now().info.version == first and live.version == first
    while time.time() < due:
        time.sleep(0.05)
    assert live.model_now().info.version == second
    while late.model_now() is None or late.version != second:  # its watcher loaded it at start
        assert time.time() < due + 10
        time.sleep(0.05)
    assert load.resolve(f"{registry}/brain").version == second
    # a due version that this replica could not load: requests wait, then a clear refusal
    storage_down.append(True)
    ops.rollback(str(registry), "brain", "production", activate_in_s=1.0)
    assert live.check() is False and live.model_now().info.version == second  # not yet due
    time.sleep(1.1)
    assert live.model_now() is None
    with pytest.raises(NotReady, match=f"{first} is still loading"):
        asyncio.run(live.model_at_arrival())
    storage_down.clear()
    assert live.check() is True and live.model_now().info.version == first
    # a pointer without an activation time (an older registry) moves at once
    store.set_alias(str(registry), "brain", "production", second)
    assert "effective_at" not in json.loads(
        (registry / "brain" / "aliases" / "production").read_text()
    )
    assert load.resolve(f"{registry}/brain").version == second
    for each in (live, late):
        each.stop()


@pytest.mark.integration
def test_s3_errors_are_retried_a_missing_object_is_not(tmp_path, monkeypatch):
    from bench.chaos import Moto, make_bucket, s3_env
    from hmss_ray import storage

    s3 = Moto()
    try:
        for key, value in s3_env(s3.port).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("HMSS_S3_ATTEMPTS", "3")
        monkeypatch.setenv("HMSS_S3_BACKOFF_S", "0.2")
        bucket = make_bucket(s3.port)
        t0 = time.monotonic()
        with pytest.raises(FileNotFoundError):
            storage.read_bytes(f"{bucket}/missing")
        assert time.monotonic() - t0 < 2.0
        storage.write_text(f"{bucket}/x", "kept")
        outage = s3.outage(1.5)  # back on the same port while the reads are retried
        time.sleep(0.3)
        assert storage.read_text(f"{bucket}/x") == "kept"
        outage.join()
        with s3.down(), pytest.raises(OSError, match="S3 failed 3 times"):
            storage.read_text(f"{bucket}/x")
    finally:
        s3.stop()


def test_without_auto_promotion_the_first_version_waits_for_a_promotion(checkpoints, tmp_path):
    registry = tmp_path / "registry"
    first = split_uri(publish(checkpoints[0], registry, auto_promote=False)).ref
    assert store.aliases(str(registry), "brain") == {"latest": first}
    with pytest.raises(RegistryError, match="no alias 'production'"):
        Synthesizer.from_uri(str(registry / "brain"), device="cpu")
    assert cli("promote", f"{registry}/brain@latest", "--activate-in", "0") == 0
    assert Synthesizer.from_uri(str(registry / "brain"), device="cpu").info.version == first


def test_a_rollback_before_the_activation_time_cancels_the_promotion(checkpoints, tmp_path):
    registry = tmp_path / "registry"
    first = split_uri(publish(checkpoints[0], registry)).ref
    second = split_uri(publish(checkpoints[1], registry)).ref
    assert cli("promote", f"{registry}/brain@{second}", "--activate-in", "60") == 0
    pointer = store.read_alias(str(registry), "brain", "production")
    assert pointer.scheduled() and (pointer.previous, pointer.version) == (first, second)
    assert cli("rollback", f"{registry}/brain") == 0
    pointer = store.read_alias(str(registry), "brain", "production")
    assert not pointer.scheduled() and pointer.version == first and pointer.effective_at is None
    assert load.resolve(f"{registry}/brain", at=time.time() + 3600).version == first
