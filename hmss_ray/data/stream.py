"""Ray Data pipeline: stream slice shards from a URI, decode, augment (train only).

The driver never loads the data: ``read_parquet`` tasks read shards on the cluster, ``map_batches``
decodes and augments them, and each Train worker pulls its share through
``ray.train.get_dataset_shard``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import ray.data

from hmss_ray import storage
from hmss_ray.config import AugmentConfig, ExperimentConfig
from hmss_ray.data.manifest import read_manifest
from hmss_ray.data.preprocess import centre_channels
from hmss_ray.data.shards import TENSOR_COLUMNS, decode_batch, shard_uris


def _decode(batch: Any, channels: int) -> dict[str, np.ndarray]:
    decoded = decode_batch(batch)
    out = {key: decoded[key] for key in TENSOR_COLUMNS}
    out["mr"] = centre_channels(out["mr"], channels)
    return out


def _check_channels(data_uri: str, channels: int) -> None:
    stored = read_manifest(data_uri).in_channels
    if channels > stored:
        raise ValueError(
            f"the model wants {channels} MR channels (data.context_slices="
            f"{(channels - 1) // 2}) but the shards at {data_uri} hold {stored}: "
            "prepare them again with a larger data.context_slices"
        )


def _augment(
    batch: dict[str, np.ndarray], augment: AugmentConfig, seed: int
) -> dict[str, np.ndarray]:
    # imported here: only augmenting tasks need it (it imports neither torch nor MONAI)
    from hmss_ray.data.augment import BatchAugmenter

    return BatchAugmenter(augment, batch_seed(seed))(batch)


def batch_seed(seed: int) -> list[int]:
    """The augmentation seed of the batch this Ray Data task is about to augment.

    ``train.seed``, the task's index in its operator and the batch's number within the task:
    Ray Data numbers a map operator's tasks in the order their inputs arrive, and with the order
    kept (``ingest_options``) that is the stream's order, so one seed draws the same transforms
    for the same rows in every run, and each epoch's pass (later tasks) draws new ones. Outside a
    Ray Data task (a plain call) the task index is -1.
    """
    from ray.data._internal.execution.interfaces.task_context import TaskContext

    context = TaskContext.get_current()
    if context is None:
        return [seed, 0, 0]
    count = context.kwargs.get("hmss_batches", 0)
    context.kwargs["hmss_batches"] = count + 1
    return [seed, context.task_idx + 1, count]


def _read_parquet_listed(paths: list[str], fs: Any) -> ray.data.Dataset:
    """``read_parquet`` of a known file list, read in the order given.

    Ray 2.60's default Parquet reader (DataSourceV2) plans ``ListFiles -> ReadFiles`` and runs
    ``ListFiles`` (footer reads included) again in every execution: 5-10 s before the first row
    on 2 cores, for three small shards. The manifest already names every shard, so the V1 reader,
    which samples the footers once when the Dataset is built, loses nothing here. It reads the
    files in contiguous groups, in list order, which ``epoch_order`` relies on.
    """
    context = ray.data.DataContext.get_current()
    saved, context.use_datasource_v2 = context.use_datasource_v2, False
    try:
        return ray.data.read_parquet(paths, filesystem=fs, shuffle=None)
    finally:
        context.use_datasource_v2 = saved


def epoch_order(paths: list[str], epochs: int, seed: int) -> list[str]:
    """Every path once per epoch, each epoch in its own seeded random order (the file shuffle)."""
    rng = np.random.default_rng(seed)
    return [paths[i] for _ in range(epochs) for i in rng.permutation(len(paths))]


def read_split(
    data_uri: str, split: str, channels: int, epochs: int = 1, seed: int = 0
) -> ray.data.Dataset:
    """A lazy Dataset of the decoded slices of one split (mr, ct, mask as (C, H, W) arrays).

    ``epochs`` > 1 makes one stream of that many passes over the split, each in a new file order
    (``epoch_order``): a training run is then ONE Ray Data execution, and no epoch waits for a
    new execution to start. The consumer cuts the stream into epochs by counting batches.
    """
    uris = shard_uris(data_uri, split)
    if not uris:
        raise FileNotFoundError(f"no {split!r} shards under {data_uri}: run hmss_ray.prepare first")
    fs, _ = storage.resolve(data_uri)
    paths = [storage.resolve(uri)[1] for uri in uris]
    ds = _read_parquet_listed(epoch_order(paths, epochs, seed), fs)
    return ds.map_batches(
        _decode, fn_kwargs={"channels": channels}, batch_format="pyarrow", batch_size=64
    )


def build_datasets(
    data_uri: str, cfg: ExperimentConfig, epochs: int | None = None
) -> dict[str, ray.data.Dataset]:
    """``{"train": ...}`` for a TorchTrainer: ``epochs`` passes (default: the whole schedule,
    ``sum(train.stage_epochs)``) in one stream, augmented when enabled.

    Validation is not here: rank 0 reads the small validation split directly
    (``hmss_ray.train.loop.validation_batches``), deterministic and never augmented.
    """
    # per-operator progress bars redraw hundreds of times a minute and bury the training log;
    # the loop prints its own progress (slices/s, data wait)
    ray.data.DataContext.get_current().enable_progress_bars = False
    _check_channels(data_uri, cfg.in_channels)
    epochs = sum(cfg.train.stage_epochs) if epochs is None else epochs
    train = read_split(data_uri, "train", cfg.in_channels, max(epochs, 1), cfg.train.seed)
    if cfg.augment.enabled:
        # a plain function (not an actor pool): building the transforms is cheap, and actors
        # would hold CPUs that the Train workers need on small machines; seeded per batch
        # (batch_seed), so the same train.seed augments the same rows the same way
        train = train.map_batches(
            _augment,
            fn_kwargs={"augment": cfg.augment, "seed": cfg.train.seed},
            batch_format="numpy",
            batch_size=32,
        )
    train.context.execution_options = ingest_options()
    return {"train": train}


def ingest_options() -> ray.data.ExecutionOptions:
    """Ray Train's default ingest options, with the order kept.

    Kept order makes the epochs of the stream follow one another (``epoch_order``); without it a
    fast task of the next epoch's pass could overtake a slow one of this pass. Pass these to
    ``ray.train.DataConfig``, which otherwise replaces a dataset's execution options.
    """
    from ray.train import DataConfig

    options = DataConfig.default_ingest_options()
    options.preserve_order = True
    return options
