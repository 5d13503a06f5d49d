"""Validation shares: every worker reads its own slices once (a local copy of remote shards), and
the shares' accumulators merged by adding equal one process scoring the whole split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hmss_ray import storage
from hmss_ray.config import ExperimentConfig
from hmss_ray.data.phantom import write_dataset
from hmss_ray.data.prepare import prepare_dataset
from hmss_ray.models import build_generator
from hmss_ray.train.validation import ValidationShard, validate
from tests.small import SMALL_SPACING

SMALL = {
    **SMALL_SPACING,
    "data.regions": ["brain"],
    "data.image_size": 32,
    "data.slices_per_shard": 5,  # the val split spans several shard files
    "data.split_fractions": [0.5, 0.5, 0.0],
    "model.lrg_channels": 8,
    "model.lrg_downsamples": 1,
    "model.lrg_res_blocks": 1,
    "model.hrg_channels": 4,
    "model.hrg_res_blocks": 1,
    "train.batch_size": 3,
}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cfg() -> ExperimentConfig:
    return ExperimentConfig().replace(SMALL)


@pytest.fixture(scope="module")
def shards(tmp_path_factory, cfg) -> str:
    root = tmp_path_factory.mktemp("val")
    write_dataset(root / "raw", cases=4, regions=["brain"], shape=(32, 32, 10), seed=3)
    prepare_dataset(root / "raw", str(root / "shards"), cfg)
    return str(root / "shards")


def slices(share: ValidationShard) -> dict[str, np.ndarray]:
    batches = list(share.batches())
    assert all(len(b["mr"]) == share.batch_size for b in batches[:-1])
    return {k: np.concatenate([b[k] for b in batches]) for k in ("mr", "ct", "mask")}


@pytest.mark.parametrize("limit", [None, 13])
@pytest.mark.parametrize("world_size", [2, 3])
def test_shares_cover_the_split_once_in_order(shards, cfg, world_size, limit):
    cfg = cfg.replace({"train.val_max_slices": limit})
    whole = ValidationShard.open(cfg, shards)
    assert len({path for path, _, _ in whole.files}) > 2  # several shard files
    expected = slices(whole)
    assert len(expected["mr"]) == whole.total == (limit or whole.total)
    shares = [ValidationShard.open(cfg, shards, r, world_size) for r in range(world_size)]
    starts = [sum(x.slices for x in shares[:r]) for r in range(world_size)]
    assert [s.start for s in shares] == starts
    assert max(s.slices for s in shares) - min(s.slices for s in shares) <= 1
    got = [slices(s) for s in shares]
    for key, value in expected.items():
        assert np.array_equal(np.concatenate([g[key] for g in got]), value), key


def test_a_remote_share_is_copied_once_and_only_its_own_files(shards, cfg, s3_bucket, tmp_path):
    uri = f"{s3_bucket}/shards"
    storage.copy_dir(shards, uri)
    cache = tmp_path / "cache"
    cache.mkdir()
    share = ValidationShard.open(cfg, uri, 1, 2, cache)
    whole = ValidationShard.open(cfg, uri, 0, 1)  # read in place, from the bucket
    assert all(Path(path).parent == cache for path, _, _ in share.files)
    copied = sorted(p.name for p in cache.iterdir())
    assert copied == sorted(Path(p).name for p, _, _ in share.files)
    assert len(share.files) < len(whole.files)
    local = ValidationShard.open(cfg, shards, 1, 2)
    first, second = slices(share), slices(local)
    assert all(np.array_equal(first[k], second[k]) for k in first)
    again = ValidationShard.open(cfg, uri, 1, 2, cache)  # a second open copies nothing new
    assert again.files == share.files


def test_merged_shares_score_like_one_process(shards, cfg):
    first, second = (ValidationShard.open(cfg, shards, r, 2) for r in range(2))
    # the KID slice limit falls inside the second share: only part of it counts for KID
    cfg = cfg.replace({"metrics.fid_max_slices": first.slices + max(1, second.slices // 2)})
    assert first.slices < cfg.metrics.fid_max_slices < first.slices + second.slices
    torch.manual_seed(0)
    generator = build_generator(cfg)
    alone = validate(generator, ValidationShard.open(cfg, shards).batches(), cfg)
    vectors: list[torch.Tensor] = []
    record = lambda v: vectors.append(v) or v  # noqa: E731
    assert first.cases == second.cases and len(first.cases) > 1
    validate(
        generator, second.batches(), cfg, start=second.start, cases=second.cases, reduce=record
    )
    others = iter(vectors)
    merged = validate(
        generator, first.batches(), cfg, start=first.start, cases=first.cases,
        reduce=lambda v: v + next(others),
    )  # fmt: skip
    assert alone["patients"] == len(first.cases)
    assert merged.keys() == alone.keys()
    for key, value in alone.items():
        # float32 convolutions differ in the last bits with the batch composition (oneDNN picks
        # kernels by batch size); a wrongly merged accumulator is off by far more than 1e-6
        assert merged[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
