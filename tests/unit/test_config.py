from pathlib import Path

import pytest

from hmss_ray.config import (
    ConfigError,
    ExperimentConfig,
    config_diff,
    data_hash,
    describe,
    load_config,
    parse_overrides,
)

CONFIGS = sorted(Path(__file__).parents[2].joinpath("configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_and_round_trip(path):
    cfg = load_config(path)
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg


def test_shipped_configs_exist():
    assert {p.name for p in CONFIGS} >= {"demo.yaml", "brain.yaml", "pelvis.yaml"}


def test_dotted_overrides_change_only_that_key():
    cfg = load_config(None, ["loss.lambda_l1=5", "model.norm=batch", "data.hu_range=[-1000, 1000]"])
    assert cfg.loss.lambda_l1 == 5.0
    assert cfg.model.norm == "batch"
    assert cfg.data.hu_range == (-1000.0, 1000.0)
    assert config_diff(cfg) == {
        "loss.lambda_l1": 5.0,
        "model.norm": "batch",
        "data.hu_range": [-1000.0, 1000.0],
    }
    assert "loss.lambda_l1 = 5.0" in describe(cfg)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("loss.lamda_l1=5", "unknown config key 'loss.lamda_l1'"),
        ("los.lambda_l1=5", "'los' is not a section"),
        ("model.norm=group", "model.norm = 'group' is not allowed; choose one of: ['instance'"),
        ("train.batch_size=two", "train.batch_size must be an integer"),
        ("train.batch_size=0", "train.batch_size must be >= 1"),
        ("data.image_size=100", "data.image_size must be divisible by 16"),
        ("augment.enabled=3", "augment.enabled must be true or false"),
        ("data.split_fractions=[0.5, 0.5]", "data.split_fractions must have 3 items"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert message in str(info.value)


def test_unknown_key_in_yaml_names_it(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  lrg_chanels: 8\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'model\.lrg_chanels'"):
        load_config(path)


def test_override_needs_equals_sign():
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        parse_overrides(["loss.lambda_l1"])


def test_yaml_save_and_reload(tmp_path):
    cfg = load_config(None, ["name=x", "train.stage_epochs=[1, 0, 3]"])
    cfg.save(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_data_hash_tracks_only_data_section():
    base = ExperimentConfig()
    assert data_hash(base) == data_hash(base.replace({"loss.lambda_l1": 3}))
    assert data_hash(base) != data_hash(base.replace({"data.image_size": 128}))


def test_in_channels_follow_context():
    assert ExperimentConfig().replace({"data.context_slices": 2}).in_channels == 5
