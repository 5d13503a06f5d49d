"""``train_loop_per_worker``: the only code that talks to the Ray Train session.

It rebuilds the typed config from the plain dict Ray hands over, puts the networks on the
worker's device and only then builds and restores the optimisers (from
``ray.train.get_checkpoint()``, or a warm start from ``train.init_from``), wraps them in DDP per
stage over only what the stage trains (:mod:`hmss_ray.train.distributed`), runs the staged
schedule with the pure step functions of :mod:`hmss_ray.train.steps`, validates on every rank
(each its share of a locally cached split, the sums all-reduced: :mod:`hmss_ray.train.validation`)
on the epochs :mod:`hmss_ray.train.schedule` names, and reports; rank 0 attaches a
self-contained checkpoint every ``train.checkpoint_every`` epochs, uploaded in the background.

DDP is set up here rather than by ``ray.train.torch.prepare_model``: that wraps once, with one
``find_unused_parameters`` for the whole run, and cannot re-wrap when the stage changes what trains.
Ray still starts the process group (gloo on CPU, NCCL on GPU) and assigns the device.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ray.train
import ray.train.torch
import torch

from hmss_ray.config import ExperimentConfig
from hmss_ray.data.manifest import read_manifest
from hmss_ray.metrics.features import check_pretrained
from hmss_ray.models import checkpoint as ckpt
from hmss_ray.train import schedule, steps, upload
from hmss_ray.train.distributed import StageParallel, reduce_sum
from hmss_ray.train.progress import EpochMeter, ProgressLog, log
from hmss_ray.train.validation import ValidationShard, validate


def _networks(cfg: ExperimentConfig, device: torch.device) -> steps.Networks:
    """The networks on ``device``, resumed from the run's checkpoint or warm-started."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            nets = steps.build_training(cfg, device, resume=directory)
        log.info("[hmss] resumed at epoch %d, step %d", nets.start_epoch, nets.step)
        return nets
    if cfg.train.init_from:
        directory = ckpt.localize(cfg.train.init_from, files=ckpt.WEIGHT_FILES)
        nets = steps.build_training(cfg, device, warm_start=directory)  # fresh optimisers
        nets.parent = cfg.train.init_from
        log.info("[hmss] warm start from %s", cfg.train.init_from)
        return nets
    return steps.build_training(cfg, device)


class EpochBatches:
    """The worker's train batches: one stream for the whole run, cut into epochs by count.

    The train Dataset holds every epoch's pass over the shards (``build_datasets``), so a run is
    one Ray Data execution: the next epoch's first batches are read, decoded and prefetched while
    this worker validates and checkpoints, instead of each epoch waiting for a new execution to
    start. An epoch is ``steps`` batches: the worker's equal share of the train split divided by
    the batch size (drop_last), capped by ``train.steps_per_epoch``; every DDP worker takes the
    same number of steps. The passes follow one another in order, so an epoch is one pass give or
    take its edges: the rows that drop_last leaves of a pass start the next epoch, and the local
    shuffle buffer (``train.shuffle_buffer`` rows, at most an epoch's) mixes the end of one pass
    with the start of the next. Shards hold whole patients in a row, so a buffer much smaller
    than an epoch fills batches with neighbouring slices of one or two patients: on the demo's
    12 phantoms a quarter-epoch buffer of 64-slice shards cost 14 HU of held-out MAE against a
    full-epoch buffer of 16-slice shards (README "Quality").
    """

    def __init__(
        self,
        shard,
        cfg: ExperimentConfig,
        device: torch.device,
        steps: int,
        shuffle_buffer: int,
        rank: int = 0,
    ) -> None:
        self._shard, self._cfg, self._device = shard, cfg, device
        self.steps, self.shuffle_buffer = steps, shuffle_buffer
        self._shuffle_seed = cfg.train.seed + rank  # the local shuffle, as the weights: seeded
        self._batches: Iterator[dict] | None = None

    @classmethod
    def for_run(
        cls, shard, cfg: ExperimentConfig, device, data_uri: str, world_size: int, rank: int = 0
    ):
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
        # at most one epoch: a larger buffer only delays the first batch
        buffer = min(cfg.train.shuffle_buffer, per_worker)
        return cls(shard, cfg, device, steps, buffer, rank)

    def epoch(self) -> Iterator[dict]:
        """The next ``steps`` batches of the run's stream (fewer only if the stream ends)."""
        if self._batches is None:
            self._batches = iter(
                self._shard.iter_torch_batches(
                    batch_size=self._cfg.train.batch_size,
                    device=self._device,
                    dtypes=torch.float32,
                    local_shuffle_buffer_size=self.shuffle_buffer or None,
                    local_shuffle_seed=self._shuffle_seed if self.shuffle_buffer else None,
                    drop_last=True,
                )
            )
        for _ in range(self.steps):
            batch = next(self._batches, None)
            if batch is None:
                return
            yield batch


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
    rank, world_size = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and DDP take the current device
    check_pretrained(cfg)  # the weights must be on this worker's node, not only the driver's
    torch.manual_seed(cfg.train.seed + rank)  # DDP's first wrap gives every rank rank 0's weights
    nets = _networks(cfg, device)
    parallel = StageParallel(nets.generator, nets.discriminator, cfg, device)
    data = EpochBatches.for_run(
        ray.train.get_dataset_shard("train"), cfg, device, run.data_uri, world_size, rank
    )
    cache = tempfile.mkdtemp(prefix="hmss-val-")
    try:
        val = ValidationShard.open(cfg, run.data_uri, rank, world_size, cache)
        _epochs(cfg, run, nets, parallel, data, val, rank, world_size)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _epochs(
    cfg: ExperimentConfig,
    run: LoopConfig,
    nets: steps.Networks,
    parallel: StageParallel,
    data: EpochBatches,
    val: ValidationShard,
    rank: int,
    world_size: int,
) -> None:
    """The staged schedule from ``nets.start_epoch``: train, validate and report, checkpoint."""
    amp = steps.autocast_dtype(cfg.train.mixed_precision, parallel.device)
    progress = ProgressLog(run.log_dir, enabled=rank == 0)
    start_step, step = nets.step, nets.step
    opt_g, opt_d = nets.optimizers["g"], nets.optimizers["d"]
    cycle_start = time.perf_counter()
    for epoch in range(nets.start_epoch, schedule.total_epochs(cfg)):
        stage = steps.stage_for_epoch(epoch, cfg.train.stage_epochs)
        parallel.set_stage(stage)
        schedule.set_epoch_lr(nets.optimizers, cfg, epoch)
        meter = EpochMeter(epoch, stage, world_size=world_size)
        parallel.train()
        for batch in meter.timed(data.epoch()):
            losses = steps.train_step(
                parallel.g, parallel.d, opt_g, opt_d, batch, cfg, stage, step, amp
            )
            step += 1
            meter.update(len(batch["mr"]), losses)
            if rank == 0 and step % cfg.train.log_every == 0:
                progress.step(step, meter)
        metrics = {**meter.summary(), "epoch": epoch, "epochs_done": epoch + 1, "step": step}
        metrics.update(stage=stage, ddp_params=parallel.ddp_parameters())
        metrics["start_step"] = start_step  # > 0 when this run resumed from a checkpoint
        if not schedule.is_validation_epoch(cfg, epoch):
            progress.epoch(step, metrics)
            continue
        started = time.perf_counter()
        metrics.update(
            validate(
                parallel.g, val.batches(), cfg, start=val.start, cases=val.cases,
                autocast_dtype=amp,
                reduce=lambda vector: reduce_sum(vector, parallel.device),
            )
        )  # fmt: skip
        metrics["validation_s"] = time.perf_counter() - started
        progress.epoch(step, metrics)
        # a whole reporting cycle as the run sees it: the previous report and checkpoint, the
        # epochs' steps and this validation (the first also carries the data start-up)
        now = time.perf_counter()
        metrics["cycle_s"], cycle_start = now - cycle_start, now
        save = rank == 0 and schedule.is_checkpoint_epoch(cfg, epoch)
        _report(metrics, nets, cfg, save)
    progress.close()


def _report(metrics: dict[str, Any], nets: steps.Networks, cfg: ExperimentConfig, save: bool):
    """Every worker reports; rank 0 attaches a checkpoint on checkpoint epochs.

    The files are written to local disk here (the weights are copied off the device first, so
    training may go on); Ray uploads them to the run's storage in the background, retrying
    through an S3 outage (:mod:`hmss_ray.train.upload`), and then deletes the local copy.
    """
    if not save:
        ray.train.report(metrics, checkpoint=None)
        return
    directory = upload.save_local(lambda folder: ckpt.save_checkpoint(
        folder,
        generator=nets.generator,
        discriminator=nets.discriminator,
        optimizers=nets.optimizers,
        cfg=cfg,
        stage=metrics["stage"],
        epoch=metrics["epoch"],
        step=metrics["step"],
        metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        parent=nets.parent,
    ), metrics["epoch"])  # fmt: skip
    ray.train.report(
        metrics,
        checkpoint=ray.train.Checkpoint.from_directory(str(directory)),
        checkpoint_dir_name=f"epoch_{metrics['epoch']:04d}",
        checkpoint_upload_mode=ray.train.CheckpointUploadMode.ASYNC,
        delete_local_checkpoint_after_upload=True,  # only once uploaded: see train/upload.py
        checkpoint_upload_fn=upload.patient_upload,
    )
