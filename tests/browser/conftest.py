"""Headless chromium (Debian's package) driven by Playwright, and what the QA page tests share.

The browser tests skip with one line when chromium or Playwright is absent
(``apt-get install chromium``; ``pip install -e '.[dev]'``). Playwright's own browser download is
not used: the system chromium (or ``HMSS_CHROMIUM``) renders WebGL with SwiftShader on a machine
without a GPU.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = os.environ.get("HMSS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# screenshots to look at (gitignored)
ARTEFACTS = Path(__file__).resolve().parents[2] / "outputs" / "test-artefacts"
PLANES = ("axial", "coronal", "sagittal")  # NiiVue's axCorSag 0, 1, 2


@pytest.fixture(scope="module")  # not the session: Playwright's sync API runs an event loop in
def browser() -> Iterator:  # the main thread while open, and later tests use asyncio.run
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser) -> Iterator:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    yield page
    context.close()


def wait_ready(page, timeout_ms: int = 60_000) -> None:
    """Until qa.js has loaded what it had to (or failed, which fails the test)."""
    page.wait_for_function("window.hmssQA && (hmssQA.ready || hmssQA.error)", timeout=timeout_ms)
    assert page.evaluate("hmssQA.error || null") is None
    assert not page.errors


def planes(page, role: str) -> dict[str, np.ndarray]:
    """The RGB pixels of each plane (axial, coronal, sagittal) of the viewer ``role``."""
    from PIL import Image

    page.evaluate(f"hmssQA.viewers.{role}.drawScene()")
    canvas = page.locator(f"#panel-{role} canvas")
    shot = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB"))
    width = page.evaluate(f"hmssQA.viewers.{role}.canvas.width")
    scale = shot.shape[1] / width
    tiles = {}
    script = f"hmssQA.viewers.{role}.screenSlices.map(s => [s.axCorSag, s.leftTopWidthHeight])"
    for plane, (left, top, w, h) in page.evaluate(script):
        box = [round(v * scale) for v in (left, top, left + w, top + h)]
        tiles[PLANES[plane]] = shot[box[1] : box[3], box[0] : box[2]]
    return tiles


def drawn(tile: np.ndarray) -> float:
    """The fraction of a plane's pixels that are image, not the black background or the red
    crosshair."""
    rgb = tile.astype(int)
    gray = (abs(rgb[..., 0] - rgb[..., 1]) < 16) & (abs(rgb[..., 1] - rgb[..., 2]) < 16)
    return float(np.mean(gray & (rgb.mean(-1) > 20)))


def save(page, name: str) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(scope="session")
def tiny_entry(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A registry entry of a tiny seeded, untrained cascade (8 mm brain contract, flip TTA so
    that there is a spread map); what it draws means nothing, only that it is drawn."""
    import torch

    from hmss_ray.config import ExperimentConfig
    from hmss_ray.models import checkpoint as ckpt
    from hmss_ray.models.factory import build_generator
    from tests.small import TINY_MODEL

    torch.manual_seed(0)
    tiny = {**TINY_MODEL, "data.spacing.brain": [8.0, 8.0, 8.0], "inference.tta": "flip_lr"}
    cfg = ExperimentConfig().replace(tiny)
    tmp = tmp_path_factory.mktemp("entry")
    directory = ckpt.save_checkpoint(tmp / "ckpt", generator=build_generator(cfg), cfg=cfg)
    return ckpt.write_registry_entry(
        directory, str(tmp / "registry"), "tiny", metrics={}, winner={"trial_id": "t0"}
    )


@pytest.fixture(scope="session")
def head_mr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The phantom head MR at 8 mm (28 x 32 x 30 voxels) as a .nii.gz."""
    from hmss_ray.data.phantom import make_case
    from hmss_ray.io import Volume, write_volume

    case = make_case("1BA001", seed=0, spacing=(8.0, 8.0, 8.0))
    path = tmp_path_factory.mktemp("mr") / "anna.nii.gz"
    write_volume(Volume(case.mr, case.affine), path)
    return path
