"""The Serve application on the rehearsal: ``serve/hmss-gpu.yaml`` with its GPU as ``accel``.

The GPU config is the source, as the node types' source is the cloud YAML: each replica asks for
the stand-in accelerator (so every replica needs a worker node, and Serve's autoscaling drives
the node autoscaler), the replica count is capped for one machine, and the autoscaling delays are
shortened so a rehearsal sees replicas go up under load and back down within a minute. The
config goes to the dashboard's Serve REST API (what ``serve deploy`` uses), never to a file, so
the S3 settings in its ``runtime_env`` are not written anywhere.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from infra.rehearsal.cluster import Rehearsal
from infra.rehearsal.config import ACCELERATOR, REHEARSAL_CPUS, REHEARSAL_MAX_PER_TYPE, ROOT

SERVE_GPU = ROOT / "serve" / "hmss-gpu.yaml"
APPLICATIONS = "/api/serve/applications/"

# Serve's defaults wait 30 s to scale up and 600 s to scale down: right for GPUs that cost money,
# too slow to watch on one machine
REHEARSAL_AUTOSCALING = {
    "upscale_delay_s": 2.0,
    "downscale_delay_s": 8.0,
    "look_back_period_s": 4.0,
    "metrics_interval_s": 1.0,
}


def serve_config(
    model: str,
    port: int,
    env_vars: dict[str, str],
    *,
    source: Path = SERVE_GPU,
    max_replicas: int = REHEARSAL_MAX_PER_TYPE,
    target_ongoing_requests: float = 1.0,
) -> dict[str, Any]:
    """The Serve deploy config for the rehearsal, derived from the GPU Serve config ``source``.

    Args:
        model: registry entry URI the replicas load (``s3://`` on the rehearsal).
        port: loopback port of the HTTP proxy (one proxy, on the head).
        env_vars: reach every replica (the S3 endpoint and credentials of the rehearsal).
        max_replicas: at most the cloud config's count.
        target_ongoing_requests: requests per replica before Serve adds one.
    """
    cfg = copy.deepcopy(yaml.safe_load(source.read_text()))
    # every fake node shares the machine's address: one proxy, on the head
    cfg["proxy_location"] = "HeadOnly"
    cfg["http_options"] = {"host": "127.0.0.1", "port": port}
    (app,) = cfg["applications"]
    app["args"]["model"] = model
    app["runtime_env"] = {"env_vars": dict(env_vars)}
    for deployment in app["deployments"]:
        options = deployment["ray_actor_options"]
        gpus = options.pop("num_gpus", 0)
        if gpus:
            options["resources"] = {ACCELERATOR: gpus}
        options["num_cpus"] = min(options.get("num_cpus", 1), REHEARSAL_CPUS)
        scaling = deployment["autoscaling_config"]
        scaling["max_replicas"] = min(scaling["max_replicas"], max_replicas)
        scaling["target_ongoing_requests"] = target_ongoing_requests
        scaling.update(REHEARSAL_AUTOSCALING)
        deployment["max_ongoing_requests"] = max(2, int(2 * target_ongoing_requests))
    return cfg


def deploy(rehearsal: Rehearsal, config: dict[str, Any]) -> None:
    """Deploy (or update) the applications of ``config`` on the rehearsal (``serve deploy``)."""
    rehearsal.request("PUT", APPLICATIONS, config, timeout=60)


def shutdown(rehearsal: Rehearsal) -> None:
    """Delete every Serve application and the proxy (``serve shutdown``)."""
    rehearsal.request("DELETE", APPLICATIONS, timeout=60)


def replica_bounds(config: dict[str, Any]) -> tuple[int, int]:
    """(min_replicas, max_replicas) of the config's deployment."""
    scaling = config["applications"][0]["deployments"][0]["autoscaling_config"]
    return scaling["min_replicas"], scaling["max_replicas"]
