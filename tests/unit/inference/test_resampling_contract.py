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


def _crop(head, axis: int, side: str):
    """``head``'s MR, mask and affine without their first (``low``) or last slice along ``axis``."""
    keep: list[slice] = [slice(None)] * 3
    keep[axis] = slice(1, None) if side == "low" else slice(None, -1)
    shift = np.eye(4)
    shift[axis, 3] = 1 if side == "low" else 0
    return tuple(keep), head.mr[tuple(keep)], head.mask[tuple(keep)], head.affine @ shift


@pytest.fixture(scope="module")
def whole(synth, head):
    with_mask = synthesize_volume(
        synth, Volume(head.mr, head.affine), Volume(head.mask, head.affine)
    )
    return {True: with_mask, False: synthesize_volume(synth, Volume(head.mr, head.affine), None)}


@pytest.mark.parametrize("with_mask", [True, False])
@pytest.mark.parametrize("cut", [(0, "low"), (0, "high"), (1, "low"), (1, "high"), (2, "high")])
def test_a_one_voxel_crop_gives_the_same_sct_where_they_overlap(synth, head, whole, cut, with_mask):
    # the contract grid lies on a world lattice (io/geometry.py): a crop (here of air, 4 mm on
    # an 8 mm contract) is sampled at the same points where it overlaps the whole, and its sCT
    # there is the same within 1 HU. Without a mask the outline is derived from the MR by a
    # threshold from its histogram, which the crop moves a little: a voxel of the outline
    # sitting on it may flip (2 of 211,000 here), nothing else
    keep, mr, mask, affine = _crop(head, *cut)
    crop = synthesize_volume(synth, Volume(mr, affine), Volume(mask, affine) if with_mask else None)
    assert crop.shape == mr.shape and np.allclose(crop.affine, affine)
    assert whole[with_mask].array.std() > 100
    off = np.abs(crop.array.astype(np.int32) - whole[with_mask].array[keep]) > 1  # HU
    assert off.sum() == 0 if with_mask else off.sum() <= 1e-4 * off.size


def test_a_crop_through_the_body_changes_the_sct_only_near_the_cut(synth, head, whole):
    # the phantom's neck reaches the first axial slice: the crop removes body there, so the
    # network sees other input within its reach of the cut (the rim contract slice and the
    # 2.5D context); from 24 mm past the cut on (3 contract slices), the sCT is the same
    assert head.mask[:, :, 0].any()
    keep, mr, mask, affine = _crop(head, 2, "low")
    crop = synthesize_volume(synth, Volume(mr, affine), Volume(mask, affine))
    diff = np.abs(crop.array.astype(np.int32) - whole[True].array[keep])
    assert diff[:, :, :6].max() > 1  # the cut is seen
    assert diff[:, :, 6:].max() <= 1  # the crop's slices 6... lie 24 mm and more past the cut
