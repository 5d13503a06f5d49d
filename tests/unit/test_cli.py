"""``hmss-ray <stage>``: every stage's --help, the same flags everywhere, old spellings that warn,
and mistakes that are one line and exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hmss_ray import cli, resources, stages
from hmss_ray.config import load_config

ROOT = Path(__file__).resolve().parents[2]
OPTIONAL = {"registry", "dose"}  # stages other branches add; absent here they are an error line


@pytest.mark.parametrize("stage", sorted(stages.STAGES))
def test_every_stage_has_help(stage, capsys):
    try:
        stages.load(stage)
    except stages.StageUnavailable:
        assert stage in OPTIONAL, f"hmss-ray {stage} must be importable"
        assert stages.main([stage, "--help"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: hmss-ray {stage} ") and "\n" not in err
        return
    assert stages.main([stage, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ")
    if stage != "cluster":  # the rehearsal keeps its own prog, python -m infra.rehearsal
        assert out.startswith(f"usage: hmss-ray {stage}") and "example" in out


def test_the_top_level_help_lists_every_stage(capsys):
    assert stages.main(["--help"]) == 0
    out = capsys.readouterr().out
    for stage in stages.STAGES:
        assert f"\n  {stage} " in out
    assert stages.main([]) == 2  # no stage: the list, and a usage error


def test_an_unknown_stage_is_one_line_and_exit_2(capsys):
    assert stages.main(["trian", "--data", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: hmss-ray: unknown stage 'trian'") and "\n" not in err


def test_a_stage_whose_module_is_missing_is_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setitem(stages.STAGES, "later", stages.Stage("hmss_ray.later.__main__", "x"))
    assert stages.main(["later", "--help"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: hmss-ray later is not part of this install (hmss_ray.later is missing)"


ALIASES = [  # stage, old spelling, new dest, the rest of a valid command line
    ("phantom", ["--out", "v"], "output", []),
    ("prepare", ["--out", "v"], "output", ["--data", "d"]),
    ("train", ["--data", "v"], "shards", []),
    ("train", ["--storage", "v"], "output", ["--shards", "s"]),
    ("tune", ["--data", "v"], "shards", ["--space", "demo"]),
    ("tune", ["--registry", "v"], "output", ["--space", "demo", "--shards", "s"]),
    ("predict", ["--mr", "v"], "input", ["--model", "m", "-o", "o.nii"]),
    ("predict", ["--out", "v"], "output", ["--model", "m", "-i", "i.nii"]),
    ("request", ["v"], "input", ["-o", "o.nii"]),
    ("request", ["--out", "v"], "output", ["-i", "i.nii"]),
    ("evaluate", ["--out", "v"], "output", ["--data", "d"]),
    ("demo", ["--out", "v"], "output", []),
]


@pytest.mark.parametrize(("stage", "old", "dest", "rest"), ALIASES)
def test_old_spellings_still_work_and_warn_once(stage, old, dest, rest, capsys):
    args = stages.build_parser(stage).parse_args([*old, *rest])
    assert getattr(args, dest) == "v"
    err = capsys.readouterr().err.strip()
    new = {"output": "-o/--output", "input": "-i/--input", "shards": "--shards"}[dest]
    said = old[0] if old[0].startswith("-") else "the positional argument mr"
    assert err == f"warning: {said} is deprecated; use {new}"
    spelling = old[0] if old[0].startswith("-") else "mr"
    assert stages.build_parser(stage).aliases[spelling] == new  # listed for the docs


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["prepare"], "the following arguments are required: --data, -o/--output"),
        (["phantom", "-o", "x", "--edition", "1999"], "invalid choice: '1999'"),
        (["train", "--shards", "s", "--set", "optim.lr_g=-1"], "optim.lr_g"),
        (["tune", "--shards", "s", "--space", "nope"], "nope: no such file, nor a packaged one"),
        (["serve", "--model", "m", "--set", "model.channels=3"], "serve takes io.*"),
        (["predict", "--model", "m", "-i", "/nonexistent.nii.gz", "-o", "o.nii"], "nonexistent"),
        (["request", "-o", "o.nii"], "required: -i/--input"),
    ],
)
def test_a_mistake_is_one_line_and_exit_2(argv, words, capsys):
    assert stages.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert words in err


def test_train_init_from_starts_from_weights(tmp_path):
    from hmss_ray.train.__main__ import build_parser, run_config

    args = build_parser().parse_args(["--shards", "s", "--init-from", str(tmp_path / "entry")])
    assert run_config(args).train.init_from == str(tmp_path / "entry")
    assert run_config(build_parser().parse_args(["--shards", "s"])).train.init_from is None


def test_configs_and_spaces_by_name_or_old_path_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the checkout: no configs/ folder here
    by_name = resources.config_path("brain")
    assert by_name is not None and by_name.parent.name == "configs"
    assert resources.config_path("configs/brain.yaml") == by_name
    assert load_config(by_name).tune.name == "brain"
    assert resources.space_path("tune_spaces/demo.yaml") == resources.space_path("demo")
    (tmp_path / "demo").mkdir()  # a folder of the name (the demo's output) does not shadow it
    assert resources.space_path("demo").is_file()
    (tmp_path / "brain.yaml").write_text("tune: {name: mine}\n")  # a file of the name wins
    assert load_config(resources.config_path("brain.yaml")).tune.name == "mine"
    assert set(resources.packaged("configs")) >= {"brain", "pelvis", "demo"}


def test_no_region_config_writes_to_a_bucket_the_user_does_not_own():
    for name in resources.packaged("configs"):
        registry = load_config(resources.config_path(name)).tune.registry
        assert not registry.startswith("s3://"), (name, registry)


def test_python_m_hmss_ray_and_the_old_module_both_run(tmp_path):
    for argv in (["-m", "hmss_ray", "phantom", "--help"], ["-m", "hmss_ray.phantom", "--help"]):
        done = subprocess.run(
            [sys.executable, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0 and done.stdout.startswith("usage: hmss-ray phantom")


def test_required_flags_say_so_in_help():
    text = stages.build_parser("predict").format_help()
    assert "--model MODEL" in text and "(required)" in text
    assert isinstance(stages.build_parser("predict"), cli.Parser)


def test_serve_set_checks_keys_and_values_against_the_entry(tmp_path):
    import torch

    from hmss_ray.config import ConfigError, ExperimentConfig
    from hmss_ray.models import checkpoint as ckpt
    from hmss_ray.models.factory import build_generator
    from hmss_ray.serving.__main__ import replica_options
    from tests.small import TINY_MODEL

    torch.manual_seed(0)
    cfg = ExperimentConfig().replace(TINY_MODEL)
    directory = ckpt.save_checkpoint(tmp_path / "ckpt", generator=build_generator(cfg), cfg=cfg)
    entry = ckpt.write_registry_entry(directory, str(tmp_path / "registry"), "e", metrics={},
                                      winner={"trial_id": "t"})  # fmt: skip
    sets = ["io.max_voxels=1000000", "serve.precision=fp32", "inference.tta=none"]
    assert replica_options(entry, sets) == {
        "io": {"max_voxels": 1000000},
        "engine": {"precision": "fp32"},
        "tta": "none",
    }
    with pytest.raises(ConfigError, match=r"io\.max_voxels"):
        replica_options(entry, ["io.max_voxels=-5"])
