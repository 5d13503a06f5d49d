from pathlib import Path

import pytest

from hmss_ray.config import ConfigError
from hmss_ray.tune.space import load_space, parse_space

SPACES = sorted(Path(__file__).parents[2].joinpath("tune_spaces").glob("*.yaml"))


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_shipped_spaces_are_valid(path):
    space = load_space(path)
    assert space.params and space.description


def test_shipped_spaces_cover_the_notebook_knobs_and_the_architecture():
    keys = {p.key for path in SPACES for p in load_space(path).params}
    for key in (
        "loss.lambda_l1",
        "loss.lambda_perc",
        "loss.lambda_gp",
        "optim.lr_g",
        "optim.lr_d",
        "optim.beta1",
        "loss.real_label",
        "optim.g_steps_per_d",
        "model.lrg_channels",
        "model.lrg_res_blocks",
        "model.disc_scales",
        "data.context_slices",
    ):
        assert key in keys


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown config key 'loss\.lambda_11'"):
        parse_space({"params": {"loss.lambda_11": {"uniform": [1, 2]}}})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"gaussian": [0, 1]}, "must be one of"),
        ({"uniform": [2, 1]}, "low < high"),
        ({"loguniform": [0, 1]}, "low > 0"),
        ({"int": [1.5, 3]}, "integer bounds"),
    ],
)
def test_bad_distributions_are_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_space({"params": {"loss.lambda_l1": spec}})


def test_values_outside_config_validation_are_rejected():
    with pytest.raises(ConfigError, match=r"model\.disc_scales=4"):
        parse_space({"params": {"model.disc_scales": {"choice": [2, 4]}}})


@pytest.mark.parametrize(
    ("key", "spec", "message"),
    [
        ("optim.lr_g", {"uniform": [-1e-4, 1e-3]}, r"optim\.lr_g=-0\.0001: optim\.lr_g = -0\.0001"),
        ("augment.flip_prob", {"uniform": [0.2, 1.5]}, r"augment\.flip_prob=1\.5"),
        ("loss.lambda_l1", {"choice": [5, -1]}, r"loss\.lambda_l1=-1"),
        ("tune.num_samples", {"int": [0, 4]}, r"tune\.num_samples=0"),
        # the ends are valid (64 and 128 are multiples of 16) but 72 in between is not
        ("data.image_size", {"int": [64, 128]}, r"data\.image_size=65"),
    ],
)
def test_a_space_that_can_sample_an_invalid_value_is_refused_when_loaded(key, spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_space({"params": {key: spec}})
