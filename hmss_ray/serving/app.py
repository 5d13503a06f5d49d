"""Ray Serve: the registry's winner behind HTTP (FastAPI ingress).

    serve run serve/hmss.yaml          # from the config file (serve deploy on a cluster)
    python -m hmss_ray.serving --model outputs/registry/demo --port 8000   (see __main__)

API: ``POST /v1/synthesize`` (an MR as NIfTI, MetaImage, NRRD or a zipped DICOM series; or
multipart ``mr`` + optional ``mask`` + optional ``patient_*`` fields) -> the sCT as NIfTI,
MetaImage, NRRD or a zipped DICOM CT series (``?format=`` or ``Accept``); ``GET /v1/model``;
``GET /healthz``.
A bad request gets a 4xx with a JSON ``detail`` that says what is wrong, and never takes the
replica down. Metrics: :mod:`hmss_ray.serving.metrics`.
"""

# no `from __future__ import annotations`: FastAPI must see the real Request/Response types
# on the routes of the Serve class to inject the request

import asyncio
import hmac
import os
import time
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from ray import serve

from hmss_ray.config import UserError
from hmss_ray.inference.synthesizer import InputError, Synthesizer, synthesize_volume
from hmss_ray.io import Format, Volume, volume_from_bytes, volume_to_bytes
from hmss_ray.io.align import align_to
from hmss_ray.io.dicom_write import SeriesInfo
from hmss_ray.io.formats import MEDIA_TYPES
from hmss_ray.registry.live import follow
from hmss_ray.serving import audit
from hmss_ray.serving.metrics import ServeMetrics
from hmss_ray.serving.upload import (
    Upload,
    bad,
    choose_format,
    gzip_level,
    http_error,
    read_upload,
)

DEPLOYMENT = "SCTSynthesizer"

app = FastAPI(
    title="hmss-ray synthetic CT",
    version="1",
    description="MR volume in (NIfTI, MetaImage, NRRD, zipped DICOM series), synthetic CT out "
    "(int16 HU on the MR grid; NIfTI by default, or MetaImage, NRRD, a DICOM CT series).",
)


@serve.deployment(name=DEPLOYMENT)
@serve.ingress(app)
class SCTSynthesizer:
    """One replica: one loaded generator, and a bounded amount of memory.

    At most ``serve.max_ongoing_requests`` requests are in the replica (more wait in the proxy's
    queue); each holds at most its upload (``serve.max_upload_mb``). One volume at a time is
    decoded, synthesised and encoded (a semaphore): its decoding is capped by the ``io`` limits
    (``io.max_decompressed_mb``, ``io.max_voxels``) before anything large is allocated. Peak memory
    is therefore about ``max_ongoing_requests x max_upload_mb`` plus one volume's cost.
    """

    def __init__(
        self,
        model: str,
        max_upload_mb: float | None = None,
        api_token_env: str | None = None,
        device: str = "auto",
        io: dict[str, Any] | None = None,
        engine: dict[str, Any] | None = None,
        tta: str | None = None,
    ) -> None:
        # engine: serve.precision / compile / channels_last overrides of the model's config
        overrides = {f"io.{k}": v for k, v in (io or {}).items()}
        overrides.update({f"serve.{k}": v for k, v in (engine or {}).items()})
        # registry: the pinned alias is followed; a promotion swaps the model in (live.py)
        self.live = follow(
            model,
            lambda uri: Synthesizer.from_uri(uri, device=device, overrides=overrides, tta=tta),
            lambda new: setattr(self, "synth", new),
        )
        synth = self.synth = self.live.current
        serve_cfg = synth.cfg.serve
        self.limits = synth.cfg.io
        self.max_bytes = int((max_upload_mb or serve_cfg.max_upload_mb) * 2**20)
        self.token = os.environ.get(api_token_env or serve_cfg.api_token_env) or None
        self.one_volume = asyncio.Semaphore(1)
        self.metrics = ServeMetrics()

    def check_health(self) -> None:
        if self.synth.generator is None:  # pragma: no cover - a replica that lost its model
            raise RuntimeError("no model loaded")

    def _authorise(self, request: Request) -> None:
        if self.token is None:
            return
        given = request.headers.get("authorization", "")
        if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:], self.token):
            raise bad(401, "missing or wrong API token: send 'Authorization: Bearer <token>'")

    @app.get("/healthz")
    def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/model")
    def model(self, request: Request) -> dict[str, Any]:
        self._authorise(request)
        cfg = self.synth.cfg
        return {
            **{k: v for k, v in self.synth.info.to_dict().items() if k != "metrics"},
            "validation_metrics": self.synth.info.metrics,
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
            "limits": {**cfg.to_dict()["io"], "max_upload_mb": self.max_bytes / 2**20},
            "engine": self.synth.engine.info.to_dict() if self.synth.engine else None,
        }

    @app.post("/v1/synthesize")
    async def synthesize(self, request: Request, format: str | None = None) -> Response:
        t0 = time.perf_counter()
        status, fmt, upload = 500, "none", None
        synth = self.synth  # the model this request uses, whatever a promotion swaps in
        try:
            self._authorise(request)
            fmt = choose_format(format, request.headers.get("accept", ""))
            upload = await read_upload(request, self.max_bytes)
            upload.timings["upload"] = time.perf_counter() - t0
            level = gzip_level(
                request.headers.get("accept-encoding", ""),
                request.client.host if request.client else None,
            )
            region = request.query_params.get("region")
            response = await self._answer(upload, fmt, region, level, synth)
            status = response.status_code
            return response
        except HTTPException as exc:
            status = exc.status_code
            raise
        finally:
            self.metrics.request(status, time.perf_counter() - t0, str(fmt))
            info, study = synth.info, upload.study if upload else None
            audit.record(request, status, info.name, info.version, study)  # serving/audit.py

    async def _answer(
        self, upload: Upload, fmt: Format, region: str | None, level: int, synth: Synthesizer
    ) -> Response:
        # region: a multi-region model's contract to use (?region=); level: the .nii.gz's gzip;
        # synth: the model taken when the request started (a promotion may swap self.synth)
        if upload.patient.given() and fmt is not Format.DICOM:
            raise bad(400, "patient_* fields only apply to DICOM output (?format=dicom)")
        waited = time.perf_counter()
        async with self.one_volume:
            waited = time.perf_counter() - waited
            try:
                work = await run_in_threadpool(self._work, upload, fmt, region, level, synth)
            except UserError as exc:
                raise http_error(exc) from exc
        body, elapsed, voxels = work
        self.metrics.volume(voxels, elapsed)
        upload.timings["queue"] = waited
        media_type, filename = MEDIA_TYPES[fmt]
        return Response(
            content=body,
            media_type=media_type,
            headers={
                "X-Model-Name": synth.info.name,
                "X-Model-Version": synth.info.version,
                "X-Inference-Time-Ms": f"{elapsed * 1000:.1f}",
                "X-Queue-Time-Ms": f"{waited * 1000:.1f}",
                "X-Engine": synth.engine.info.name if synth.engine else "-",
                # where the replica's time went (W3C Server-Timing): the rest of a call's time
                # is HTTP and the Serve proxy
                "Server-Timing": ", ".join(
                    f"{name};dur={seconds * 1000:.1f}" for name, seconds in upload.timings.items()
                ),
                "Content-Disposition": f'attachment; filename="{filename}"',
            },
        )

    def _work(
        self, upload: Upload, fmt: Format, region: str | None, level: int, synth: Synthesizer
    ) -> tuple[bytes, float, int]:
        """Parse, synthesise and encode one volume in one worker thread (one hop off the event
        loop, not three): the answer's bytes, the inference seconds, the MR's voxel count.

        Each volume-sized buffer is let go as soon as it is used: the upload once parsed, the
        MR once synthesised, so that encoding holds only the sCT and its bytes.
        """
        t0 = time.perf_counter()
        mr, mask = self._parse(upload)
        upload.study = audit.study_uid(mr)
        upload.mr = upload.mask = b""  # the parsed volumes (or views of these bytes) live on
        if upload.patient.given() and "dicom" in mr.meta:
            raise UserError(
                "patient_* fields are taken from the DICOM MR: send them only with "
                "NIfTI, MetaImage or NRRD input"
            )
        t1 = time.perf_counter()
        out = synthesize_volume(synth, mr, mask, region)
        t2 = time.perf_counter()
        series = SeriesInfo(
            model=synth.info.name,
            version=synth.info.version,
            patient=upload.patient,
            source=mr.meta.get("dicom"),
        )
        voxels = int(mr.array.size)
        del mr, mask
        body = volume_to_bytes(out, fmt, series, level)
        upload.timings.update(parse=t1 - t0, inference=t2 - t1, encode=time.perf_counter() - t2)
        return body, t2 - t1, voxels

    def _parse(self, upload: Upload) -> tuple[Volume, Volume | None]:
        mr = volume_from_bytes(upload.mr, self.limits, "MR")
        if upload.mask is None:
            return mr, None
        mask = volume_from_bytes(upload.mask, self.limits, "mask")
        try:
            return mr, align_to(mask, mr.affine, mr.shape)
        except UserError as exc:
            raise InputError(f"the mask is not on the MR grid: {exc}") from None


def build_app(args: dict[str, Any]) -> serve.Application:
    """Application builder for ``serve run`` / ``serve deploy``: ``args: {model: URI, ...}``."""
    if "model" not in args:
        raise ValueError("the Serve application needs args.model: a registry entry URI")
    keys = ("max_upload_mb", "api_token_env", "device", "io", "engine", "tta")
    kwargs = {k: args[k] for k in keys if k in args}
    return SCTSynthesizer.bind(model=str(args["model"]), **kwargs)


def deploy(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    name: str = "hmss",
    route_prefix: str = "/",
    env: dict[str, str] | None = None,
    blocking: bool = False,
    **options: Any,
) -> str:
    """Start Serve on ``host:port`` (loopback by default) and deploy ``model``; returns its URL.

    The HTTP front is HAProxy when Ray was started with :data:`hmss_ray.cluster.SERVE_ENV` (as
    :func:`hmss_ray.cluster.init_ray` starts a local Ray); it binds ``host`` like the proxy actor.

    ``env`` reaches the replicas (e.g. the variable holding the API token); ``options`` go to
    ``SCTSynthesizer`` (``max_upload_mb``, ``api_token_env``, ``device``, ``io``: overrides of
    the ``io`` limits such as ``{"max_voxels": 2**26}``, ``engine``: of ``serve.precision``,
    ``serve.compile``, ``serve.channels_last`` such as ``{"precision": "bf16"}``, ``tta``:
    overrides the entry's ``inference.tta``).
    """
    from hmss_ray.models.checkpoint import localize, read_meta

    cfg = read_meta(localize(model)).cfg.serve
    serve.start(http_options={"host": host, "port": port})
    deployment = SCTSynthesizer.options(
        autoscaling_config={
            "min_replicas": cfg.min_replicas,
            "max_replicas": cfg.max_replicas,
            "target_ongoing_requests": cfg.target_ongoing_requests,
        },
        max_ongoing_requests=cfg.max_ongoing_requests,
        ray_actor_options={
            "num_cpus": cfg.num_cpus,
            "num_gpus": cfg.num_gpus,
            "runtime_env": {"env_vars": dict(env or {})},
        },
    )
    serve.run(
        deployment.bind(model=model, **options),
        name=name,
        route_prefix=route_prefix,
        blocking=blocking,
    )
    return f"http://{host}:{port}{route_prefix.rstrip('/')}"
