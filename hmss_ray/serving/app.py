"""Ray Serve: the registry's winner behind HTTP (FastAPI ingress).

    serve run serve/hmss.yaml          # from the config file (serve deploy on a cluster)
    python -m hmss_ray.serving --model outputs/registry/demo --port 8000   (see __main__)

API: ``POST /v1/synthesize`` (an MR as NIfTI, MetaImage, NRRD or a zipped DICOM series; or
multipart ``mr`` + optional ``mask`` + optional ``patient_*`` fields) -> the sCT as NIfTI,
MetaImage, NRRD or a zipped DICOM CT series (``?format=`` or ``Accept``); ``GET /v1/model``;
``GET /healthz``; ``GET /openapi.json`` and ``/docs``.
A bad request gets a 4xx with a JSON ``detail`` that says what is wrong, and never takes the
replica down; a server fault a 500 with a ``request_id`` that the replica's log carries.
The limits, deadlines and tokens are the deployment's (``serve``/``io`` args), never the
model's: docs/security/endpoint.md. Metrics: :mod:`hmss_ray.serving.metrics`.
"""

# no `from __future__ import annotations`: FastAPI must see the real Request/Response types
# on the routes of the Serve class to inject the request

import asyncio
import threading
import time
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from ray import serve

from hmss_ray.config import IOConfig
from hmss_ray.config.inference import ServeConfig
from hmss_ray.config.tree import build, to_plain
from hmss_ray.inference.synthesizer import Synthesizer
from hmss_ray.io import Format
from hmss_ray.io.formats import MEDIA_TYPES
from hmss_ray.qa.web import add_routes as add_qa_page
from hmss_ray.registry.live import NotReady, follow
from hmss_ray.serving import audit, guard
from hmss_ray.serving.flow import client_gone, http_host, model_info, work
from hmss_ray.serving.metrics import ServeMetrics
from hmss_ray.serving.openapi import (
    FORMAT_DESCRIPTION,
    REGION_DESCRIPTION,
    REQUEST_BODY,
    synthesize_responses,
)
from hmss_ray.serving.scratch import Scratch
from hmss_ray.serving.upload import (
    Pace,
    Upload,
    bad,
    choose_format,
    gzip_level,
    read_upload,
)

DEPLOYMENT = "SCTSynthesizer"

app = FastAPI(
    title="hmss-ray synthetic CT",
    version="1",
    description="MR volume in (NIfTI, MetaImage, NRRD, zipped DICOM series), synthetic CT out "
    "(int16 HU on the MR grid; NIfTI by default, or MetaImage, NRRD, a DICOM CT series). "
    "Send 'Authorization: Bearer <token>' when the deployment sets a token.",
    docs_url=None,  # served below, behind the token
    redoc_url=None,
    openapi_url=None,
)
add_qa_page(app)  # GET /qa: the QA page in the browser (hmss_ray.qa.web)


def spread_headers(spread: dict[str, float]) -> dict[str, str]:
    """With TTA or an ensemble: the passes' spread inside the body (docs/predict.md)."""
    if not spread:
        return {}
    return {
        "X-Spread-Mean-HU": f"{spread['spread_mean_hu']:.1f}",
        "X-Spread-Fraction-Over-100-HU": f"{spread['spread_fraction']:.4f}",
    }


def deployment_config(serve_args: dict[str, Any] | None, io: dict[str, Any] | None):
    """The deployment's ``serve`` and ``io`` sections: defaults and the deployment's keys."""
    return build(ServeConfig, dict(serve_args or {}), "serve."), build(
        IOConfig, dict(io or {}), "io."
    )


@serve.deployment(name=DEPLOYMENT)
@serve.ingress(app)
class SCTSynthesizer:
    """One replica: one loaded generator, and a bounded amount of memory.

    At most ``serve.max_ongoing_requests`` requests are in the replica; their uploads together
    hold at most ``serve.max_buffered_mb`` (each at most ``serve.max_upload_mb``), more get a
    503. One volume at a time is decoded, synthesised and encoded (a semaphore, at most
    ``serve.max_waiting`` waiting for it); decoding is capped by the ``io`` limits before
    anything large is allocated. Memory: docs/security/endpoint.md.
    """

    def __init__(
        self,
        model: str,
        serve: dict[str, Any] | None = None,
        io: dict[str, Any] | None = None,
        device: str = "auto",
        engine: dict[str, Any] | None = None,
        tta: str | None = None,
        max_upload_mb: float | None = None,
        api_token_env: str | None = None,
    ) -> None:
        legacy = {"max_upload_mb": max_upload_mb, "api_token_env": api_token_env}
        serve_args = {**{k: v for k, v in legacy.items() if v is not None}, **(serve or {})}
        self.cfg, limits = deployment_config(serve_args, io)
        self.tokens = guard.load_tokens(self.cfg)
        guard.require_token_off_loopback(http_host(), self.tokens)
        self.scratch = Scratch()
        # every io key is the deployment's; engine: serve.precision / compile / channels_last
        overrides = {f"io.{k}": v for k, v in to_plain(limits).items()}
        overrides.update({f"serve.{k}": v for k, v in (engine or {}).items()})
        # registry: the pinned alias is followed; a promotion switches every replica at its
        # activation time (live.py)
        self.live = follow(
            model,
            lambda uri, at: Synthesizer.from_uri(
                uri, device=device, overrides=overrides, tta=tta, at=at
            ),
            lambda new: setattr(self, "synth", new),
        )
        self.synth = self.live.current
        self.limits = self.synth.cfg.io
        self.pace = Pace(
            max_bytes=int(self.cfg.max_upload_mb * 2**20),
            grace_s=self.cfg.upload_grace_s,
            min_rate=self.cfg.min_upload_kbps * 1e3,
            budget=int(self.cfg.max_buffered_mb * 2**20),
            retry_after_s=self.cfg.retry_after_s,
        )
        self.one_volume = asyncio.Semaphore(1)
        self.waiting = 0
        self.metrics = ServeMetrics()

    def check_health(self) -> None:
        if self.synth.generator is None:  # pragma: no cover - a replica that lost its model
            raise RuntimeError("no model loaded")

    def _admit(self, request: Request) -> None:
        """The Host allow-list, then the token (401 for anything but a configured one)."""
        headers = request.scope.get("headers", [])
        if not guard.host_allowed(guard.header(headers, b"host"), self.cfg.allowed_hosts):
            raise bad(421, "this Host is not served here (serve.allowed_hosts)")
        if not guard.authorised(guard.header(headers, b"authorization"), self.tokens):
            raise guard.unauthorised()

    @app.get("/healthz")
    def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(self, request: Request) -> JSONResponse:
        self._admit(request)
        spec = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        return JSONResponse(spec)

    @app.get("/docs", include_in_schema=False)
    def docs(self, request: Request) -> HTMLResponse:
        self._admit(request)
        prefix = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(openapi_url=f"{prefix}/openapi.json", title=app.title)

    @app.get("/v1/model")
    def model(self, request: Request) -> dict[str, Any]:
        self._admit(request)
        synth = self.live.model_now() or self.synth  # the version the pin names now
        return model_info(synth, self.cfg.max_upload_mb)

    @app.post(
        "/v1/synthesize",
        openapi_extra={"requestBody": REQUEST_BODY},
        responses=synthesize_responses(),
        response_class=Response,
    )
    async def synthesize(
        self,
        request: Request,
        format: str | None = Query(None, description=FORMAT_DESCRIPTION),
        region: str | None = Query(None, description=REGION_DESCRIPTION),
    ) -> Response:
        t0, rid = time.perf_counter(), guard.new_request_id()
        status, fmt = 500, "none"
        synth = self.synth
        try:
            self._admit(request)
            # the version the pin names at this request's arrival, whatever a promotion swaps in
            synth = await self.live.model_at_arrival()
            fmt = choose_format(format, request.headers.get("accept", ""))
            response = await asyncio.wait_for(
                self._handle(request, fmt, region, rid, t0, synth), self.cfg.request_timeout_s
            )
        except TimeoutError:
            response = self._error(503, "the request took longer than serve.request_timeout_s: "
                                        "retry later", rid)  # fmt: skip
        except HTTPException as exc:
            response = self._error(exc.status_code, str(exc.detail), rid, exc.headers)
        except NotReady as exc:  # a promoted version due, still loading here (live.py)
            response = self._error(503, str(exc), rid)
        except Exception as exc:  # a server fault: its id, never its text, goes to the client
            guard.log_unexpected(rid, exc)
            response = self._error(500, f"internal error; quote request id {rid}", rid)
        status = response.status_code
        self.metrics.request(status, time.perf_counter() - t0, str(fmt))
        upload, info = getattr(request.state, "upload", None), synth.info
        study = upload.study if upload else None
        audit.record(request, status, info.name, info.version, study)  # serving/audit.py
        return response

    def _error(self, status: int, detail: str, rid: str, headers=None) -> JSONResponse:
        content = {"detail": detail, **({"request_id": rid} if status >= 500 else {})}
        headers = {**(headers or {}), "X-Request-Id": rid}
        if status == 503:
            headers.setdefault("Retry-After", str(self.cfg.retry_after_s))
        return JSONResponse(content, status_code=status, headers=headers)

    async def _handle(
        self, request: Request, fmt: Format, region: str | None, rid: str, t0: float,
        synth: Synthesizer,
    ) -> Response:  # fmt: skip
        upload = await read_upload(request, self.pace)
        request.state.upload = upload  # its study (set once parsed) goes to the audit line
        upload.timings["upload"] = time.perf_counter() - t0
        if upload.patient.given() and fmt is not Format.DICOM:
            raise bad(400, "patient_* fields only apply to DICOM output (?format=dicom)")
        level = gzip_level(
            request.headers.get("accept-encoding", ""),
            request.client.host if request.client else None,
        )
        stop = threading.Event()
        job = asyncio.ensure_future(self._queued(upload, fmt, region, level, rid, stop, synth))
        watch = asyncio.ensure_future(client_gone(request))
        try:
            await asyncio.wait({job, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not job.done():  # the client went away, or the deadline cancelled this request
                stop.set()
                job.cancel()
            watch.cancel()
        if not job.done() or job.cancelled():
            raise bad(499, "the client went away")
        body, waited, elapsed, voxels = job.result()
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
                "X-Request-Id": rid,
                # where the replica's time went (W3C Server-Timing): the rest of a call's time
                # is HTTP and the Serve proxy
                "Server-Timing": ", ".join(
                    f"{name};dur={seconds * 1000:.1f}" for name, seconds in upload.timings.items()
                ),
                "Content-Disposition": f'attachment; filename="{filename}"',
                **spread_headers(upload.spread),
            },
        )

    async def _queued(
        self, upload: Upload, fmt: Format, region, level: int, rid: str, stop: threading.Event,
        synth: Synthesizer,
    ) -> tuple[bytes, float, float, int]:  # fmt: skip
        """Wait for the one-volume slot (503 when ``serve.max_waiting`` already wait), then
        work in a thread that keeps the slot until it ends, even if this request is dropped."""
        if self.waiting >= self.cfg.max_waiting:
            raise bad(503, "the server is busy (serve.max_waiting requests queued): retry")
        waited = time.perf_counter()
        self.waiting += 1
        try:
            await self.one_volume.acquire()
        finally:
            self.waiting -= 1
        waited = time.perf_counter() - waited
        task = asyncio.ensure_future(
            run_in_threadpool(work, synth, upload, fmt, region, level, rid, stop)
        )
        task.add_done_callback(self._release)
        body, elapsed, voxels = await asyncio.shield(task)
        return body, waited, elapsed, voxels

    def _release(self, task: asyncio.Future) -> None:
        self.scratch.clear()
        self.one_volume.release()
        if not task.cancelled():
            task.exception()  # retrieved here; the request that awaits it raises it


def build_app(args: dict[str, Any]) -> serve.Application:
    """Application builder for ``serve run`` / ``serve deploy``: ``args: {model: URI, serve:
    {...}, io: {...}, ...}``; ``serve``/``io`` are the deployment's limits (endpoint.md)."""
    if "model" not in args:
        raise ValueError("the Serve application needs args.model: a registry entry URI")
    keys = ("serve", "io", "max_upload_mb", "api_token_env", "device", "engine", "tta")
    kwargs = {k: args[k] for k in keys if k in args}
    deployment_config(kwargs.get("serve"), kwargs.get("io"))  # a wrong key fails here, early
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
    serve_config: dict[str, Any] | None = None,
    **options: Any,
) -> str:
    """Start Serve on ``host:port`` (loopback by default) and deploy ``model``; returns its URL.

    The HTTP front is HAProxy when Ray was started with :data:`hmss_ray.cluster.SERVE_ENV` (as
    :func:`hmss_ray.cluster.init_ray` starts a local Ray); it binds ``host`` like the proxy actor.

    ``serve_config``: the deployment's ``serve.*`` keys (replicas, limits, deadlines, tokens;
    defaults otherwise: the model's checkpoint decides none of them). ``env`` reaches the
    replicas (e.g. ``HMSS_API_TOKEN_FILE``); off loopback a token is required (UserError).
    ``options`` go to ``SCTSynthesizer`` (``io``: the deployment's ``io`` limits such as
    ``{"max_voxels": 2**26}``, ``device``, ``engine``: overrides of ``serve.precision``,
    ``serve.compile``, ``serve.channels_last`` such as ``{"precision": "bf16"}``, ``tta``:
    overrides the entry's ``inference.tta``; ``max_upload_mb``, ``api_token_env``: shorthands
    for ``serve_config`` keys).
    """
    import os

    legacy = {k: options[k] for k in ("max_upload_mb", "api_token_env") if k in options}
    serve_args = {**legacy, **(serve_config or {})}
    cfg, _ = deployment_config(serve_args, options.get("io"))
    tokens = guard.load_tokens(cfg, {**os.environ, **(env or {})})
    guard.require_token_off_loopback(host, tokens)
    serve.start(http_options={"host": host, "port": port})
    deployment = SCTSynthesizer.options(
        autoscaling_config={
            "min_replicas": cfg.min_replicas,
            "max_replicas": cfg.max_replicas,
            "target_ongoing_requests": cfg.target_ongoing_requests,
        },
        max_ongoing_requests=cfg.max_ongoing_requests,
        max_queued_requests=cfg.max_queued_requests,
        ray_actor_options={
            "num_cpus": cfg.num_cpus,
            "num_gpus": cfg.num_gpus,
            "runtime_env": {"env_vars": dict(env or {})},
        },
    )
    options = {k: v for k, v in options.items() if k not in legacy}
    serve.run(
        deployment.bind(model=model, serve=serve_args, **options),
        name=name,
        route_prefix=route_prefix,
        blocking=blocking,
    )
    return f"http://{host}:{port}{route_prefix.rstrip('/')}"


def shutdown(timeout_s: float = 60.0) -> None:
    """``serve.shutdown()``, then wait until Serve's controller is gone: it dies after the call
    returns, and a ``deploy()`` in that window finds the dying controller by name and fails."""
    import ray

    serve.shutdown()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get_actor("SERVE_CONTROLLER_ACTOR", namespace="serve")
        except ValueError:  # no such actor: gone
            return
        time.sleep(0.2)
