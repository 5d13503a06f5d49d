"""Ray Serve: the registry's winner behind HTTP (FastAPI ingress).

    serve run serve/hmss.yaml          # from the config file (serve deploy on a cluster)
    python -m hmss_ray.serving --model outputs/registry/demo --port 8000   (see __main__)

API: ``POST /v1/synthesize`` (MR NIfTI body, or multipart ``mr`` + optional ``mask``) -> sCT NIfTI;
``GET /v1/model``; ``GET /healthz``. A bad request gets a 4xx with a JSON ``detail`` that says
what is wrong, and never takes the replica down.
"""

# no `from __future__ import annotations`: FastAPI must see the real Request/Response types
# on the routes of the Serve class to inject the request

import hmac
import os
import time
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from ray import serve

from hmss_ray.inference.synthesizer import InputError, Synthesizer, synthesize_volume
from hmss_ray.io import UnreadableVolume, Volume
from hmss_ray.io.volume import nifti_bytes, nifti_from_bytes

NIFTI_TYPES = {
    "application/octet-stream",
    "application/gzip",
    "application/x-gzip",
    "application/nifti",
    "application/x-nifti",
    "application/vnd.nifti",
}
DEPLOYMENT = "SCTSynthesizer"

app = FastAPI(
    title="hmss-ray synthetic CT",
    version="1",
    description="MR NIfTI in, synthetic CT NIfTI (int16 HU, on the MR grid) out.",
)


def _bad(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail=message)


def parse_nifti(data: bytes, what: str = "MR") -> Volume:
    """Bytes of a .nii or .nii.gz -> :class:`Volume`; HTTP 400 when unreadable."""
    try:
        return nifti_from_bytes(data, what)
    except UnreadableVolume as exc:
        raise _bad(400, str(exc)) from exc


@serve.deployment(name=DEPLOYMENT)
@serve.ingress(app)
class SCTSynthesizer:
    """One replica: one loaded generator. Volumes are processed one request at a time each."""

    def __init__(
        self,
        model: str,
        max_upload_mb: float | None = None,
        api_token_env: str | None = None,
        device: str = "auto",
        tta: str | None = None,
    ) -> None:
        self.synth = Synthesizer.from_uri(model, device=device, tta=tta)
        serve_cfg = self.synth.cfg.serve
        self.max_bytes = int((max_upload_mb or serve_cfg.max_upload_mb) * 2**20)
        self.token = os.environ.get(api_token_env or serve_cfg.api_token_env) or None

    def check_health(self) -> None:
        if self.synth.generator is None:  # pragma: no cover - a replica that lost its model
            raise RuntimeError("no model loaded")

    def _authorise(self, request: Request) -> None:
        if self.token is None:
            return
        given = request.headers.get("authorization", "")
        if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:], self.token):
            raise _bad(401, "missing or wrong API token: send 'Authorization: Bearer <token>'")

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
        }

    @app.post("/v1/synthesize")
    async def synthesize(self, request: Request) -> Response:
        self._authorise(request)
        mr_bytes, mask_bytes = await self._read_upload(request)
        mr = parse_nifti(mr_bytes, "MR")
        mask = parse_nifti(mask_bytes, "mask") if mask_bytes is not None else None
        region = request.query_params.get("region")  # a multi-region model's contract
        t0 = time.perf_counter()
        try:
            out = await run_in_threadpool(synthesize_volume, self.synth, mr, mask, region)
        except InputError as exc:
            raise _bad(422, str(exc)) from exc
        elapsed_ms = (time.perf_counter() - t0) * 1000
        body = nifti_bytes(out)
        return Response(
            content=body,
            media_type="application/gzip",
            headers={
                "X-Model-Name": self.synth.info.name,
                "X-Model-Version": self.synth.info.version,
                "X-Inference-Time-Ms": f"{elapsed_ms:.1f}",
                "Content-Disposition": 'attachment; filename="sct.nii.gz"',
            },
        )

    async def _read_upload(self, request: Request) -> tuple[bytes, bytes | None]:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise _bad(413, f"upload of {int(declared)} bytes is over the {self.max_bytes} limit")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            return await self._read_multipart(request)
        if ctype not in NIFTI_TYPES:
            raise _bad(
                415,
                f"content type {ctype or 'none'!r} is not accepted: send the NIfTI as "
                "application/octet-stream or application/gzip, or multipart/form-data "
                "with fields 'mr' and optional 'mask'",
            )
        body = await request.body()
        if len(body) > self.max_bytes:
            raise _bad(413, f"upload of {len(body)} bytes is over the {self.max_bytes} limit")
        if not body:
            raise _bad(400, "the request body is empty: send an MR NIfTI")
        return body, None

    async def _read_multipart(self, request: Request) -> tuple[bytes, bytes | None]:
        form = await request.form()
        if "mr" not in form:
            raise _bad(400, "multipart upload needs a file field named 'mr'")
        mr = await form["mr"].read()
        mask = await form["mask"].read() if "mask" in form else None
        if len(mr) + len(mask or b"") > self.max_bytes:
            raise _bad(413, f"upload is over the {self.max_bytes} byte limit")
        return mr, mask


def build_app(args: dict[str, Any]) -> serve.Application:
    """Application builder for ``serve run`` / ``serve deploy``: ``args: {model: URI, ...}``."""
    if "model" not in args:
        raise ValueError("the Serve application needs args.model: a registry entry URI")
    keys = ("max_upload_mb", "api_token_env", "device", "tta")
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

    ``env`` reaches the replicas (e.g. the variable holding the API token); ``options`` go to
    ``SCTSynthesizer`` (``max_upload_mb``, ``api_token_env``, ``device``, ``tta``: overrides the
    entry's ``inference.tta``).
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
