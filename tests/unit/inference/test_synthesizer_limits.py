"""The model's grid and canvas are checked against ``io.max_voxels`` before they are allocated;
an input geometry that is no grid is an InputError (HTTP 422), never an unhandled exception."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch

from hmss_ray.config import ExperimentConfig
from hmss_ray.inference.synthesizer import InputError, Synthesizer
from hmss_ray.io import LimitExceeded
from hmss_ray.models import checkpoint as ckpt
from hmss_ray.models.factory import build_generator
from tests.small import TINY_MODEL

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesizer:
    """A tiny untrained generator, 8 mm brain contract, io.max_voxels 2^22."""
    torch.manual_seed(0)
    cfg = ExperimentConfig().replace({**TINY_MODEL, "data.spacing.brain": [8.0, 8.0, 8.0]})
    tmp = tmp_path_factory.mktemp("entry")
    directory = ckpt.save_checkpoint(tmp / "ckpt", generator=build_generator(cfg), cfg=cfg)
    entry = ckpt.write_registry_entry(
        directory, str(tmp / "registry"), "tiny", metrics={}, winner={"trial_id": "t0"}
    )
    loaded = Synthesizer.from_uri(entry, device="cpu")
    return dataclasses.replace(loaded, cfg=loaded.cfg.replace({"io.max_voxels": 2**22}))


def _mr() -> np.ndarray:
    mr = np.zeros((32, 32, 32), np.float32)
    mr[8:24, 8:24, 8:24] = 100.0
    return mr


@pytest.mark.parametrize(
    ("spacing", "words"),
    [
        ((100.0, 100.0, 100.0), r"model's grid .* 58,863,869 voxels"),  # 389^3 at 8 mm
        ((1.0, 1.0, 2000.0), r"model's canvas"),  # 4 x 4 x 8000: a 32 px canvas, 8M voxels
    ],
)
def test_huge_voxels_are_refused_before_the_model_grid_exists(synth, spacing, words) -> None:
    start = time.perf_counter()
    with pytest.raises(LimitExceeded, match=words):
        synth(_mr(), affine=np.diag([*spacing, 1.0]))
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize(
    "affine",
    [
        np.diag([np.nan, 1.0, 1.0, 1.0]),
        np.diag([0.0, 1.0, 1.0, 1.0]),
        np.array([[1.0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]),  # singular
        np.diag([1.0, 1.0, -1e-9, 1.0]),
    ],
)
def test_an_affine_that_is_no_grid_is_an_input_error(synth, affine) -> None:
    with pytest.raises(InputError, match=r"geometry|voxel sizes"):
        synth(_mr(), affine=affine)
