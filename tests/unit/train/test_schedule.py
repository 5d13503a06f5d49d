"""Which epochs validate, report and checkpoint, and where ASHA cuts."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray.tune.schedulers import ASHAScheduler

from hmss_ray.config import ConfigError, ExperimentConfig, load_config
from hmss_ray.train import schedule
from hmss_ray.tune.scheduler import asha_scheduler

CONFIGS = sorted(Path(__file__).parents[3].joinpath("configs").glob("*.yaml"))


def cfg_with(**overrides) -> ExperimentConfig:
    return ExperimentConfig().replace(overrides)


def ray_rungs(scheduler: ASHAScheduler) -> list[int]:
    # the milestones Ray's own bracket will cut at (its rungs are stored last-first)
    return sorted(int(milestone) for milestone, _ in scheduler._brackets[0]._rungs)


@pytest.mark.parametrize(
    ("stage_epochs", "grace", "factor", "rungs"),
    [
        ((10, 5, 35), None, 2, [15, 30]),  # configs/brain.yaml: after the HRG stage, then joint
        ((10, 5, 35), None, 3, [15, 45]),
        ((10, 0, 40), None, 2, [11, 22, 44]),  # no HRG stage: one joint epoch first
        ((1, 1, 2), None, 2, [2, 4]),
        ((2, 2, 6), 3, 2, [3, 6]),
        ((1, 0, 1), None, 2, [2]),
        ((0, 0, 3), None, 2, [1, 2]),
    ],
)
def test_asha_rungs_follow_the_schedule_and_match_rays_own(stage_epochs, grace, factor, rungs):
    cfg = cfg_with(**{"train.stage_epochs": list(stage_epochs), "tune.asha_grace_period": grace,
                      "tune.asha_reduction_factor": factor})  # fmt: skip
    assert schedule.asha_rungs(cfg) == rungs
    assert ray_rungs(asha_scheduler(cfg)) == rungs
    lrg = stage_epochs[0]
    assert all(r > lrg for r in rungs)  # never the LRG-only stage's untrained HRG


def test_a_grace_period_inside_the_lrg_stage_is_refused():
    cfg = cfg_with(**{"train.stage_epochs": [10, 5, 35], "tune.asha_grace_period": 10})
    with pytest.raises(ConfigError, match=r"tune.asha_grace_period = 10 is not allowed.*\(15\)"):
        asha_scheduler(cfg)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_cut_after_the_hrg_stage(path):
    cfg = load_config(path)
    schedule.check_asha(cfg)
    lrg, hrg, _ = cfg.train.stage_epochs
    assert schedule.asha_rungs(cfg)[0] >= lrg + max(hrg, 1)


def test_validation_and_checkpoint_epochs():
    cfg = cfg_with(**{"train.stage_epochs": [3, 2, 7], "train.val_every": 4,
                      "train.checkpoint_every": 5})  # fmt: skip
    checkpoints = [e for e in range(12) if schedule.is_checkpoint_epoch(cfg, e)]
    assert checkpoints == [4, 9, 11]  # every 5th epoch and the last
    validations = [e for e in range(12) if schedule.is_validation_epoch(cfg, e)]
    # every 4th (3, 7, 11), stage ends (2, 4, 11), checkpoints (4, 9, 11), rungs 5 and 10 (4, 9)
    assert validations == [2, 3, 4, 7, 9, 11]
    assert schedule.stage_ends(cfg_with(**{"train.stage_epochs": [2, 0, 3]})) == {1, 4}


@pytest.mark.parametrize("key", ["train.val_every", "train.checkpoint_every"])
def test_every_keys_are_at_least_one(key):
    with pytest.raises(ConfigError, match=rf"{key} = 0 is not allowed: must be >= 1"):
        cfg_with(**{key: 0})


def test_grad_compression_is_a_choice():
    assert cfg_with(**{"train.grad_compression": "bf16"}).train.grad_compression == "bf16"
    with pytest.raises(ConfigError, match="choose one of: 'none', 'bf16'"):
        cfg_with(**{"train.grad_compression": "fp16"})


def test_learning_rates_decay_linearly_over_the_last_epochs_and_never_reach_zero():
    import torch

    cfg = ExperimentConfig().replace(
        {"train.stage_epochs": [1, 1, 4], "optim.lr_decay_epochs": 3, "optim.lr_d": 2e-3}
    )
    assert [schedule.lr_factor(cfg, e) for e in range(6)] == [1, 1, 1, 0.75, 0.5, 0.25]
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizers = {"g": torch.optim.Adam(params), "d": torch.optim.Adam(params)}
    schedule.set_epoch_lr(optimizers, cfg, 4)
    assert optimizers["g"].param_groups[0]["lr"] == pytest.approx(cfg.optim.lr_g * 0.5)
    assert optimizers["d"].param_groups[0]["lr"] == pytest.approx(1e-3)
    constant = ExperimentConfig()  # lr_decay_epochs 0: the rates stay as configured
    assert {schedule.lr_factor(constant, e) for e in range(10)} == {1.0}


class _Trial:
    """What Ray's ASHA reads of a trial: its id (the scheduler is driven here as Tune drives it)."""

    def __init__(self, trial_id: str):
        self.trial_id = trial_id


def _drive(cfg: ExperimentConfig, reports: list[tuple[str, int, float]]) -> dict[str, str]:
    """Feed ``(trial, epochs_done, score)`` reports in order; each trial's last decision."""
    scheduler = asha_scheduler(cfg)
    decisions: dict[str, str] = {}
    for trial_id, epochs, score in reports:
        if trial_id not in decisions:
            scheduler.on_trial_add(None, _Trial(trial_id))
        if decisions.get(trial_id) == "STOP":
            continue  # Tune sends no more results of a stopped trial
        result = {"epochs_done": epochs, "score": score}
        decisions[trial_id] = scheduler.on_trial_result(None, _Trial(trial_id), result)
    return decisions


DEMO_LIKE = {"train.stage_epochs": [1, 1, 6]}  # rungs after epochs 2 and 4
# "a" reaches the epoch-2 rung first and worse; "b" arrives there later, better
LATE_BETTER = [("a", 1, 0.9), ("b", 1, 0.9), ("a", 2, 0.6), ("a", 3, 0.5), ("b", 2, 0.4),
               ("a", 4, 0.45), ("b", 3, 0.35)]  # fmt: skip


def test_rays_asha_lets_a_worse_trial_through_when_it_reaches_the_rung_first():
    decisions = _drive(cfg_with(**DEMO_LIKE), LATE_BETTER)
    assert decisions == {"a": "CONTINUE", "b": "CONTINUE"}  # both run to the end


def test_asha_recheck_stops_the_worse_trial_whatever_the_order_of_arrival(capsys):
    cfg = cfg_with(**DEMO_LIKE, **{"tune.asha_recheck": True})
    assert _drive(cfg, LATE_BETTER) == {"a": "STOP", "b": "CONTINUE"}
    assert "at the rung after 2 epochs its score 0.6 is now below the cutoff (trial b: 0.4)" in (
        capsys.readouterr().out
    )
    # the worse trial arriving second is stopped on arrival, as plain ASHA does
    late_worse = [("a", 2, 0.4), ("b", 2, 0.6), ("a", 3, 0.35)]
    assert _drive(cfg, late_worse) == {"a": "CONTINUE", "b": "STOP"}
    # "a" runs ahead past the epoch-4 rung before "b" beats it at epoch 2: a is cut at rung 2,
    # and its rung-4 record must not then cut b (both would stop, the search end at epoch 5)
    ahead = [("a", 2, 0.6), ("a", 3, 0.5), ("a", 4, 0.3), ("b", 2, 0.4), ("a", 5, 0.28),
             ("b", 3, 0.5), ("b", 4, 0.45), ("b", 5, 0.4)]  # fmt: skip
    assert _drive(cfg, ahead) == {"a": "STOP", "b": "CONTINUE"}
    # a lone trial at a rung is its own cutoff: never stopped by the recheck
    assert _drive(cfg, [("a", 2, 0.6), ("a", 3, 0.5), ("a", 4, 0.4)]) == {"a": "CONTINUE"}


def test_shipped_demo_config_rechecks_its_two_trials():
    cfg = load_config(next(p for p in CONFIGS if p.name == "demo.yaml"))
    assert cfg.tune.asha_recheck and cfg.tune.max_concurrent_trials == 2
