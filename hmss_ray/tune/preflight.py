"""Pre-flight of a search: what would fail at the end of a search (or silently) fails first.

Before any trial starts, :func:`preflight` checks, with one line each, that the search state root
and the model registry can be written (a probe object written and deleted, local or ``s3://``)
and what the pretrained-weights policy gives for this run. A registry in a bucket the user cannot
write (as the region configs' old default ``s3://hmss-models`` was) is an error in seconds, not
after hours of trials.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

from hmss_ray import storage
from hmss_ray.config import ExperimentConfig, UserError


class PreflightError(UserError):
    """A search would fail later: a URI that cannot be written, weights a GPU run needs."""


def check_writable(uri: str, role: str, hint: str) -> str:
    """Write and delete a probe object under ``uri``; the line to print, or a PreflightError
    naming ``role`` (``"search state"``, ``"registry"``) and what to do (``hint``)."""
    probe = storage.join(uri, f".hmss-preflight-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        storage.write_bytes(probe, b"hmss-ray pre-flight probe\n")
        storage.delete(probe)
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise PreflightError(f"{role} {uri} is not writable ({reason}); {hint}") from None
    return f"{role} {uri}: writable"


def weights_policy(cfg: ExperimentConfig) -> str:
    """The pretrained-weights line; raises (a MissingWeightsError) when a GPU run lacks them."""
    from hmss_ray.metrics.features import check_pretrained, needed_weights

    missing = check_pretrained(cfg)
    needed = ", ".join(str(k) for k in needed_weights(cfg))
    if not missing:
        return f"pretrained weights: found ({needed})"
    names = ", ".join(str(k) for k in missing)
    if cfg.train.use_gpu:
        why = "train.allow_random_features is set"
    else:
        why = "a CPU run (train.use_gpu=false)"
    return (
        f"pretrained weights: missing ({names}); seeded random features, as {why}: the objective "
        "only compares runs with the same fallback"
    )


def preflight(
    cfg: ExperimentConfig, state: str, registry: str, say: Callable[[str], None] = print
) -> None:
    """Check the weights policy, the search state root and the registry; ``say`` each line."""
    checks: list[Callable[[], str]] = [
        lambda: weights_policy(cfg),  # first: it writes nothing
        lambda: check_writable(state, "search state", "give --storage a path or bucket you own"),
        lambda: check_writable(
            registry, "registry", "give -o/--output (or tune.registry) a path or bucket you own"
        ),
    ]
    for check in checks:
        say(f"[hmss] pre-flight: {check()}")
