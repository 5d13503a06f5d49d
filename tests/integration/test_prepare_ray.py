"""``prepare --ray`` runs its cases as Ray tasks and writes what the local process pool writes,
byte for byte; a bad case is still reported and skipped. On the session's local Ray (the
command joins it, as it joins a cluster inside ``ray job submit``); ``bench/autoscale.py`` runs
the same command as a job on the autoscaling rehearsal cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from hmss_ray import prepare
from hmss_ray.config import ExperimentConfig
from hmss_ray.data.manifest import read_manifest
from hmss_ray.data.phantom import write_dataset
from hmss_ray.data.prepare import prepare_dataset
from tests.small import SMALL

pytestmark = pytest.mark.integration

CFG = {**SMALL, "data.slices_per_shard": 24}


def test_prepare_on_ray_writes_the_process_pools_shards(tmp_path: Path, ray_session: None, capfd):
    write_dataset(tmp_path / "phantom", cases=3, corrupt=1, shape=(32, 32, 10))
    cfg = ExperimentConfig().replace(CFG)
    pool = prepare_dataset(tmp_path / "phantom", str(tmp_path / "pool"), cfg, workers=2)
    sets = [arg for key, value in CFG.items() for arg in ("--set", f"{key}={value}")]
    code = prepare.main(
        ["--data", str(tmp_path / "phantom"), "-o", str(tmp_path / "ray"), "--ray",
         "--workers", "2", "--quiet", *sets]
    )  # fmt: skip
    assert code == 0
    out, err = capfd.readouterr()
    assert "case task(s) ran on 1 Ray node(s)" in err
    assert "skipped: 1 case(s)" in out
    tasks = read_manifest(str(tmp_path / "ray"))
    assert tasks.content_hash == pool.manifest.content_hash
    assert [s.case_id for s in tasks.skipped] == [s.case_id for s in pool.skipped] != []
    for entry in tasks.shards:
        ray_bytes = (tmp_path / "ray" / entry.path).read_bytes()
        assert ray_bytes == (tmp_path / "pool" / entry.path).read_bytes()
