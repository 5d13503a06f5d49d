"""``prepare`` with its cases as Ray tasks writes what the local process pool writes, byte for
byte, and a bad case is still reported and skipped. On the session's local Ray; the rehearsal
cluster runs the same command as a job (test_cluster_job.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hmss_ray.config import ExperimentConfig
from hmss_ray.data.manifest import read_manifest
from hmss_ray.data.phantom import write_dataset
from hmss_ray.data.prepare import prepare_dataset

pytestmark = pytest.mark.integration

CFG = {"data.image_size": 32, "model.lrg_downsamples": 1, "data.slices_per_shard": 24}


def test_ray_tasks_write_the_process_pools_shards(tmp_path: Path, ray_session: None, capfd):
    write_dataset(tmp_path / "phantom", cases=3, corrupt=1, shape=(32, 32, 10))
    cfg = ExperimentConfig().replace(CFG)
    pool = prepare_dataset(tmp_path / "phantom", str(tmp_path / "pool"), cfg, workers=2)
    tasks = prepare_dataset(
        tmp_path / "phantom", str(tmp_path / "ray"), cfg, workers=2, ray_tasks=True
    )
    assert "case task(s) ran on 1 Ray node(s)" in capfd.readouterr().err
    assert tasks.manifest.content_hash == pool.manifest.content_hash
    assert [s.case_id for s in tasks.skipped] == [s.case_id for s in pool.skipped] != []
    for entry in read_manifest(str(tmp_path / "ray")).shards:
        assert (tmp_path / "ray" / entry.path).read_bytes() == (
            tmp_path / "pool" / entry.path
        ).read_bytes()
