"""Shards on a real S3-compatible server (moto on 127.0.0.1), read back by iter_batches and Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hmss_ray import storage
from hmss_ray.config import ExperimentConfig
from hmss_ray.data import shards
from hmss_ray.data.manifest import read_manifest
from hmss_ray.data.phantom import write_dataset
from hmss_ray.data.prepare import prepare_dataset
from tests.small import SMALL

pytestmark = pytest.mark.integration

CFG = {**SMALL, "data.slices_per_shard": 24}
KEYS = ("mr", "ct", "mask", "case_id", "centre", "region", "slice_index", "split")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ExperimentConfig]:
    """A small phantom (one corrupt case) and its shards prepared locally, for comparison."""
    root = tmp_path_factory.mktemp("s3data")
    write_dataset(root / "phantom", cases=3, corrupt=1, mr_only=1, shape=(32, 32, 10))
    cfg = ExperimentConfig().replace({**CFG, "data.context_slices": 1})
    prepare_dataset(root / "phantom", str(root / "local"), cfg)
    return root / "phantom", root / "local", cfg


def _all(root: str, split: str) -> dict[str, np.ndarray]:
    batches = list(shards.iter_batches(root, split, batch_size=16))
    return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}


def test_shards_on_s3_are_identical_and_rewritten_never(prepared, s3_bucket: str) -> None:
    data, local, cfg = prepared
    uri = f"{s3_bucket}/shards/phantom"
    report = prepare_dataset(data, uri, cfg, workers=1)
    manifest = read_manifest(uri)
    assert manifest == report.manifest
    local_manifest = read_manifest(str(local))
    assert manifest.shards == local_manifest.shards  # same names, bytes and checksums
    assert [s.case_id for s in manifest.skipped] == [s.case_id for s in local_manifest.skipped]
    for split in ("train", "val", "test", "infer"):
        remote, here = _all(uri, split), _all(str(local), split)
        assert set(remote) == set(here)
        for key in remote:
            np.testing.assert_array_equal(remote[key], here[key])
    assert _all(uri, "train")["mr"].shape[1:] == (3, 32, 32)
    again = prepare_dataset(data, uri, cfg)
    assert again.written == 0 and again.unchanged == len(manifest.shards)
    assert storage.listdir(uri) == ["infer", "manifest.json", "test", "train", "val"]


def test_ray_data_reads_the_shards_back_through_decode_batch(
    prepared, s3_bucket: str, ray_session: None
) -> None:
    import ray.data

    data, local, cfg = prepared
    uri = f"{s3_bucket}/ray"
    prepare_dataset(data, uri, cfg)
    expected = _all(str(local), "train")
    uris = shards.shard_uris(uri, "train")
    assert uris and all(u.startswith("s3://") for u in uris)
    ds = ray.data.read_parquet(uris).materialize()  # read once, look at it three ways
    for batch_format in ("pyarrow", "numpy", "pandas"):
        batches = ds.iter_batches(batch_size=20, batch_format=batch_format)
        decoded = [shards.decode_batch(b) for b in batches]
        got = {key: np.concatenate([b[key] for b in decoded]) for key in KEYS}
        order = np.lexsort((got["slice_index"], got["case_id"]))  # Ray may reorder blocks
        want = np.lexsort((expected["slice_index"], expected["case_id"]))
        for key in KEYS:
            np.testing.assert_array_equal(got[key][order], expected[key][want], err_msg=key)
