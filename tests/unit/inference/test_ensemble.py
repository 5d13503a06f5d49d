"""Test-time augmentation and checkpoint ensembles: config, registry record, the sCT they give.

Tiny seeded, untrained cascades from real checkpoints and registry entries on disk; the
flip-equivariant model is a real cascade symmetrised by averaging it with its mirror.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hmss_ray.config import TTA, ConfigError, EnsembleSource, ExperimentConfig
from hmss_ray.inference import ensemble
from hmss_ray.inference.synthesizer import Synthesizer
from hmss_ray.models import checkpoint as ckpt
from hmss_ray.models.factory import build_generator
from tests.small import TINY_MODEL

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {
    **TINY_MODEL,
}
HU = (-1024.0, 3000.0)


def _generator(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_generator(ExperimentConfig().replace(TINY)).eval()


class MirrorAveraged(nn.Module):
    """``(g(x) + flip(g(flip(x)))) / 2`` over both in-plane flips: equivariant to every flip."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outs = [
            torch.flip(self.generator(torch.flip(x, d) if d else x)["high"], d) if d else
            self.generator(x)["high"]
            for d in ensemble.FLIPS[TTA.FLIPS]
        ]  # fmt: skip
        return {"high": torch.stack(outs).mean(0)}


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.mark.parametrize("tta", [TTA.FLIP_LR, TTA.FLIPS])
def test_tta_of_a_flip_equivariant_model_equals_its_plain_output(batch, tta) -> None:
    model = MirrorAveraged(_generator(0))
    plain = ensemble.Predictor([model], TTA.NONE, HU)(batch)
    np.testing.assert_allclose(ensemble.Predictor([model], tta, HU)(batch), plain, atol=0.05)


def test_tta_changes_the_sct_of_a_model_that_is_not_symmetric(batch) -> None:
    model = _generator(0)
    plain = ensemble.Predictor([model], TTA.NONE, HU)(batch)
    flipped = ensemble.Predictor([model], TTA.FLIP_LR, HU)(batch)
    assert np.abs(flipped - plain).mean() > 1.0  # HU: TTA really ran the mirrored pass


def test_an_ensemble_is_the_mean_in_hu_of_its_members(batch) -> None:
    a, b = _generator(0), _generator(1)
    one = ensemble.Predictor([a], TTA.NONE, HU)
    np.testing.assert_allclose(ensemble.Predictor([a, a, a], TTA.NONE, HU)(batch), one(batch))
    both = ensemble.Predictor([a, b], TTA.NONE, HU)(batch)
    mean = (one(batch) + ensemble.Predictor([b], TTA.NONE, HU)(batch)) / 2
    np.testing.assert_allclose(both, mean, rtol=1e-6, atol=1e-3)
    assert ensemble.Predictor([a, b], TTA.FLIPS, HU).passes == 8


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"inference.ensemble_size": 0}, "inference.ensemble_size"),
        ({"inference.ensemble_size": 9}, "inference.ensemble_size"),
        ({"inference.tta": "rotate"}, "inference.tta"),
        ({"inference.ensemble": "best"}, "inference.ensemble"),
    ],
)
def test_inference_config_refuses_out_of_range_values(override, key) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        ExperimentConfig().replace(override)


def _run(tmp: Path, cfg: ExperimentConfig, scores: list[float]) -> list[str]:
    """A training run's kept checkpoints ``epoch_000i`` with these validation scores."""
    paths = []
    for i, score in enumerate(scores):
        directory = ckpt.save_checkpoint(
            tmp / "run" / f"epoch_{i:04d}", generator=_generator(i), cfg=cfg, epoch=i,
            metrics={"score": score},
        )  # fmt: skip
        paths.append(str(directory))
    return paths


def test_registry_entry_records_the_run_ensemble_and_synthesizer_uses_it(tmp_path) -> None:
    over = {"inference.ensemble": "run", "inference.ensemble_size": 2, "inference.tta": "flip_lr"}
    cfg = ExperimentConfig().replace({**TINY, **over})
    paths = _run(tmp_path, cfg, [0.3, 0.1, 0.2])  # epoch 1 is the winner, epoch 2 the next best
    members: list = []
    ranked = [(paths[1], 0.1, "t0")]
    entry = ckpt.write_registry_entry(
        paths[1], str(tmp_path / "registry"), "e", metrics={}, winner={"trial_id": "t0"},
        extra=lambda d: members.extend(ensemble.write_members(str(d), cfg, ranked)),
    )  # fmt: skip
    assert [m.checkpoint for m in members] == [paths[1], paths[2]]
    record = json.loads((ckpt.localize(entry) / ensemble.ENSEMBLE_FILE).read_text())
    assert record["source"] == "run" and record["tta"] == "flip_lr"
    assert [m["score"] for m in record["members"]] == [0.1, 0.2]
    assert record["members"][0]["version"] != record["members"][1]["version"]

    synth = Synthesizer.from_uri(entry, device="cpu")
    assert synth.info.inference == {"tta": "flip_lr", "members": 2, "passes": 4}
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    expected = ensemble.Predictor([_generator(1), _generator(2)], TTA.FLIP_LR, HU)(x)
    np.testing.assert_allclose(synth.predictor(x), expected, rtol=1e-6, atol=1e-3)
    # the CLI's and Serve's override: the same entry without TTA
    plain = Synthesizer.from_uri(entry, device="cpu", tta="none")
    assert plain.info.inference == {"tta": "none", "members": 2, "passes": 2}


def test_a_search_ensemble_takes_the_top_trials(tmp_path) -> None:
    cfg = ExperimentConfig().replace({**TINY, "inference.ensemble": EnsembleSource.SEARCH.value,
                                      "inference.ensemble_size": 2})  # fmt: skip
    trials = [_run(tmp_path / f"t{i}", cfg, [s])[0] for i, s in enumerate([0.1, 0.2, 0.3])]
    ranked = [(p, s, f"t{i}") for i, (p, s) in enumerate(zip(trials, [0.1, 0.2, 0.3], strict=True))]
    members: list = []
    entry = ckpt.write_registry_entry(
        trials[0], str(tmp_path / "registry"), "s", metrics={}, winner={"trial_id": "t0"},
        extra=lambda d: members.extend(ensemble.write_members(str(d), cfg, ranked)),
    )  # fmt: skip
    assert [m.trial_id for m in members] == ["t0", "t1"]
    synth = Synthesizer.from_uri(entry, device="cpu")
    assert synth.info.inference["members"] == 2


def test_an_entry_without_members_serves_the_winner_alone(tmp_path) -> None:
    cfg = ExperimentConfig().replace({**TINY, "inference.ensemble": "run"})
    path = _run(tmp_path, cfg, [0.1])[0]
    entry = ckpt.write_registry_entry(path, str(tmp_path / "registry"), "one", metrics={},
                                      winner={"trial_id": "t0"})  # fmt: skip
    assert Synthesizer.from_uri(entry, device="cpu").info.inference["members"] == 1


def test_the_derived_body_outline_keeps_a_body_that_reaches_the_first_and_last_slices() -> None:
    """A head scanned down to the neck: its outline must not lose the edge slices (they would
    become air in the sCT, ~1000 HU off)."""
    from hmss_ray.data.phantom import COARSE_SHAPE, make_case
    from hmss_ray.data.synthrad import CaseId
    from hmss_ray.inference.synthesizer import mask_from_mr

    head = make_case(CaseId.parse("1BA001"), seed=0, shape=COARSE_SHAPE)
    given = head.mask > 0
    assert given[:, :, 0].any()  # the phantom's body reaches the bottom slice
    derived = mask_from_mr(head.mr, head.affine) > 0
    for z in np.flatnonzero(given.any(axis=(0, 1))):
        assert derived[:, :, z].sum() >= 0.9 * given[:, :, z].sum(), f"slice {z}"
