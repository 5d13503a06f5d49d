"""ASHA over epochs, its rungs from the staged schedule, optionally blind to arrival order.

Ray's ASHA decides at a rung only for the trial that arrives there, against the trials that
arrived before it: the first trial at a rung always goes on, and a better trial arriving later
cannot stop a worse one that has passed. With a few concurrent trials (the demo's two) the order
of arrival then decides whether anything is cut. ``tune.asha_recheck`` closes that gap: at each
report, a trial is also judged again at every rung it has passed, against everyone recorded there
now, and stops when it has fallen below the rung's cutoff. The cut becomes the one synchronous
successive halving would make, without waiting for stragglers at the rung. A trial stopped at a
rung leaves the later rungs it reached while running ahead, so it cannot cut the trial that beat
it (the demo's search once ended with both trials stopped, the winner at epoch 5 of 26).
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from hmss_ray.config import ExperimentConfig
from hmss_ray.train import schedule


class RecheckingASHA(ASHAScheduler):
    """ASHA that also re-judges a running trial at the rungs it has passed (module docstring)."""

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action != TrialScheduler.CONTINUE or self._metric not in result:
            return action
        bracket = self._trial_info[trial.trial_id]
        for milestone, recorded in bracket._rungs:  # Ray's rungs: (epoch, {trial_id: reward})
            mine = recorded.get(trial.trial_id)
            cutoff = bracket.cutoff(recorded)
            if mine is not None and cutoff is not None and mine < cutoff:
                best = max(recorded, key=recorded.get)
                sign = self._metric_op
                print(
                    f"[hmss] ASHA: stopping trial {trial.trial_id} after "
                    f"{result.get(self._time_attr)} epochs: at the rung after {int(milestone)} "
                    f"epochs its {self._metric} {sign * mine:.4g} is now below the cutoff "
                    f"(trial {best}: {sign * recorded[best]:.4g})"
                )
                self._num_stopped += 1
                # cut at this rung, it would never have reached the later ones: its records
                # there must not cut the trials that did (else both trials can stop)
                for later, entries in bracket._rungs:
                    if later > milestone:
                        entries.pop(trial.trial_id, None)
                return TrialScheduler.STOP
        return action


def asha_scheduler(cfg: ExperimentConfig) -> ASHAScheduler:
    """ASHA over epochs (the reported ``epochs_done``), its rungs from the staged schedule."""
    schedule.check_asha(cfg)
    kind = RecheckingASHA if cfg.tune.asha_recheck else ASHAScheduler
    return kind(
        metric="score",
        mode="min",
        time_attr="epochs_done",  # epochs, whatever train.val_every makes the reports
        max_t=max(schedule.total_epochs(cfg), 1),
        grace_period=schedule.asha_grace(cfg),
        reduction_factor=cfg.tune.asha_reduction_factor,
    )
