"""A search resumed by name must run what it ran: other data, config or space is refused."""

from pathlib import Path

import pytest

from hmss_ray.config import UserError, load_config
from hmss_ray.tune import identity
from hmss_ray.tune.space import load_space

ROOT = Path(__file__).parents[2]
DEMO = load_config(ROOT / "configs/demo.yaml")
SPACE = load_space(ROOT / "tune_spaces/demo.yaml")


def _recorded(tmp_path: Path) -> str:
    search = str(tmp_path / "tune" / "demo")
    identity.record(search, identity.identity(DEMO, SPACE, "a1b2"))
    return search


def test_the_same_experiment_resumes_and_output_settings_may_change(tmp_path):
    search = _recorded(tmp_path)
    identity.check_resume(search, identity.identity(DEMO, SPACE, "a1b2"), "demo")
    moved = DEMO.replace({"tune.registry": "s3://b/registry", "serve.port": 8123,
                          "inference.tta": "none"})  # fmt: skip
    identity.check_resume(search, identity.identity(moved, SPACE, "a1b2"), "demo")


def test_other_data_or_settings_are_refused_and_named(tmp_path):
    search = _recorded(tmp_path)
    changed = DEMO.replace({"loss.lambda_l1": 5.0, "train.batch_size": 8})
    with pytest.raises(UserError) as caught:
        identity.check_resume(search, identity.identity(changed, SPACE, "c3d4"), "demo")
    message = str(caught.value)
    assert "data manifest hash a1b2 -> c3d4" in message
    assert "loss.lambda_l1: 20.0 -> 5.0" in message and "train.batch_size: 4 -> 8" in message
    assert f"give this experiment a new --name, or delete {search}" in message
    other_space = load_space(ROOT / "tune_spaces/losses.yaml")
    with pytest.raises(UserError, match="search space demo -> losses"):
        identity.check_resume(search, identity.identity(DEMO, other_space, "a1b2"), "demo")


def test_a_search_without_a_record_resumes_as_before(tmp_path):
    identity.check_resume(str(tmp_path / "old"), identity.identity(DEMO, SPACE, "x"), "old")
