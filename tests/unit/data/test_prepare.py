"""hmss_ray.prepare end to end on phantoms: corrupt cases, idempotence, parallel parity, caps."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hmss_ray.config import ExperimentConfig, config_diff, data_hash
from hmss_ray.data import shards
from hmss_ray.data.manifest import SPLITS, read_manifest
from hmss_ray.data.phantom import CORRUPTIONS, make_case, write_dataset
from hmss_ray.data.prepare import PrepareError, prepare_dataset
from hmss_ray.prepare import EXIT_STRICT, main


def _files(root: Path) -> dict[str, tuple[str, int]]:
    """Relative path -> (sha256, mtime_ns) for every file under ``root``."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _small_sets(cfg: ExperimentConfig) -> list[str]:
    """``--set`` arguments that make the command's config equal the small test config."""
    return [arg for key, value in config_diff(cfg).items() for arg in ("--set", f"{key}={value}")]


@pytest.fixture(scope="module")
def corrupt_root(tmp_path_factory: pytest.TempPathFactory, small_shape) -> Path:
    root = tmp_path_factory.mktemp("corrupt")
    write_dataset(root, cases=3, mr_only=1, corrupt=len(CORRUPTIONS), shape=small_shape)
    return root


def test_corrupt_cases_are_listed_and_every_valid_case_is_prepared(
    corrupt_root: Path, small_cfg: ExperimentConfig, small_shape, tmp_path: Path
) -> None:
    report = prepare_dataset(corrupt_root, str(tmp_path / "out"), small_cfg)
    manifest = report.manifest
    assert manifest is not None and manifest == read_manifest(str(tmp_path / "out"))
    reasons = {s.case_id: s.reasons for s in manifest.skipped}
    assert len(reasons) == len(CORRUPTIONS)  # every bad case, each with its reason(s)
    assert all(r and all(isinstance(x, str) and x for x in r) for r in reasons.values())
    valid = {"1BA001", "1BB002", "1BC003", "1PA001", "1PC002", "1PA003", "1BA004", "1PC004"}
    assert set(manifest.cases) == valid
    assert manifest.inference_only == ["1BA004", "1PC004"]
    splits = {case: info.split for case, info in manifest.cases.items()}
    assert {splits["1BA004"], splits["1PC004"]} == {"infer"}
    assert set(splits.values()) == {"train", "val", "test", "infer"}
    # the manifest counts agree with the rows actually in the shards
    rows = {split: 0 for split in SPLITS}
    for shard in manifest.shards:
        rows[shard.split] += shard.rows
        data = (tmp_path / "out" / shard.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard.sha256
    for split, centres in manifest.counts.items():
        total = sum(c["slices"] for by_centre in centres.values() for c in by_centre.values())
        assert total == rows[split]
    assert manifest.data_hash == data_hash(small_cfg)
    assert manifest.in_channels == 1 and manifest.image_size == 32
    one = manifest.cases["1PA001"]
    assert one.split in SPLITS and one.slices == len(one.slice_indices) > 0
    assert len(one.source_grid["shape"]) == 3 and np.asarray(one.grid["affine"]).shape == (4, 4)
    rendered = make_case("1PA001", shape=small_shape).affine  # the grid the phantom was written on
    source_spacing = np.sqrt((rendered[:3, :3] ** 2).sum(axis=0))
    np.testing.assert_allclose(one.source_grid["spacing"], source_spacing, rtol=1e-5)
    assert one.grid["spacing"] == list(small_cfg.data.spacing["pelvis"])
    assert one.grid["orientation"] == "RAS" and one.source_grid["orientation"] == "LPS"
    assert one.body_voxels > 0 and one.body_voxels_lost == 0 and one.body_fraction_lost == 0
    assert manifest.geometry["orientation"] == "RAS" and manifest.geometry["max_body_loss"] == 0
    spacing = manifest.geometry["spacing"]
    assert {r: spacing[r] for r in ("brain", "pelvis")} == {
        r: list(small_cfg.data.spacing[r]) for r in ("brain", "pelvis")
    }
    assert not list((tmp_path / "out").rglob("*.tmp-*"))


def test_rerun_rewrites_nothing_and_workers_do_not_change_the_output(
    phantom_root: Path, small_cfg: ExperimentConfig, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = prepare_dataset(phantom_root, str(out), small_cfg)
    assert first.written == len(first.manifest.shards) >= 2
    before = _files(out)
    second = prepare_dataset(phantom_root, str(out), small_cfg, workers=2)
    assert second.written == 0 and second.removed == []
    assert second.unchanged == first.written
    assert _files(out) == before  # same names, same bytes, same mtimes: nothing rewritten


def test_a_config_change_replaces_the_shards_and_removes_stale_ones(
    phantom_root: Path, small_cfg: ExperimentConfig, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    old = prepare_dataset(phantom_root, str(out), small_cfg).manifest
    cfg = small_cfg.replace({"data.context_slices": 1})
    new = prepare_dataset(phantom_root, str(out), cfg)
    assert new.manifest.in_channels == 3 and new.manifest.data_hash != old.data_hash
    assert set(new.removed) == {s.path for s in old.shards}
    listed = sorted(s.path for s in new.manifest.shards)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.parquet")) == listed
    batch = next(shards.iter_batches(str(out), "train", batch_size=4))
    assert batch["mr"].shape == (4, 3, 32, 32) and batch["ct"].shape == (4, 1, 32, 32)


def test_max_train_slices_caps_training_slices_per_centre(
    phantom_root: Path, small_cfg: ExperimentConfig, tmp_path: Path
) -> None:
    cfg = small_cfg.replace({"data.max_train_slices": 20, "data.balance_centres": True})
    manifest = prepare_dataset(phantom_root, str(tmp_path / "out"), cfg).manifest
    train = manifest.counts["train"]
    per_centre = [c["slices"] for by_centre in train.values() for c in by_centre.values()]
    assert sum(per_centre) <= 20
    assert max(per_centre) - min(per_centre) <= 2  # an equal share for each (region, centre)
    assert manifest.counts["val"]  # the cap is on training only


def test_strict_writes_nothing_and_main_exits_3(
    corrupt_root: Path, small_cfg: ExperimentConfig, tmp_path: Path, capsys
) -> None:
    report = prepare_dataset(corrupt_root, str(tmp_path / "out"), small_cfg, strict=True)
    assert report.manifest is None and len(report.skipped) == len(CORRUPTIONS)
    assert not (tmp_path / "out").exists()
    argv = ["--data", str(corrupt_root), "-o", str(tmp_path / "out"), "--strict", "--quiet"]
    argv += _small_sets(small_cfg)
    assert main(argv) == EXIT_STRICT
    assert "--strict: 10 case(s) have problems" in capsys.readouterr().out


def test_nothing_to_prepare_is_an_error(tmp_path: Path, small_cfg: ExperimentConfig) -> None:
    with pytest.raises(PrepareError, match="no SynthRAD case folders"):
        prepare_dataset(tmp_path, str(tmp_path / "out"), small_cfg)
    assert main(["--data", str(tmp_path), "-o", str(tmp_path / "o"), "--set", "x=1"]) == 2


def test_cli_prints_the_summary(
    corrupt_root: Path, small_cfg: ExperimentConfig, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(corrupt_root, data)
    out = tmp_path / "shards"
    cmd = [sys.executable, "-m", "hmss_ray.prepare", "--data", str(data), "-o", str(out)]
    cmd += _small_sets(small_cfg)
    cmd += ["--set", "data.context_slices=1", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "split  region  centre  cases  slices" in done.stdout
    assert "skipped: 10 case(s):" in done.stdout
    assert "ct.nii.gz: unreadable (NIfTI)" in done.stdout  # a fixed text, no library words
    assert "inference-only (MR only, split 'infer'): 1BA004, 1PC004" in done.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert np.sum([s["rows"] for s in manifest["shards"]]) > 0
    # every --set counts, not only the last one
    assert manifest["image_size"] == 32 and manifest["in_channels"] == 3
