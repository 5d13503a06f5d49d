"""Hand back a trial's autoscaler request when the trial ends, so idle worker nodes can go.

A Ray Train run asks the cluster's autoscaling coordinator for its workers' resources (renewed
every 20 s, expiring after 180 s) and cancels the request when its controller shuts down. In a
search the controller belongs to the trial's actor, and Tune stops that actor as soon as the
trial's last result is in: the controller dies with it, before its shutdown, and the request
stays behind, holding a GPU node for three more minutes (seen on the rehearsal cluster, where
the idle timeout is seconds). A lost node's restarted run leaves one too.

:func:`releasing` wraps the trial function in a Tune trainable whose ``cleanup`` (run in the
trial's actor when Tune stops it) cancels the requests of the Train runs that the trial started
(:func:`remember`); the controller is still alive then, and dies with the actor right after.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

_RUN_IDS: list[str] = []  # the Train runs started in this process (a trial's actor)


def remember(run_id: str) -> None:
    """Note a Train run started by this trial, whose request :func:`release` cancels."""
    _RUN_IDS.append(run_id)


def release() -> int:
    """Cancel the coordinator requests of the Train runs remembered here; how many."""
    try:  # a private Ray Train module: the only client of the coordinator's Train requests
        from ray.train.v2._internal.execution.scaling_policy import (
            autoscaling_coordinator_client as coordinator,
        )
    except ImportError as exc:
        log.warning("cannot release Train resource requests (they expire in 3 min): %s", exc)
        return 0
    released = 0
    while _RUN_IDS:
        run_id = _RUN_IDS.pop()
        # Ray Train's own requester id; it logs a warning itself when the call fails
        coordinator.TrainAutoscalingCoordinatorClient(f"train-{run_id}").cancel_resource_request()
        released += 1
    return released


def releasing(trial_fn: Callable) -> type:
    """The Tune trainable of ``trial_fn`` (as Tune would wrap it) that releases on cleanup."""
    from ray.tune.trainable.function_trainable import wrap_function

    base = wrap_function(trial_fn)

    class ReleasingTrial(base):  # type: ignore[misc, valid-type]
        def cleanup(self) -> None:
            try:
                super().cleanup()
            finally:
                release()

    ReleasingTrial.__name__ = base._name  # trial names stay <function>_<id>
    return ReleasingTrial
