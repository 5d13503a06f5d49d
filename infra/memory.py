"""Memory of one sCT replica, and how many replicas a pod of the RayService may hold.

The endpoint bounds what a replica holds (hmss_ray/serving/app.py, SCTSynthesizer): at most
``max_ongoing_requests`` requests, each at most ``serve.max_upload_mb`` of upload, and one volume
decoded at a time, whose peak is ~40 bytes per voxel up to ``io.max_voxels``. With the torch
runtime, the generator's weights and the Ray worker itself (``RUNTIME_BYTES``):

    replica = max_ongoing_requests x max_upload_mb MiB + 40 B x max_voxels + 2 GiB

CPU config (4 requests, 512 MiB, 2^28 voxels): 2 + 10 + 2 = 14 GiB; GPU config (8 requests):
16 GiB. ``python -m infra.render`` writes this as each replica's Ray ``memory`` in the
RayService, and every Serve worker group advertises to Ray only

    advertised = pod memory limit - RAY_SYSTEM_BYTES - object store - memory-backed emptyDirs

so Ray's scheduler never packs more replicas into a pod than its limit holds (the pod is not
OOM-killed by two large volumes). tests/unit/test_infra_policy.py checks both.
"""

from __future__ import annotations

from typing import Any

GiB = 2**30
MiB = 2**20
BYTES_PER_VOXEL = 40  # peak while one volume is decoded, synthesised and encoded (IOConfig)
RUNTIME_BYTES = 2 * GiB  # torch, the generator, the Ray worker process
RAY_SYSTEM_BYTES = 2 * GiB  # raylet, dashboard agent, log monitor, the HAProxy of the node


def replica_bytes(max_ongoing_requests: int, max_upload_mb: float, max_voxels: int) -> int:
    """Peak memory of one replica (module docstring)."""
    return int(
        max_ongoing_requests * max_upload_mb * MiB + BYTES_PER_VOXEL * max_voxels + RUNTIME_BYTES
    )


def deployment_bytes(deployment: dict[str, Any]) -> int:
    """:func:`replica_bytes` of one deployment of a Serve config, with the project's limits
    (``serve.max_upload_mb``, ``io.max_voxels``; a model whose config raises them needs more)."""
    from hmss_ray.config.inference import IOConfig, ServeConfig

    requests = int(deployment.get("max_ongoing_requests", ServeConfig.max_ongoing_requests))
    return replica_bytes(requests, ServeConfig.max_upload_mb, IOConfig.max_voxels)


def quantity_bytes(value: str | int) -> int:
    """A Kubernetes memory quantity (``28Gi``, ``512Mi``, ``1073741824``) in bytes."""
    text = str(value)
    units = {"Ki": 2**10, "Mi": MiB, "Gi": GiB, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)
