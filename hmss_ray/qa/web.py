"""The QA page in the browser: NiiVue (shipped in ``static/``, works offline) showing MR, sCT (CT
and sCT - CT when given) in three planes, HU window presets, the spread overlay, flags and metrics.

Two ways to open it, one page (``static/qa.html`` + ``static/qa.js``):

- from a predict output folder, without a server: :func:`write_study_page` writes
  ``<study>/qa.html`` and ``<study>/qa-data.js`` (the volumes as base64 ``.nii.gz`` in a script,
  because browsers refuse ``fetch()`` of ``file://`` URLs but run scripts from it), and
  :func:`write_viewer` the shared ``qa-viewer/`` (NiiVue, our script, NiiVue's licence) and
  ``index.html`` once per batch;
- from the endpoint: ``GET /qa`` and ``GET /qa/static/<file>`` (:func:`add_routes`); a study
  dropped on the page goes to ``POST /v1/synthesize`` with the page's token.
"""

# no `from __future__ import annotations`: FastAPI must see the real Request type on the routes

import base64
import gzip
import html
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

STATIC = Path(__file__).with_name("static")
ASSETS = ("niivue.js", "qa.js", "LICENSE.niivue")  # all that GET /qa/static/ serves
VIEWER = "qa-viewer"  # the batch output's folder of ASSETS, shared by the study pages
MAX_VOXELS = 2**22  # a volume embedded in a page is strided down to this (about 4 M voxels)


@dataclass
class StudyPage:
    """One study's volumes on the MR grid and what is said about it (``qa.json``'s content)."""

    title: str
    affine: np.ndarray
    mr: np.ndarray
    sct: np.ndarray
    spread: np.ndarray | None = None
    ct: np.ndarray | None = None
    qa: dict[str, Any] | None = None
    caption: str = ""


def render(static: str, data_script: str = "") -> str:
    """``qa.html`` with its assets under ``static`` (a URL prefix) and an optional data script."""
    text = (STATIC / "qa.html").read_text()
    return text.replace("{{static}}", static).replace("{{data}}", data_script)


def encode(array: np.ndarray, affine: np.ndarray, max_voxels: int = MAX_VOXELS) -> str:
    """``array`` as a base64 gzipped int16 NIfTI (scaled when not integer HU), strided by the
    smallest whole step per axis that brings it under ``max_voxels``."""
    step = 1
    while np.prod([-(-n // step) for n in array.shape]) > max_voxels:
        step += 1
    small = np.ascontiguousarray(array[::step, ::step, ::step])
    scaled = affine @ np.diag([step, step, step, 1.0])
    if np.issubdtype(small.dtype, np.integer) and small.dtype.itemsize <= 2:
        image = nib.Nifti1Image(small.astype(np.int16), scaled)
    else:  # float MR or spread: int16 with scl_slope (NiiVue applies it)
        image = nib.Nifti1Image(small.astype(np.float32), scaled)
        image.set_data_dtype(np.int16)
    image.set_qform(scaled, code=1)
    image.set_sform(scaled, code=1)
    return base64.b64encode(gzip.compress(image.to_bytes(), compresslevel=6, mtime=0)).decode()


def write_study_page(folder: Path, study: StudyPage, viewer: str = f"../{VIEWER}") -> Path:
    """``folder/qa.html`` and ``folder/qa-data.js``; the page loads NiiVue from ``viewer``."""
    volumes = {"mr": study.mr, "sct": study.sct, "spread": study.spread, "ct": study.ct}
    if study.ct is not None:  # a float CT is NaN outside its field of view: air, no difference
        seen = np.isfinite(study.ct)
        ct = np.where(seen, study.ct, -1000.0)
        volumes["ct"] = np.rint(ct).astype(np.int16)
        volumes["diff"] = np.where(seen, study.sct.astype(np.int32) - volumes["ct"], 0)
    data = {
        "title": study.title,
        "caption": study.caption,
        "qa": study.qa or {},
        "volumes": {k: encode(v, study.affine) for k, v in volumes.items() if v is not None},
    }
    (folder / "qa-data.js").write_text(f"window.HMSS_QA = {json.dumps(data)};\n")
    page = render(viewer, '<script src="qa-data.js"></script>')
    (folder / "qa.html").write_text(page)
    return folder / "qa.html"


def write_viewer(output: Path, studies: Sequence[dict[str, Any]]) -> Path:
    """``output/qa-viewer/`` (the page's assets) and ``output/index.html`` listing ``studies``
    (``summary.json``'s rows: study, status, qa, error)."""
    assets = output / VIEWER
    assets.mkdir(exist_ok=True)
    for name in ASSETS:
        shutil.copyfile(STATIC / name, assets / name)
    rows = []
    for row in studies:
        name = html.escape(row["study"])
        if row["status"] == "ok":
            flags = row.get("qa", {}).get("flags", [])
            what = "; ".join(html.escape(f) for f in flags) or "no flags"
            rows.append(f'<li><a href="{name}/qa.html">{name}</a>: {what}</li>')
        else:
            rows.append(f"<li>{name}: failed: {html.escape(row.get('error', ''))}</li>")
    index = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>hmss-ray QA</title>'
        f"</head><body><h1>hmss-ray QA</h1><ul>\n{chr(10).join(rows)}\n</ul>"
        '<p><a href="qa_report.pdf">qa_report.pdf</a> (all studies) - research use, not for '
        "diagnosis</p></body></html>\n"
    )
    (output / "index.html").write_text(index)
    return output / "index.html"


def add_routes(app) -> None:
    """``GET /qa`` and ``GET /qa/static/<file>`` on the endpoint's FastAPI ``app``.

    The page and its scripts hold no data, so they need no token (a browser cannot send one to
    open a page); the page sends the token with ``POST /v1/synthesize``.
    """
    from fastapi import HTTPException, Request
    from fastapi.responses import FileResponse, HTMLResponse

    media = {".js": "text/javascript", ".niivue": "text/plain"}

    @app.get("/qa", response_class=HTMLResponse, include_in_schema=False)
    def qa_page(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return HTMLResponse(render(f"{root}/qa/static"))

    @app.get("/qa/static/{name}", include_in_schema=False)
    def qa_static(name: str) -> FileResponse:
        if name not in ASSETS:
            raise HTTPException(404, detail=f"no such file: {name}")
        path = STATIC / name
        return FileResponse(path, media_type=media[path.suffix])
