"""Which epochs validate, report, checkpoint, and where ASHA cuts, and each epoch's learning
rates, from the config alone.

An epoch that validates also reports to Ray (Tune sees every report, and every report carries a
``score``); the epochs are: every ``train.val_every``-th, the last epoch of every stage, every
checkpoint epoch (a checkpoint is ranked by a fresh score) and every ASHA rung. Checkpoints are
written every ``train.checkpoint_every`` epochs and after the last. ASHA counts epochs
(``epochs_done``), not reports, so ``val_every`` does not move its rungs.
"""

from __future__ import annotations

import math
from typing import Any

from hmss_ray.config import ConfigError, ExperimentConfig


def total_epochs(cfg: ExperimentConfig) -> int:
    return sum(cfg.train.stage_epochs)


def stage_ends(cfg: ExperimentConfig) -> set[int]:
    """0-based epochs that end a non-empty stage (the last epoch among them)."""
    ends, done = set(), 0
    for count in cfg.train.stage_epochs:
        done += count
        if count:
            ends.add(done - 1)
    return ends


def asha_grace(cfg: ExperimentConfig) -> int:
    """Epochs before ASHA's first cut: ``tune.asha_grace_period``, or the end of the HRG stage.

    The default (null) is ``lrg + hrg`` epochs, at least ``lrg + 1``: the first cut judges a
    cascade whose HRG has trained, never the LRG stage's untrained HRG output.
    """
    lrg, hrg, _ = cfg.train.stage_epochs
    if cfg.tune.asha_grace_period is not None:
        return cfg.tune.asha_grace_period
    return lrg + max(hrg, 1)


def check_asha(cfg: ExperimentConfig) -> None:
    """Refuse a grace period that would cut trials on the HRG score of the LRG-only stage."""
    lrg = cfg.train.stage_epochs[0]
    grace = asha_grace(cfg)
    if grace <= lrg < total_epochs(cfg):
        lrg_default = cfg.replace({"tune.asha_grace_period": None})
        raise ConfigError(
            f"tune.asha_grace_period = {grace} is not allowed: the first ASHA cut would judge the "
            f"HRG before it has trained (train.stage_epochs[0] = {lrg} LRG-only epochs); use a "
            f"value > {lrg}, or null for the end of the HRG stage ({asha_grace(lrg_default)})"
        )


def asha_rungs(cfg: ExperimentConfig) -> list[int]:
    """Epoch counts at which ASHA compares trials, with Ray's own formula (one bracket)."""
    grace, factor, max_t = asha_grace(cfg), cfg.tune.asha_reduction_factor, total_epochs(cfg)
    if grace > max_t:
        return []
    count = int(math.log(max_t / grace) / math.log(factor) + 1)  # as ray.tune's _Bracket
    return [grace * factor**k for k in range(count)]


def is_checkpoint_epoch(cfg: ExperimentConfig, epoch: int) -> bool:
    return (epoch + 1) % cfg.train.checkpoint_every == 0 or epoch == total_epochs(cfg) - 1


def is_validation_epoch(cfg: ExperimentConfig, epoch: int) -> bool:
    """Whether 0-based ``epoch`` validates and reports (see the module docstring)."""
    return (
        (epoch + 1) % cfg.train.val_every == 0
        or epoch in stage_ends(cfg)
        or is_checkpoint_epoch(cfg, epoch)
        or epoch + 1 in asha_rungs(cfg)
    )


def lr_factor(cfg: ExperimentConfig, epoch: int) -> float:
    """The learning-rate multiplier of ``epoch``: 1, then over the last ``optim.lr_decay_epochs``
    epochs of the schedule linearly down to ``1 / (N + 1)`` (never 0: the last epoch still
    learns)."""
    decay = cfg.optim.lr_decay_epochs
    first = total_epochs(cfg) - decay
    return 1.0 if epoch < first else 1.0 - (epoch - first + 1) / (decay + 1)


def set_epoch_lr(optimizers: dict[str, Any], cfg: ExperimentConfig, epoch: int) -> None:
    """Set ``epoch``'s learning rates (:func:`lr_factor`); a function of the epoch alone, so a
    resumed run continues the same schedule."""
    factor = lr_factor(cfg, epoch)
    for name, optimizer in optimizers.items():
        base = cfg.optim.lr_g if name == "g" else cfg.optim.lr_d
        for group in optimizer.param_groups:
            group["lr"] = base * factor
