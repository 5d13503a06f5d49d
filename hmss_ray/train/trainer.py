"""Build the ``TorchTrainer``: scaling, storage, checkpoint and failure policy from config."""

from __future__ import annotations

import time

import ray
import ray.train
from ray.train.torch import TorchTrainer

from hmss_ray import storage
from hmss_ray.config import ExperimentConfig
from hmss_ray.data.stream import build_datasets, ingest_options
from hmss_ray.patient_fs import patient
from hmss_ray.train import upload
from hmss_ray.train.loop import LoopConfig, train_loop_per_worker


def default_run_name(cfg: ExperimentConfig) -> str:
    return f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_config(
    cfg: ExperimentConfig, storage_uri: str, name: str, callbacks: list | None = None
) -> ray.train.RunConfig:
    """Checkpoints to ``storage_uri/name`` (local or s3://); keep the best k by the score."""
    fs, path = storage.resolve(storage_uri)
    return ray.train.RunConfig(
        name=name,
        storage_path=path,
        # Ray Train writes its run state there after each checkpoint, without retrying: retried
        storage_filesystem=patient(fs, upload.patience_s()),
        checkpoint_config=ray.train.CheckpointConfig(
            num_to_keep=cfg.train.keep_checkpoints,
            checkpoint_score_attribute="score",
            checkpoint_score_order="min",
        ),
        failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
        callbacks=callbacks,
    )


def build_trainer(
    cfg: ExperimentConfig,
    data_uri: str,
    storage_uri: str,
    name: str,
    callbacks: list | None = None,
) -> TorchTrainer:
    """A TorchTrainer for one training run of ``cfg`` on the shards at ``data_uri``."""
    t = cfg.train
    loop_config = LoopConfig(cfg, data_uri, storage.join(storage_uri, name, "tensorboard"))
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config.to_dict(),
        scaling_config=ray.train.ScalingConfig(
            num_workers=t.num_workers, use_gpu=t.cuda, resources_per_worker=t.worker_resources()
        ),
        datasets=build_datasets(data_uri, cfg),
        dataset_config=ray.train.DataConfig(
            # one worker iterates the Dataset itself: a streaming_split would put a
            # SplitCoordinator actor between them, about a fifth of a core on a 2-core machine
            datasets_to_split="all" if t.num_workers > 1 else [],
            execution_options={"train": ingest_options()},
        ),
        run_config=run_config(cfg, storage_uri, name, callbacks),
    )
