"""The training stream on a real local Ray: a whole run is one Ray Data execution."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter

import numpy as np
import pytest
import torch

from hmss_ray.data.manifest import read_manifest
from hmss_ray.data.stream import build_datasets
from hmss_ray.train.loop import EpochBatches

from .conftest import tiny_config

pytestmark = pytest.mark.integration


def _digest(mr: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(mr).tobytes()).hexdigest()


class _Executions(logging.Handler):
    """Counts Ray Data's 'Starting execution of Dataset ...' lines in this process."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += record.getMessage().startswith("Starting execution of Dataset")


def test_a_three_epoch_stream_holds_every_slice_three_times(ray_session, local_shards):
    cfg = tiny_config("augment.enabled=false")
    dataset = build_datasets(local_shards, cfg, epochs=3)["train"]
    seen = Counter()
    for batch in dataset.iter_batches(batch_size=32, batch_format="numpy"):
        seen.update(_digest(mr) for mr in batch["mr"])
    n = read_manifest(local_shards).slices_in("train")
    assert sum(seen.values()) == 3 * n
    assert len(seen) == n and set(seen.values()) == {3}


def test_epochs_are_cut_from_one_execution(ray_session, local_shards):
    epochs = 3
    cfg = tiny_config(
        "augment.enabled=false", "train.steps_per_epoch=null", "train.shuffle_buffer=0"
    )
    dataset = build_datasets(local_shards, cfg, epochs=epochs)["train"]
    counter = _Executions()
    data_log = logging.getLogger("ray.data")
    saved_level = data_log.level
    data_log.setLevel(logging.INFO)
    data_log.addHandler(counter)
    try:
        data = EpochBatches.for_run(
            dataset.iterator(), cfg, torch.device("cpu"), local_shards, world_size=1
        )
        per_epoch = [[_digest(mr) for b in data.epoch() for mr in b["mr"].numpy()]
                     for _ in range(epochs)]  # fmt: skip
    finally:
        data_log.removeHandler(counter)
        data_log.setLevel(saved_level)
    n = read_manifest(local_shards).slices_in("train")
    assert data.steps == n // cfg.train.batch_size
    assert [len(e) for e in per_epoch] == [data.steps * cfg.train.batch_size] * epochs
    assert counter.count == 1  # one execution for all three epochs, not one per epoch
    # the passes follow one another: without the local shuffle buffer an epoch repeats a slice
    # only where it straddles two passes, i.e. among the rows that earlier epochs left over
    # (drop_last); a stream that mixed the passes would repeat ~1/3 of each epoch's slices
    assert data.shuffle_buffer == 0
    left_over = n - data.steps * cfg.train.batch_size
    for k, e in enumerate(per_epoch):
        assert len(e) - len(set(e)) <= k * left_over


def _augmented_stream(shards: str, seed: int, epochs: int = 2) -> list[str]:
    cfg = tiny_config("augment.enabled=true", f"train.seed={seed}")
    dataset = build_datasets(shards, cfg, epochs=epochs)["train"]
    return [_digest(mr) for b in dataset.iter_batches(batch_size=32, batch_format="numpy")
            for mr in b["mr"]]  # fmt: skip


def test_one_seed_augments_the_stream_the_same_way_in_every_run(ray_session, local_shards):
    # two executions with one train.seed: the same augmented slices in the same order (the
    # weights of a seeded run depend on it); another seed draws other transforms; the same
    # slice is augmented anew in each epoch's pass
    first = _augmented_stream(local_shards, seed=3)
    assert _augmented_stream(local_shards, seed=3) == first
    other = _augmented_stream(local_shards, seed=4)
    assert len(other) == len(first) and len(set(other) & set(first)) < len(first) // 2
    n = read_manifest(local_shards).slices_in("train")
    assert len(first) == 2 * n
    assert len(set(first)) > 1.5 * n  # epoch 2's draws are not epoch 1's
