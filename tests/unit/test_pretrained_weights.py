"""Pretrained VGG/Inception weights: where they are found, and a GPU run refused without them.

Nothing is downloaded: the hub cache is pointed at an empty folder (TORCH_HOME), and "weights"
present are empty placeholder files with torchvision's names (only their presence is checked
before a run starts).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hmss_ray.config import ExperimentConfig
from hmss_ray.metrics.features import (
    WEIGHT_FILES,
    Kind,
    MissingWeightsError,
    check_pretrained,
    missing_weights,
)
from hmss_ray.train import __main__ as train_cli
from hmss_ray.tune import __main__ as tune_cli

ROOT = Path(__file__).parents[2]
GPU = {"train.use_gpu": True}


@pytest.fixture
def empty_hub(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    return hub


def test_a_gpu_run_without_weights_is_refused_and_told_how_to_fix_it(empty_hub):
    with pytest.raises(MissingWeightsError) as info:
        check_pretrained(ExperimentConfig().replace(GPU))
    message = str(info.value)
    for name in WEIGHT_FILES.values():
        assert name in message
    assert str(empty_hub) in message and "TORCH_HOME" in message
    assert "--allow-random-features" in message and "infra/docker/Dockerfile" in message


def test_random_features_stay_allowed_on_request_and_on_cpu(empty_hub):
    allowed = ExperimentConfig().replace({**GPU, "train.allow_random_features": True})
    assert set(check_pretrained(allowed)) == set(Kind)
    assert set(check_pretrained(ExperimentConfig())) == set(Kind)  # a CPU run: warnings only


def test_weights_in_the_hub_cache_or_configured_satisfy_the_check(empty_hub, tmp_path):
    for name in WEIGHT_FILES.values():
        (empty_hub / name).write_bytes(b"")
    assert check_pretrained(ExperimentConfig().replace(GPU)) == []
    (empty_hub / WEIGHT_FILES[Kind.INCEPTION]).unlink()
    elsewhere = tmp_path / "inception.pth"
    elsewhere.write_bytes(b"")
    cfg = ExperimentConfig().replace({**GPU, "metrics.inception_weights": str(elsewhere)})
    assert check_pretrained(cfg) == []
    wrong = cfg.replace({"metrics.inception_weights": str(tmp_path / "nope.pth")})
    assert missing_weights(wrong) == [Kind.INCEPTION]


def test_the_perceptual_loss_needs_vgg19_only_when_it_is_on(empty_hub):
    cfg = ExperimentConfig().replace({**GPU, "loss.lambda_perc": 0.0})
    assert set(missing_weights(cfg)) == {Kind.VGG_DISTANCE, Kind.INCEPTION}


def test_the_train_command_refuses_before_starting_ray(empty_hub, tmp_path, capsys):
    runs = tmp_path / "runs"
    code = train_cli.main(
        ["--shards", str(tmp_path), "-o", str(runs), "--set", "train.use_gpu=true"]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: train.use_gpu is set but pretrained weights")
    assert len(err.strip().splitlines()) == 1 and not runs.exists()
    args = train_cli.build_parser().parse_args(["--shards", "x", "--allow-random-features"])
    assert args.allow_random_features


def test_the_tune_command_takes_allow_random_features(empty_hub, tmp_path, capsys):
    base = [
        "--config", str(ROOT / "configs/brain.yaml"),
        "--space", str(ROOT / "tune_spaces/demo.yaml"),
        "--shards", str(tmp_path), "--storage", str(tmp_path / "tune"),
    ]  # fmt: skip
    assert tune_cli.main(base) == 2
    assert "pretrained weights are missing" in capsys.readouterr().err
    # with the flag the weights check passes, and the next check (ASHA's grace period) speaks
    bad_grace = ["--set", "tune.asha_grace_period=10", "--allow-random-features"]
    assert tune_cli.main([*base, *bad_grace]) == 2
    assert "error: tune.asha_grace_period = 10 is not allowed" in capsys.readouterr().err
