"""Where Ray runs: the cluster at ``RAY_ADDRESS`` when set, else a local Ray started here."""

from __future__ import annotations

import os

import ray


def init_ray(num_cpus: int | None = None) -> None:
    """Attach to ``RAY_ADDRESS`` (a cluster, or inside ``ray job submit``), else start Ray here.

    ``address="local"`` never attaches to a stale cluster left in Ray's temp folder.
    """
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
    else:
        # the dashboard serves the state API that Ray Train's placement-group cleaner polls
        ray.init(address="local", num_cpus=num_cpus, dashboard_host="127.0.0.1")
