"""The spread map says where the model is unsure: larger where the MR is out of distribution.

Two tiny cascades (seeds 0 and 1) are trained briefly (300 Adam steps of L1, ~20 s each on one
core) on four phantom heads at 8 mm; the ensemble with flip TTA then sees a held-out head whose
MR has a signal void in a 64 mm cube inside the brain (what a metal implant does to an MR). Its
spread there is compared with the rest of the body, and with the same cube of the intact MR.
Measured when written: 292 HU in the void, 123 HU elsewhere, 81 HU in the intact cube.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hmss_ray.config import TTA, ExperimentConfig
from hmss_ray.data import preprocess
from hmss_ray.data.phantom import make_case
from hmss_ray.inference import ensemble
from hmss_ray.inference.synthesizer import ModelInfo, Synthesizer, synthesize_with_spread
from hmss_ray.io import Volume
from hmss_ray.models.factory import build_generator
from tests.small import TINY_MODEL

pytestmark = pytest.mark.usefixtures("one_thread")

SPACING = (8.0, 8.0, 8.0)
CFG = ExperimentConfig().replace({**TINY_MODEL, "data.spacing.brain": list(SPACING)})


def _training_slices() -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for i in range(1, 5):
        case = make_case(f"1BA00{i}", seed=0, spacing=SPACING)
        prepared = preprocess.prepare_case(
            case.mr, case.ct, case.mask, case.affine, CFG.data, "brain"
        )
        idx = np.flatnonzero(prepared.keep)
        xs.append(preprocess.slices_with_context(prepared.mr, CFG.data.context_slices, idx))
        ys.append(np.moveaxis(prepared.ct[:, :, idx], 2, 0))
    x = torch.from_numpy(np.concatenate(xs)).float()
    return x, torch.from_numpy(np.concatenate(ys)).float()[:, None]


def _trained(seed: int, x: torch.Tensor, y: torch.Tensor) -> torch.nn.Module:
    torch.manual_seed(seed)
    generator = build_generator(CFG)
    optimiser = torch.optim.Adam(generator.parameters(), 2e-3)
    for _ in range(300):
        batch = torch.randint(0, len(x), (8,))
        loss = (generator(x[batch])["high"] - y[batch]).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return generator.eval()


@pytest.fixture(scope="module")
def synth() -> Synthesizer:
    x, y = _training_slices()
    members = [_trained(seed, x, y) for seed in (0, 1)]
    predictor = ensemble.Predictor(members, TTA.FLIPS, tuple(CFG.data.hu_range))
    info = ModelInfo("probe", "0", "memory", "high", 0, 0, None, {})
    return Synthesizer(members[0], CFG, info, torch.device("cpu"), 8, predictor)


def test_the_spread_is_larger_where_the_mr_is_out_of_distribution(synth: Synthesizer) -> None:
    case = make_case("1BA005", seed=0, spacing=SPACING)
    body = case.mask > 0
    centre = np.argwhere(body).mean(0).astype(int)
    cube = np.zeros_like(body)
    cube[tuple(slice(c - 4, c + 4) for c in centre)] = True
    void = case.mr.copy()
    void[cube] = 0.0  # a signal void, as around a metal implant
    mask = Volume(case.mask.astype(np.uint8), case.affine)
    _, spread, _ = synthesize_with_spread(synth, Volume(void, case.affine), mask)
    _, intact, _ = synthesize_with_spread(synth, Volume(case.mr, case.affine), mask)
    assert spread is not None and intact is not None
    in_void = float(spread.array[cube & body].mean())
    elsewhere = float(spread.array[~cube & body].mean())
    assert in_void > 1.8 * elsewhere, (in_void, elsewhere)
    assert in_void > 2.0 * float(intact.array[cube & body].mean())
    assert float(spread.array[~body].max()) == 0.0  # no spread is reported outside the body
