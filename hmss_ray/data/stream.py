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
from hmss_ray.data.preprocess import centre_channels
from hmss_ray.data.shards import decode_batch, read_manifest, shard_uris

TENSOR_KEYS = ("mr", "ct", "mask")


def _decode(batch: Any, channels: int) -> dict[str, np.ndarray]:
    decoded = decode_batch(batch)
    out = {key: decoded[key] for key in TENSOR_KEYS}
    out["mr"] = centre_channels(out["mr"], channels)
    return out


def _check_channels(data_uri: str, channels: int) -> None:
    stored = int(read_manifest(data_uri).get("in_channels", channels))
    if channels > stored:
        raise ValueError(
            f"the model wants {channels} MR channels (data.context_slices="
            f"{(channels - 1) // 2}) but the shards at {data_uri} hold {stored}: "
            "prepare them again with a larger data.context_slices"
        )


def _augment(batch: dict[str, np.ndarray], augment: AugmentConfig) -> dict[str, np.ndarray]:
    # imported here: MONAI takes seconds to import, and only augmenting tasks need it
    from hmss_ray.data.augment import BatchAugmenter

    return BatchAugmenter(augment)(batch)


def read_split(data_uri: str, split: str, channels: int) -> ray.data.Dataset:
    """A lazy Dataset of the decoded slices of one split (mr, ct, mask as (C, H, W) arrays)."""
    uris = shard_uris(data_uri, split)
    if not uris:
        raise FileNotFoundError(f"no {split!r} shards under {data_uri}: run hmss_ray.prepare first")
    fs, _ = storage.resolve(data_uri)
    paths = [storage.resolve(uri)[1] for uri in uris]
    ds = ray.data.read_parquet(paths, filesystem=fs, shuffle="files" if split == "train" else None)
    return ds.map_batches(
        _decode, fn_kwargs={"channels": channels}, batch_format="pyarrow", batch_size=64
    )


def build_datasets(data_uri: str, cfg: ExperimentConfig) -> dict[str, ray.data.Dataset]:
    """``{"train": ...}`` for a TorchTrainer, augmented when enabled.

    Validation is not here: rank 0 reads the small validation split directly
    (``hmss_ray.data.shards.iter_batches``), which spares every epoch a Ray Data start-up.
    """
    # per-operator progress bars redraw hundreds of times a minute and bury the training log;
    # the loop prints its own progress (slices/s, data wait)
    ray.data.DataContext.get_current().enable_progress_bars = False
    _check_channels(data_uri, cfg.in_channels)
    train = read_split(data_uri, "train", cfg.in_channels)
    if cfg.augment.enabled:
        # a plain function (not an actor pool): building the MONAI Compose is cheap, and actors
        # would hold CPUs that the Train workers need on small machines
        train = train.map_batches(
            _augment, fn_kwargs={"augment": cfg.augment}, batch_format="numpy", batch_size=32
        )
    return {"train": train}
