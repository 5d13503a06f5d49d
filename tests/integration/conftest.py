"""Session-wide phantom data and shards for the integration tests (made once, reused)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hmss_ray import storage
from hmss_ray.config import ExperimentConfig, load_config

ROOT = Path(__file__).parents[2]

# the demo config made smaller still: a few steps per epoch, a short validation
TINY = [
    "train.batch_size=4",
    "train.steps_per_epoch=3",
    "train.val_max_slices=16",
    "train.stage_epochs=[1, 0, 1]",
    "train.log_every=1",
    "metrics.fid_max_slices=16",
]


def tiny_config(*extra: str) -> ExperimentConfig:
    return load_config(ROOT / "configs" / "demo.yaml", [*TINY, *extra])


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hmss_ray.data.phantom import COARSE_SHAPE, write_dataset

    out = tmp_path_factory.mktemp("phantom")
    write_dataset(out, cases=9, regions=["brain"], shape=COARSE_SHAPE)  # whole heads, ~4 mm
    return out


@pytest.fixture(scope="session")
def local_shards(phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    from hmss_ray import prepare

    out = tmp_path_factory.mktemp("shards")
    code = prepare.main(
        ["--data", str(phantom_dir), "-o", str(out), "--config", str(ROOT / "configs/demo.yaml")]
    )
    assert code == 0
    return str(out)


@pytest.fixture
def s3_shards(local_shards: str, s3_bucket: str) -> str:
    """The session's shards copied into a fresh bucket on the local S3 server."""
    uri = f"{s3_bucket}/shards"
    storage.copy_dir(local_shards, uri)
    return uri
