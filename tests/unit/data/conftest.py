"""Fixtures for the data tests: one small phantom data set per session, a small config."""

from __future__ import annotations

from pathlib import Path

import pytest

from hmss_ray.config import ExperimentConfig
from hmss_ray.data.phantom import write_dataset
from tests.small import SMALL, SMALL_SHAPE


@pytest.fixture(scope="session")
def small_shape() -> tuple[int, int, int]:
    return SMALL_SHAPE


@pytest.fixture(scope="session")
def small_cfg() -> ExperimentConfig:
    return ExperimentConfig().replace(SMALL)


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 paired cases per region, 1 MR-only per region; read-only for the tests."""
    root = tmp_path_factory.mktemp("phantom")
    write_dataset(root, cases=3, mr_only=1, shape=SMALL_SHAPE, seed=1)
    return root
