"""The search's pre-flight: the search state and the registry are written to (a probe, then
deleted) and the weights policy is checked, one line each, before any trial (or Ray) starts."""

from __future__ import annotations

import pytest

from hmss_ray import storage
from hmss_ray.config import ExperimentConfig
from hmss_ray.tune import __main__ as tune_cli
from hmss_ray.tune.preflight import PreflightError, check_writable, preflight


def test_a_writable_folder_passes_and_keeps_nothing(tmp_path):
    line = check_writable(str(tmp_path / "registry"), "registry", "hint")
    assert line == f"registry {tmp_path / 'registry'}: writable"
    assert storage.listdir(str(tmp_path / "registry")) == []  # the probe is gone


def test_a_folder_that_cannot_be_written_is_one_line_naming_it(tmp_path):
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(PreflightError) as info:
        check_writable(str(tmp_path / "file" / "registry"), "registry", "give -o a path you own")
    message = str(info.value)
    assert message.startswith(f"registry {tmp_path / 'file' / 'registry'} is not writable")
    assert message.endswith("give -o a path you own") and "\n" not in message


@pytest.mark.integration
def test_s3_a_bucket_of_ours_passes_one_we_do_not_have_fails_at_once(s3_bucket):
    assert check_writable(f"{s3_bucket}/registry", "registry", "hint").endswith(": writable")
    assert storage.listdir(f"{s3_bucket}/registry") == []
    with pytest.raises(PreflightError, match=r"registry s3://hmss-models/registry is not writable"):
        check_writable("s3://hmss-models/registry", "registry", "hint")


def test_the_lines_come_in_order_weights_first(tmp_path):
    lines: list[str] = []
    cfg = ExperimentConfig().replace({"train.use_gpu": False})
    preflight(cfg, str(tmp_path / "tune"), str(tmp_path / "registry"), lines.append)
    assert [line.split(":")[1].split()[0] for line in lines] == ["pretrained", "search", "registry"]
    assert all(line.startswith("[hmss] pre-flight: ") for line in lines)


def test_the_tune_command_stops_before_any_trial_when_the_registry_is_not_writable(
    tmp_path, capsys
):
    (tmp_path / "file").write_text("")
    argv = ["--config", "demo", "--space", "demo", "--shards", str(tmp_path / "shards"),
            "--storage", str(tmp_path / "tune"),
            "-o", str(tmp_path / "file" / "registry")]  # fmt: skip
    assert tune_cli.main(argv) == 2
    captured = capsys.readouterr()
    assert "[hmss] pre-flight: pretrained weights:" in captured.out
    assert f"[hmss] pre-flight: search state {tmp_path / 'tune'}: writable" in captured.out
    err = captured.err.strip()
    assert err.startswith("error: registry ") and "is not writable" in err and "\n" not in err
