"""One request's work in a replica: parse, synthesise, encode, with stop points between.

Module-level helpers of :mod:`hmss_ray.serving.app` live here: Serve pickles the deployment
class when it is decorated, so what its methods call must be importable from a module.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
from fastapi import Request

from hmss_ray.config import IOConfig, UserError
from hmss_ray.inference.synthesizer import InputError, Synthesizer, synthesize_with_spread
from hmss_ray.io import Format, Volume, volume_from_bytes, volume_to_bytes
from hmss_ray.io.align import align_to
from hmss_ray.io.dicom_write import SeriesInfo
from hmss_ray.qa import flags
from hmss_ray.serving import audit, guard
from hmss_ray.serving.upload import Upload, bad, http_error


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


def work(
    synth: Synthesizer, upload: Upload, fmt: Format, region: str | None, level: int, rid: str,
    stop: threading.Event,
) -> tuple[bytes, float, int]:  # fmt: skip
    """Parse, synthesise and encode one volume in one worker thread (one hop off the event
    loop, not three): the answer's bytes, the inference seconds, the MR's voxel count.

    Each volume-sized buffer is let go as soon as it is used: the upload once parsed, the
    MR once synthesised, so that encoding holds only the sCT and its bytes. ``stop`` (the
    deadline passed, the client went away) ends the work between two phases.
    """
    t0 = time.perf_counter()
    try:
        mr, mask = parse_upload(upload, synth.cfg.io, rid)
    except UserError as exc:
        raise http_error(exc) from None
    upload.study = audit.study_uid(mr)
    upload.mr = upload.mask = b""  # the parsed volumes (or views of these bytes) live on
    if upload.patient.given() and "dicom" in mr.meta:
        raise bad(400, "patient_* fields are taken from the DICOM MR: send them only with "
                       "NIfTI, MetaImage or NRRD input")  # fmt: skip
    check_stop(stop)
    t1 = time.perf_counter()
    try:
        out, spread, body_mask = synthesize_with_spread(synth, mr, mask, region)
    except UserError as exc:
        raise http_error(exc) from None
    t2 = time.perf_counter()
    if spread is not None:  # with TTA or an ensemble: how unsure the model was, in the headers
        upload.spread = flags.spread_summary(spread.array, body_mask)
    del spread, body_mask
    check_stop(stop)
    series = SeriesInfo(
        model=synth.info.name,
        version=synth.info.version,
        patient=upload.patient,
        source=mr.meta.get("dicom"),
        uid_root=synth.cfg.io.uid_root,
    )
    voxels = int(mr.array.size)
    del mr, mask
    try:
        body = volume_to_bytes(out, fmt, series, level)
    except UserError as exc:
        raise http_error(exc) from None
    upload.timings.update(parse=t1 - t0, inference=t2 - t1, encode=time.perf_counter() - t2)
    return body, t2 - t1, voxels


def parse_upload(upload: Upload, limits: IOConfig, rid: str) -> tuple[Volume, Volume | None]:
    """The MR (and mask) of the upload. A reader's failure that is not a UserError is
    still the upload's fault (400): logged with the request id, answered in fixed words."""
    try:
        mr = volume_from_bytes(upload.mr, limits, "MR")
        mask = None if upload.mask is None else volume_from_bytes(upload.mask, limits, "mask")
    except UserError:
        raise
    except MemoryError:
        raise bad(413, "the upload needs more memory than this server allows") from None
    except Exception as exc:
        guard.log_unexpected(rid, exc)
        raise bad(400, "the upload cannot be read as an MR volume (NIfTI, MetaImage, NRRD, "
                       "a zipped DICOM series)") from None  # fmt: skip
    check_geometry(mr)
    if mask is None:
        return mr, None
    try:
        return mr, align_to(mask, mr.affine, mr.shape)
    except UserError as exc:
        raise InputError(f"the mask is not on the MR grid: {exc}") from None


def model_info(synth: Synthesizer, max_upload_mb: float) -> dict[str, Any]:
    """What ``GET /v1/model`` says: the entry, its validation metrics, its contract, limits."""
    cfg = synth.cfg
    return {
        **{k: v for k, v in synth.info.to_dict().items() if k != "metrics"},
        "validation_metrics": synth.info.metrics,
        "config": {
            "image_size": cfg.data.image_size,
            "context_slices": cfg.data.context_slices,
            "hu_range": list(cfg.data.hu_range),
            "regions": list(cfg.data.regions),
            "geometry": {
                "orientation": cfg.data.orientation,
                "spacing": {r: list(cfg.data.spacing[r]) for r in cfg.data.regions},
            },
            "model": cfg.to_dict()["model"],
        },
        "limits": {**cfg.to_dict()["io"], "max_upload_mb": max_upload_mb},
        "engine": synth.engine.info.to_dict() if synth.engine else None,
    }
