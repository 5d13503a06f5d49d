"""Checkpoints and registry entries: what each holds, and what a remote copy fetches."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from hmss_ray import storage
from hmss_ray.config import ExperimentConfig
from hmss_ray.models import build_discriminator, build_generator
from hmss_ray.models import checkpoint as ckpt

TINY = {
    "data.image_size": 32,
    "model.lrg_channels": 8,
    "model.lrg_downsamples": 2,
    "model.lrg_res_blocks": 1,
    "model.hrg_channels": 4,
    "model.hrg_res_blocks": 1,
    "model.disc_channels": 4,
    "model.disc_layers": 2,
}


@pytest.fixture
def training_checkpoint(tmp_path):
    torch.manual_seed(0)
    cfg = ExperimentConfig().replace(TINY)
    g, d = build_generator(cfg), build_discriminator(cfg)
    optimizers = {"g": torch.optim.Adam(g.parameters()), "d": torch.optim.Adam(d.parameters())}
    g(torch.zeros(1, 1, 32, 32))["high"].mean().backward()
    optimizers["g"].step()  # an optimiser state to save
    directory = ckpt.save_checkpoint(
        tmp_path / "ckpt", generator=g, discriminator=d, optimizers=optimizers, cfg=cfg,
        stage="joint", epoch=7, step=70, metrics={"score": 0.3},
    )  # fmt: skip
    return directory, g


def test_a_training_checkpoint_holds_both_networks_and_the_optimisers(training_checkpoint):
    directory, _ = training_checkpoint
    assert {p.name for p in directory.iterdir()} == {
        ckpt.GENERATOR_FILE,
        ckpt.DISCRIMINATOR_FILE,
        ckpt.OPTIM_FILE,
        ckpt.META_FILE,
    }


def test_a_registry_entry_holds_the_generator_config_and_metrics_only(
    training_checkpoint, tmp_path
):
    directory, g = training_checkpoint
    entry = ckpt.write_registry_entry(
        directory, str(tmp_path / "registry"), "best", metrics={"score": 0.3},
        winner={"trial_id": "t1"},
    )  # fmt: skip
    folder = ckpt.localize(entry)  # the version: no D, no optimiser state
    assert set(storage.listdir(str(folder))) == {*ckpt.REGISTRY_FILES, "manifest.json"}
    weights = load_file(f"{folder}/{ckpt.GENERATOR_FILE}")
    assert all(torch.equal(weights[k], v) for k, v in g.state_dict().items())
    assert json.loads((folder / "metrics.json").read_text()) == {"score": 0.3}
    loaded, meta = ckpt.load_generator(folder)
    assert (meta.stage, meta.epoch, meta.step) == ("joint", 7, 70)
    out = loaded(torch.zeros(1, 1, 32, 32))["high"]
    assert torch.equal(out, g.eval()(torch.zeros(1, 1, 32, 32))["high"])


def test_a_remote_copy_fetches_only_the_files_asked_for(training_checkpoint, s3_bucket, tmp_path):
    directory, _ = training_checkpoint
    uri = f"{s3_bucket}/runs/epoch_0007"
    storage.copy_dir(str(directory), uri)
    cache = tmp_path / "cache"
    only = ckpt.localize(uri, cache, files=ckpt.GENERATOR_FILES)
    assert {p.name for p in only.iterdir()} == set(ckpt.GENERATOR_FILES)
    weights = ckpt.localize(uri, cache, files=ckpt.WEIGHT_FILES)
    assert {p.name for p in weights.iterdir()} == set(ckpt.WEIGHT_FILES)
    everything = ckpt.localize(uri, cache)
    assert ckpt.OPTIM_FILE in {p.name for p in everything.iterdir()}
    assert len({only, weights, everything}) == 3  # one cached copy per selection
