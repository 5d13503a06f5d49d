"""Ray Tune + Optuna for real: a tiny search, its registry entry, resuming an interrupted one."""

from __future__ import annotations

import math

import pytest

from hmss_ray import storage
from hmss_ray.config import flatten
from hmss_ray.models.checkpoint import REGISTRY_FILES, load_generator, localize
from hmss_ray.tune.search import run_search
from hmss_ray.tune.space import load_space

from .conftest import ROOT, tiny_config

pytestmark = pytest.mark.integration


def test_tiny_search_on_s3_registers_a_loadable_winner(ray_session, s3_shards, s3_bucket):
    cfg = tiny_config("tune.num_samples=2")  # ASHA's first cut: after epoch 2 of 2
    space = load_space(ROOT / "tune_spaces" / "demo.yaml")
    out = run_search(
        cfg, space, s3_shards, f"{s3_bucket}/tune", "tiny", f"{s3_bucket}/registry", "winner"
    )
    rows = out.rows
    assert len(rows) == 2
    # Optuna proposed different values, inside the space's bounds
    assert rows[0].params != rows[1].params
    for row in rows:
        assert 15.0 <= row.params["loss.lambda_l1"] <= 40.0  # tune_spaces/demo.yaml
        assert 0 < row.ssim <= 1 and row.mae_hu > 0 and math.isfinite(row.psnr)
        assert math.isfinite(row.kid) and row.kid_std >= 0
    winner = out.winner
    assert winner.score == min(r.score for r in rows)

    entry = str(localize(out.registry_entry))  # the version, its digests checked
    assert out.registry_entry.startswith(f"{s3_bucket}/registry/winner@")
    # the generator, config and metrics: no discriminator, no optimiser state; with the demo's
    # inference.ensemble=run, the other ensemble members (generators only) and their index
    assert set(storage.listdir(entry)) == {*REGISTRY_FILES, "members", "ensemble.json",
                                           "manifest.json"}  # fmt: skip
    for member in storage.listdir(f"{entry}/members"):
        assert "discriminator.safetensors" not in storage.listdir(f"{entry}/members/{member}")
    record = storage.read_json(f"{entry}/winner.json")
    assert record["trial_id"] == winner.trial_id
    assert "optim.pt" in storage.listdir(record["checkpoint"])  # the full one, to fine-tune
    assert record["data_manifest_hash"]
    assert "1 - SSIM" in record["objective"]
    _, meta = load_generator(localize(entry))
    flat = flatten(meta.cfg.to_dict())
    assert storage.read_json(f"{entry}/metrics.json")["score"] == pytest.approx(winner.score)
    for key, value in winner.params.items():
        assert flat[key] == pytest.approx(value)
    report = f"{s3_bucket}/tune/tiny/report"
    assert {"results.csv", "results.md", "pareto.png"} <= set(storage.listdir(report))
