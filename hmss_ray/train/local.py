"""The plain single-process training loop: for debugging, tests and as the throughput baseline.

It runs the same staged schedule and step functions as the Ray loop, on any iterables of dict
batches (numpy or torch: ``mr`` (N, C, S, S), ``ct`` and ``mask`` (N, 1, S, S)), such as
``hmss_ray.data.shards.iter_batches(uri, "train", batch_size)``. No shard format, no Ray.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hmss_ray.config import ExperimentConfig
from hmss_ray.models.factory import build_discriminator, build_generator
from hmss_ray.train import schedule, steps
from hmss_ray.train.validation import validate

Batches = Iterable[Mapping[str, Any]]
BatchSource = Callable[[int], Batches] | Batches


@dataclass
class LocalRun:
    """What :func:`run_local` leaves: the trained networks and the history of the run."""

    generator: nn.Module
    discriminator: nn.Module
    initial: dict[str, float] = field(default_factory=dict)  # validation before training
    epochs: list[dict[str, Any]] = field(default_factory=list)  # per epoch: losses, speed, metrics
    steps: list[dict[str, float]] = field(default_factory=list)  # per step: every loss term


def _batches(source: BatchSource | None, epoch: int) -> Batches:
    if source is None:
        return []
    if callable(source):
        return source(epoch)
    if iter(source) is source:  # a generator would be empty from the second epoch on
        raise ValueError(
            "pass batches as a list or as a callable epoch -> iterable, not an iterator"
        )
    return source


def run_local(
    cfg: ExperimentConfig,
    train_batches: BatchSource,
    val_batches: BatchSource | None = None,
    *,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    device: str | torch.device = "cpu",
    autocast_dtype: torch.dtype | None = None,
    log: Callable[[str], None] | None = None,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
) -> LocalRun:
    """Train ``cfg``'s cascade for ``epochs`` (default: the whole ``train.stage_epochs``).

    Args:
        cfg: the experiment; model, losses, optimiser, schedule and metrics come from it.
        train_batches: a callable ``epoch -> iterable of batches`` or a re-iterable (list).
        val_batches: the same, for validation before training and after every epoch.
        epochs: number of epochs; stages follow ``cfg.train.stage_epochs``.
        steps_per_epoch: cap on steps per epoch (default ``cfg.train.steps_per_epoch``).
        device: where the networks and batches live.
        autocast_dtype: e.g. ``torch.bfloat16`` on a GPU; None for float32.
        log: called with one line per epoch (e.g. ``print``).
        on_epoch: called with (epoch, generator) after every epoch, e.g. to keep snapshots
            for a checkpoint ensemble.
    """
    torch.manual_seed(cfg.train.seed)
    device = torch.device(device)
    amp = (device, autocast_dtype)
    run = LocalRun(build_generator(cfg).to(device), build_discriminator(cfg).to(device))
    g, d = run.generator, run.discriminator
    optimizers = steps.build_optimizers(cfg, g, d)
    if val_batches is not None:
        run.initial = _validate(g, val_batches, cfg, device)
    total_epochs = sum(cfg.train.stage_epochs) if epochs is None else epochs
    cap = steps_per_epoch or cfg.train.steps_per_epoch
    step = 0
    for epoch in range(total_epochs):
        stage = steps.stage_for_epoch(epoch, cfg.train.stage_epochs)
        steps.set_stage(g, stage)
        schedule.set_epoch_lr(optimizers, cfg, epoch)
        g.train(), d.train()
        batches = _batches(train_batches, epoch)
        summary, step = _train_epoch(
            run, (optimizers["g"], optimizers["d"]), batches, cfg, stage, step, cap, amp
        )
        summary["epoch"] = epoch
        if val_batches is not None:
            start = time.perf_counter()
            summary.update(_validate(g, val_batches, cfg, device))
            summary["validation_s"] = time.perf_counter() - start
        run.epochs.append(summary)
        if log:
            log(_line(summary))
        if on_epoch:
            on_epoch(epoch, g)
    return run


def _train_epoch(
    run: LocalRun,
    optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer],
    batches: Batches,
    cfg: ExperimentConfig,
    stage: str,
    step: int,
    cap: int | None,
    amp: tuple[torch.device, torch.dtype | None],
) -> tuple[dict[str, Any], int]:
    """One epoch of train steps; (summary with mean losses and speed, next global step)."""
    device, dtype = amp
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    slices, start = 0, time.perf_counter()
    for index, batch in enumerate(batches):
        if cap and index >= cap:
            break
        tensors = steps.prepare_batch(batch, device)
        losses = steps.train_step(
            run.generator, run.discriminator, *optimizers, tensors, cfg, stage, step, dtype
        )
        run.steps.append({"step": step, **losses})
        for key, value in losses.items():  # D keys come on D steps only: average over those
            sums[key] += value
            counts[key] += 1
        step += 1
        slices += len(tensors["mr"])
    elapsed = max(time.perf_counter() - start, 1e-9)
    summary: dict[str, Any] = {"stage": stage, "step": step}
    summary.update({f"loss_{k}": v / counts[k] for k, v in sums.items()})
    summary.update(slices=slices, epoch_time_s=elapsed, slices_per_s=slices / elapsed)
    return summary, step


def _validate(g: nn.Module, source: BatchSource, cfg: ExperimentConfig, device) -> dict:
    batches = (
        {**steps.prepare_batch(b, device), "case_id": b.get("case_id")} for b in _batches(source, 0)
    )  # case ids group the slices by patient, as the challenge scores
    return validate(g, batches, cfg)


def _line(summary: Mapping[str, Any]) -> str:
    shown = ("loss_g_total", "loss_d_total", "mae_hu", "ssim", "bone_dice", "slices_per_s")
    text = " ".join(f"{k}={summary[k]:.4g}" for k in shown if k in summary)
    return f"[hmss local] epoch {summary['epoch']} ({summary['stage']}) {text}"
