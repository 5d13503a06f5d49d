"""On a contract coarser than the input (resampled, not just reoriented): the storage order leaves
the sCT unchanged, with and without a mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hmss_ray.config import ExperimentConfig
from hmss_ray.data.phantom import make_case
from hmss_ray.data.synthrad import CaseId
from hmss_ray.inference.synthesizer import Synthesizer, synthesize_volume
from hmss_ray.io import Volume
from hmss_ray.models import checkpoint as ckpt
from hmss_ray.models.factory import build_generator
from tests.geometry_cases import reorder, sample_on
from tests.small import TINY_MODEL

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesizer:
    torch.manual_seed(0)
    cfg = ExperimentConfig().replace({**TINY_MODEL, "data.spacing.brain": [8.0, 8.0, 8.0]})
    tmp = tmp_path_factory.mktemp("entry")
    directory = ckpt.save_checkpoint(tmp / "ckpt", generator=build_generator(cfg), cfg=cfg)
    entry = ckpt.write_registry_entry(
        directory, str(tmp / "registry"), "tiny", metrics={}, winner={"trial_id": "t0"}
    )
    return Synthesizer.from_uri(entry, device="cpu")


@pytest.fixture(scope="module")
def head():
    """A phantom head at 4 mm: the 8 mm contract resamples it (2x coarser)."""
    return make_case(CaseId.parse("1BA001"), seed=0, spacing=(4.0, 4.0, 4.0))


@pytest.mark.parametrize("with_mask", [True, False])
def test_ras_and_lps_storage_give_the_same_sct(synth, head, with_mask):
    ras = synthesize_volume(synth, Volume(head.mr, head.affine),
                            Volume(head.mask, head.affine) if with_mask else None)  # fmt: skip
    mr, affine = reorder(head.mr, head.affine, (0, 1, 2), (True, True, False))  # LPS storage
    mask, _ = reorder(head.mask, head.affine, (0, 1, 2), (True, True, False))
    lps = synthesize_volume(synth, Volume(mr, affine), Volume(mask, affine) if with_mask else None)
    back = sample_on(lps.array, lps.affine, ras.shape, ras.affine, order=0)  # exact reordering
    assert ras.array.std() > 100
    assert np.abs(back.astype(np.int32) - ras.array).max() <= 1  # HU
