"""Progress a person can follow: per-step lines, per-epoch summaries, TensorBoard event files.

``EpochMeter`` times the data iterator separately from the step, so the fraction of time spent
waiting for data is measured, not guessed.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from hmss_ray import storage

# a logger, not print: Ray Train tees a worker's print to the driver twice (stdout and its logger)
log = logging.getLogger("hmss_ray.train")


class EpochMeter:
    """Slices/s, data-wait fraction and running mean losses for one epoch on one worker."""

    def __init__(self, epoch: int, stage: str, world_size: int = 1) -> None:
        self.epoch, self.stage, self.world_size = epoch, stage, world_size
        self.steps = 0
        self.slices = 0
        self.wait_s = 0.0
        self.first_batch_s: float | None = None  # the data start-up of this epoch
        self.start = time.perf_counter()
        self._sums: dict[str, float] = defaultdict(float)

    def timed(self, batches: Iterable[Any]) -> Iterator[Any]:
        iterator = iter(batches)
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            waited = time.perf_counter() - t0
            self.wait_s += waited
            if self.first_batch_s is None:
                self.first_batch_s = waited
            yield batch

    def update(self, n_slices: int, losses: dict[str, float]) -> None:
        self.steps += 1
        self.slices += n_slices
        for key, value in losses.items():
            self._sums[key] += float(value)

    @property
    def elapsed(self) -> float:
        return max(time.perf_counter() - self.start, 1e-9)

    def summary(self) -> dict[str, float]:
        means = {f"loss_{k}": v / max(self.steps, 1) for k, v in self._sums.items()}
        # every worker sees its own share; the global rate is the per-worker rate x world size
        rate = self.slices / self.elapsed * self.world_size
        return {
            **means,
            "slices_per_s": rate,
            "data_wait_frac": self.wait_s / self.elapsed,
            "first_batch_s": self.first_batch_s or 0.0,
            "epoch_time_s": self.elapsed,
            "train_steps": self.steps,
        }


class ProgressLog:
    """Prints progress on rank 0 and writes TensorBoard scalars to ``log_uri`` (local or s3://)."""

    def __init__(self, log_uri: str | None, enabled: bool = True) -> None:
        self.enabled = enabled
        self.log_uri = log_uri
        self._writer = None
        self._local: str | None = None
        if enabled and log_uri:
            from tensorboardX import SummaryWriter

            remote = storage.is_remote(log_uri)
            self._local = tempfile.mkdtemp(prefix="hmss-tb-") if remote else log_uri
            self._writer = SummaryWriter(self._local)

    def step(self, step: int, meter: EpochMeter) -> None:
        if not self.enabled:
            return
        summary = meter.summary()
        losses = " ".join(f"{k[5:]}={v:.4f}" for k, v in summary.items() if k.startswith("loss_"))
        log.info(
            "[hmss] epoch %d (%s) step %d %s | %.1f slices/s, data wait %.0f%%",
            meter.epoch,
            meter.stage,
            step,
            losses,
            summary["slices_per_s"],
            100 * summary["data_wait_frac"],
        )
        if self._writer:
            for key, value in summary.items():
                self._writer.add_scalar(f"train/{key}", value, step)

    def epoch(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        shown = ("score", "ssim", "mae_hu", "psnr", "kid", "bone_dice", "low_mae_hu")
        text = " ".join(f"{k}={metrics[k]:.4g}" for k in shown if k in metrics)
        log.info(
            "[hmss] epoch %d (%s) done: %s | %.1f slices/s",
            metrics["epoch"],
            metrics["stage"],
            text,
            metrics.get("slices_per_s", 0),
        )
        if self._writer:
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self._writer.add_scalar(f"epoch/{key}", value, step)
            self._writer.flush()
            self._sync()

    def _sync(self) -> bool:
        if self._local and self.log_uri and storage.is_remote(self.log_uri):
            try:  # the whole folder each time: a sync missed in an S3 outage is made up later
                storage.copy_dir(self._local, self.log_uri)
            except OSError as exc:
                log.warning("TensorBoard files not copied to %s (%s); kept in %s", self.log_uri,
                            exc, self._local)  # fmt: skip
                return False
        return True

    def close(self) -> None:
        if self._writer:
            self._writer.close()
            if self._sync() and self.log_uri and storage.is_remote(self.log_uri):
                shutil.rmtree(self._local or "", ignore_errors=True)
