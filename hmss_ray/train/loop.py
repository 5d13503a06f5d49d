"""``train_loop_per_worker``: the only code that talks to the Ray Train session.

It rebuilds the typed config from the plain dict Ray hands over, resumes from
``ray.train.get_checkpoint()`` (or warm-starts from ``train.init_from``), runs the staged schedule
with the pure step functions of ``hmss_ray.train.steps``, validates on rank 0 every epoch and
reports metrics with a self-contained checkpoint.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch

from hmss_ray.config import ExperimentConfig
from hmss_ray.data.manifest import read_manifest
from hmss_ray.data.preprocess import centre_channels
from hmss_ray.data.shards import iter_batches
from hmss_ray.models import checkpoint as ckpt
from hmss_ray.models.factory import build_discriminator, build_generator
from hmss_ray.train import steps
from hmss_ray.train.progress import EpochMeter, ProgressLog, log


def _autocast_dtype(cfg: ExperimentConfig, device: torch.device) -> torch.dtype | None:
    mode = cfg.train.mixed_precision
    if mode == "off" or device.type != "cuda":
        return None  # bf16 autocast on CPU is slower than fp32 for convolutions
    return torch.bfloat16


def _restore(cfg, g, d, optimizers) -> tuple[int, int, str | None]:
    """(next epoch, global step, parent) from the run's checkpoint, or a warm start."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            meta = ckpt.load_training_state(directory, g, d, optimizers)
        log.info("[hmss] resumed from checkpoint at epoch %d, step %d", meta.epoch, meta.step)
        return meta.epoch + 1, meta.step, meta.parent
    if cfg.train.init_from:
        directory = ckpt.localize(cfg.train.init_from)
        ckpt.load_training_state(directory, g, d)  # weights only: fresh optimisers, new lr
        log.info("[hmss] warm start from %s", cfg.train.init_from)
        return 0, 0, cfg.train.init_from
    return 0, 0, None


class EpochBatches:
    """The worker's train batches: one stream for the whole run, cut into epochs by count.

    The train Dataset holds every epoch's pass over the shards (``build_datasets``), so a run is
    one Ray Data execution: the next epoch's first batches are read, decoded and prefetched while
    this worker validates and checkpoints, instead of each epoch waiting for a new execution to
    start. An epoch is ``steps`` batches: the worker's equal share of the train split divided by
    the batch size (drop_last), capped by ``train.steps_per_epoch``; every DDP worker takes the
    same number of steps. The passes follow one another in order, so an epoch is one pass give or
    take its edges: the rows that drop_last leaves of a pass start the next epoch, and the local
    shuffle buffer (its rows plus the block being added; capped at a quarter of an epoch) mixes
    the end of one pass with the start of the next.
    """

    def __init__(
        self, shard, cfg: ExperimentConfig, device: torch.device, steps: int, shuffle_buffer: int
    ) -> None:
        self._shard, self._cfg, self._device = shard, cfg, device
        self.steps, self.shuffle_buffer = steps, shuffle_buffer
        self._batches: Iterator[dict] | None = None

    @classmethod
    def for_run(cls, shard, cfg: ExperimentConfig, device, data_uri: str, world_size: int):
        per_worker = (
            read_manifest(data_uri).slices_in("train") // world_size
        )  # streaming_split(equal=True)
        steps = per_worker // cfg.train.batch_size
        if steps == 0:
            raise ValueError(
                f"train.batch_size={cfg.train.batch_size} is larger than each worker's share of "
                f"the train split ({per_worker} slices on {world_size} worker(s)): lower it"
            )
        if cfg.train.steps_per_epoch:
            steps = min(steps, cfg.train.steps_per_epoch)
        # a buffer as large as the epoch would draw from two passes at once: keep it a quarter
        buffer = min(cfg.train.shuffle_buffer, per_worker // 4)
        return cls(shard, cfg, device, steps, buffer)

    def epoch(self) -> Iterator[dict]:
        """The next ``steps`` batches of the run's stream (fewer only if the stream ends)."""
        if self._batches is None:
            self._batches = iter(
                self._shard.iter_torch_batches(
                    batch_size=self._cfg.train.batch_size,
                    device=self._device,
                    dtypes=torch.float32,
                    local_shuffle_buffer_size=self.shuffle_buffer or None,
                    drop_last=True,
                )
            )
        for _ in range(self.steps):
            batch = next(self._batches, None)
            if batch is None:
                return
            yield batch


def _validate(g, cfg: ExperimentConfig, data_uri: str) -> dict[str, float]:
    """Rank 0 scores the validation split, read shard by shard: deterministic, never augmented."""
    start = time.perf_counter()
    metrics = steps.validate(g, validation_batches(cfg, data_uri), cfg)
    return {**metrics, "validation_s": time.perf_counter() - start}


def validation_batches(cfg: ExperimentConfig, data_uri: str) -> Iterator[dict]:
    """The first ``train.val_max_slices`` slices of the val split, in order, as numpy batches."""
    seen, limit = 0, cfg.train.val_max_slices
    for batch in iter_batches(data_uri, "val", cfg.train.batch_size):
        if limit and seen >= limit:
            return
        yield {
            "mr": centre_channels(batch["mr"], cfg.in_channels),
            "ct": batch["ct"],
            "mask": batch["mask"],
        }
        seen += len(batch["mr"])


@dataclass(frozen=True)
class LoopConfig:
    """What every worker is handed: the experiment, the shards, where TensorBoard files go.

    Ray passes ``train_loop_config`` as a plain dict: :meth:`to_dict` on the driver,
    :meth:`from_dict` (which rebuilds the typed ``ExperimentConfig``) in the worker.
    """

    experiment: ExperimentConfig
    data_uri: str
    log_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": self.experiment.to_dict(), "data_uri": self.data_uri,
                "log_dir": self.log_dir}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoopConfig:
        experiment = ExperimentConfig.from_dict(data["experiment"])
        return cls(experiment, str(data["data_uri"]), data.get("log_dir"))


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Entry point Ray runs on every worker, with :meth:`LoopConfig.to_dict`'s plain dict."""
    run = LoopConfig.from_dict(loop_config)
    cfg = run.experiment
    context = ray.train.get_context()
    rank = context.get_world_rank()
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.train.seed + rank)

    g, d = build_generator(cfg), build_discriminator(cfg)
    optimizers = steps.build_optimizers(cfg, g, d)
    start_epoch, step, parent = _restore(cfg, g, d, optimizers)
    start_step = step
    # find_unused_parameters: the staged schedule freezes whole sub-networks
    ddp = {"find_unused_parameters": True}
    g = ray.train.torch.prepare_model(g, parallel_strategy_kwargs=ddp)
    d = ray.train.torch.prepare_model(d, parallel_strategy_kwargs=ddp)
    amp = _autocast_dtype(cfg, device)
    log = ProgressLog(run.log_dir, enabled=rank == 0)

    total_epochs = sum(cfg.train.stage_epochs)
    shard = ray.train.get_dataset_shard("train")
    data = EpochBatches.for_run(shard, cfg, device, run.data_uri, context.get_world_size())
    cycle_start = time.perf_counter()
    for epoch in range(start_epoch, total_epochs):
        stage = steps.stage_for_epoch(epoch, cfg.train.stage_epochs)
        steps.set_stage(g, stage)
        meter = EpochMeter(epoch, stage, world_size=context.get_world_size())
        g.train(), d.train()
        for batch in meter.timed(data.epoch()):
            losses = steps.train_step(
                g, d, optimizers["g"], optimizers["d"], batch, cfg, stage, step, amp
            )
            step += 1
            meter.update(len(batch["mr"]), losses)
            if rank == 0 and step % cfg.train.log_every == 0:
                log.step(step, meter)
        metrics = {**meter.summary(), "epoch": epoch, "step": step, "stage": stage}
        metrics["start_step"] = start_step  # > 0 when this run resumed from a checkpoint
        if rank == 0:
            g.eval()
            with torch.no_grad():
                metrics.update(_validate(g, cfg, run.data_uri))
            log.epoch(step, metrics)
        # a whole epoch as the run sees it: the previous epoch's checkpoint and report, this
        # epoch's steps and validation (the first also carries the data start-up)
        now = time.perf_counter()
        metrics["cycle_s"], cycle_start = now - cycle_start, now
        _report(metrics, rank, g, d, optimizers, cfg, parent)
    log.close()


def _report(metrics, rank, g, d, optimizers, cfg, parent) -> None:
    """Every worker reports (it is a barrier); rank 0 attaches the checkpoint."""
    if rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    with tempfile.TemporaryDirectory() as tmp:
        directory = ckpt.save_checkpoint(
            Path(tmp),
            generator=g,
            discriminator=d,
            optimizers=optimizers,
            cfg=cfg,
            stage=metrics["stage"],
            epoch=metrics["epoch"],
            step=metrics["step"],
            metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float))},
            parent=parent,
        )
        checkpoint = ray.train.Checkpoint.from_directory(str(directory))
        ray.train.report(
            metrics, checkpoint=checkpoint, checkpoint_dir_name=f"epoch_{metrics['epoch']:04d}"
        )
