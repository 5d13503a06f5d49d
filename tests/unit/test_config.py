from pathlib import Path

import pytest

from hmss_ray.config import (
    AdversarialCriterion,
    ConfigError,
    ExperimentConfig,
    Norm,
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
        ("model.norm=group", "model.norm = 'group' is not allowed; choose one of: 'instance'"),
        ("train.batch_size=two", "train.batch_size must be an integer"),
        ("train.batch_size=0", "train.batch_size = 0 is not allowed: must be >= 1"),
        ("data.image_size=100", "data.image_size = 100 is not allowed: must be divisible by 16"),
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


# every section refuses values of the right type outside their range, naming key, value and range
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr_g=-1", "optim.lr_g = -1.0 is not allowed: must be > 0"),
        ("optim.lr_d=0", "optim.lr_d = 0.0 is not allowed: must be > 0"),
        ("optim.beta1=1.5", "optim.beta1 = 1.5 is not allowed: must be in [0, 1)"),
        ("augment.flip_prob=2", "augment.flip_prob = 2.0 is not allowed: must be a probability"),
        ("augment.noise_prob=-0.1", "augment.noise_prob = -0.1 is not allowed"),
        ("loss.lambda_l1=-5", "loss.lambda_l1 = -5.0 is not allowed: must be >= 0"),
        ("loss.real_label=0", "loss.real_label = 0.0 is not allowed: must be in (0, 1]"),
        ("tune.num_samples=0", "tune.num_samples = 0 is not allowed: must be >= 1"),
        ("tune.asha_reduction_factor=1", "tune.asha_reduction_factor = 1 is not allowed"),
        ("train.keep_checkpoints=0", "train.keep_checkpoints = 0 is not allowed: must be >= 1"),
        ("train.stage_epochs=[0, 0, 0]", "train.stage_epochs = [0, 0, 0] is not allowed"),
        ("train.steps_per_epoch=0", "train.steps_per_epoch = 0 is not allowed: must be null or"),
        ("data.regions=[]", "data.regions = [] is not allowed: needs at least one region"),
        ("data.regions=[knee]", "data.regions = ['knee'] is not allowed: items must be one of"),
        ("data.hu_range=[100, -100]", "data.hu_range = [100.0, -100.0] is not allowed"),
        ("model.disc_scales=4", "model.disc_scales = 4 is not allowed: must be 1, 2 or 3"),
        ("serve.port=70000", "serve.port = 70000 is not allowed: must be a TCP port"),
        ("serve.min_replicas=3", "serve.min_replicas = 3 is not allowed: must be <= serve.max"),
        ("metrics.fid_max_slices=1", "metrics.fid_max_slices = 1 is not allowed: must be >= 2"),
        ("train.accelerator_resource=CPU", "train.accelerator_resource = 'CPU' is not allowed"),
        ("train.accelerator_resource=''", "must name a Ray resource such as GPU"),
        ("tune.mlflow_uri=mlruns", "tune.mlflow_uri = 'mlruns' is not allowed: must be null or"),
        ("tune.mlflow_uri=ftp://x", "an MLflow tracking URI with a scheme"),
        ("tune.mlflow_experiment=' '", "tune.mlflow_experiment = ' ' is not allowed"),
    ],
)
def test_out_of_range_values_are_refused_with_key_value_and_range(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "resources", "cuda"),
    [
        ([], {"CPU": 1.0}, False),
        (["train.use_gpu=true"], {"CPU": 1.0, "GPU": 1.0}, True),
        # the rehearsal's stand-in: the same request under another name, computed on the CPU
        (
            ["train.use_gpu=true", "train.accelerator_resource=accel"],
            {"CPU": 1.0, "accel": 1.0},
            False,
        ),
        (["train.accelerator_resource=accel"], {"CPU": 1.0}, False),
    ],
)
def test_workers_ask_for_the_named_accelerator_resource(overrides, resources, cuda):
    train = load_config(None, overrides).train
    assert train.worker_resources() == resources
    assert train.cuda is cuda


@pytest.mark.parametrize("uri", ["sqlite:////tmp/m.db", "file:///tmp/mlruns", "http://mlf:5000"])
def test_mlflow_uri_takes_tracking_uris(uri):
    assert load_config(None, [f"tune.mlflow_uri={uri}"]).tune.mlflow_uri == uri


def test_all_generator_weights_zero_is_refused():
    zero = [f"loss.lambda_{k}=0" for k in ("adv", "l1", "fm", "perc", "ssim")]
    with pytest.raises(ConfigError, match="every generator loss weight"):
        load_config(None, zero)


def test_choices_are_enums_that_round_trip_as_plain_strings(tmp_path):
    cfg = load_config(None, ["model.norm=batch", "loss.adversarial=hinge"])
    assert cfg.model.norm is Norm.BATCH and cfg.loss.adversarial is AdversarialCriterion.HINGE
    assert cfg.to_dict()["model"]["norm"] == "batch"  # YAML and JSON see plain strings
    cfg.save(tmp_path / "c.yaml")
    assert "norm: batch" in (tmp_path / "c.yaml").read_text()


def test_unreadable_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


COMMANDS = {  # the entry point of each command, and arguments with one mistake in them
    "phantom": ["-o", "x", "--cases", "-1"],
    "prepare": ["--data", "x", "-o", "y", "--set", "optim.lr_g=-1"],
    "train.__main__": ["--shards", "x", "--set", "augment.flip_prob=2"],
    "tune.__main__": ["--shards", "x", "--space", "x.yaml", "--set", "tune.num_samples=0"],
    "inference.__main__": ["--model", "m", "-i", "/nonexistent/mr.nii.gz", "-o", "o.nii"],
    "evaluate.__main__": ["--data", "x", "--predictions", "p", "--set", "loss.lambda_l1=-5"],
    "client": ["-i", "/nonexistent/mr.nii.gz", "-o", "o.nii.gz"],
    "registry.__main__": ["promote", "outputs/registry/..@latest"],
}


@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_every_command_turns_a_mistake_into_one_line_and_exit_2(module, capsys):
    import importlib

    code = importlib.import_module(f"hmss_ray.{module}").main(COMMANDS[module])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
