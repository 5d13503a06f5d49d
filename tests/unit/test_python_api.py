"""The Python API at the package top, and the example of docs/python-api.md run as written (its
two paths pointed at a tiny seeded registry entry and a phantom MR)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import hmss_ray
from hmss_ray.config import ExperimentConfig
from hmss_ray.data.phantom import case_ids, make_case
from hmss_ray.models import checkpoint as ckpt
from hmss_ray.models.factory import build_generator
from tests.small import TINY_MODEL

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "python-api.md"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def entry(tmp_path_factory: pytest.TempPathFactory) -> str:
    torch.manual_seed(0)
    cfg = ExperimentConfig().replace({**TINY_MODEL, "data.spacing.brain": [8.0, 8.0, 8.0]})
    tmp = tmp_path_factory.mktemp("entry")
    directory = ckpt.save_checkpoint(tmp / "ckpt", generator=build_generator(cfg), cfg=cfg)
    return ckpt.write_registry_entry(directory, str(tmp / "registry"), "api", metrics={},
                                     winner={"trial_id": "t0"})  # fmt: skip


@pytest.fixture
def mr_file(tmp_path: Path) -> Path:
    case = make_case(case_ids("brain", 1)[0], shape=(48, 56, 16))
    path = tmp_path / "mr.nii.gz"
    hmss_ray.write_volume(hmss_ray.Volume(case.mr.astype(np.float32), case.affine), path)
    return path


def test_predict_gives_an_int16_sct_on_the_mr_grid(entry, mr_file):
    from hmss_ray import Synthesizer, Volume, read_volume

    mr = read_volume(mr_file)
    sct = Synthesizer.from_uri(entry, device="cpu").predict(mr)
    assert isinstance(sct, Volume) and sct.shape == mr.shape and sct.array.dtype == np.int16
    np.testing.assert_allclose(sct.affine, mr.affine)
    assert set(hmss_ray.__all__) >= {"Synthesizer", "Volume", "read_volume", "write_volume"}


def test_a_bad_volume_is_an_input_error_with_a_reason(entry):
    synth = hmss_ray.Synthesizer.from_uri(entry, device="cpu")
    flat = hmss_ray.Volume(np.zeros((40, 40, 12), np.float32), np.eye(4))
    with pytest.raises(hmss_ray.InputError, match="no signal"):
        synth.predict(flat)


def test_the_documented_example_runs(entry, mr_file, tmp_path, monkeypatch, capsys):
    (code,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    code = re.sub(r'^model = ".*?"', f"model = {entry!r}", code, count=1, flags=re.M)
    code = re.sub(r'^mr_path = ".*?"', f"mr_path = {str(mr_file)!r}", code, count=1, flags=re.M)
    assert str(mr_file) in code and entry in code, "the example must set model and mr_path"
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(DOC), "exec"), {})
    shape = hmss_ray.read_volume(mr_file).shape
    assert hmss_ray.read_volume(tmp_path / "sct.nii.gz").shape == shape
    assert capsys.readouterr().out.startswith(str(shape))
