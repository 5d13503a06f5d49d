"""The course of one request in a replica: stop points, a disconnect watch, input geometry.

Module-level helpers of :mod:`hmss_ray.serving.app` live here: Serve pickles the deployment
class when it is decorated, so what its methods call must be importable from a module.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
from fastapi import Request

from hmss_ray.inference.synthesizer import InputError
from hmss_ray.io import Volume


class Cancelled(Exception):
    """The request's deadline passed or its client went away: stop at the next phase."""


def check_geometry(volume: Volume) -> None:
    affine = np.asarray(volume.affine, dtype=np.float64)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputError("the MR's voxel-to-world matrix is singular or not finite (zero or NaN "
                         "spacing, direction or affine)")  # fmt: skip


def check_stop(stop: threading.Event) -> None:
    if stop.is_set():
        raise Cancelled()


async def client_gone(request: Request) -> None:
    """Returns once the client has gone away (polled after the body was read)."""
    while not await request.is_disconnected():
        await asyncio.sleep(0.25)


def http_host() -> str:
    """The host Serve's HTTP front binds (127.0.0.1 when it cannot be asked)."""
    try:
        import ray
        from ray.serve.context import _get_global_client

        controller = _get_global_client()._controller
        return str(ray.get(controller.get_http_config.remote(), timeout=10).host)
    except Exception:  # not under Serve (a unit test), or Ray moved its private API
        return "127.0.0.1"
