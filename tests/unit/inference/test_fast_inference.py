"""Issue 18: the inference engine by config, slab-wise inference, int16 uploads and the gzip
level negotiated by Accept-Encoding. A tiny seeded, untrained cascade (32 px)."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
import torch

from hmss_ray.config import ConfigError, ExperimentConfig
from hmss_ray.data import preprocess
from hmss_ray.data.phantom.render import make_case
from hmss_ray.data.synthrad import CaseId
from hmss_ray.inference.engine import bf16_support
from hmss_ray.inference.synthesizer import AIR_HU, ModelInfo, Synthesizer, mask_from_mr
from hmss_ray.io import Volume, volume_from_bytes, volume_to_bytes
from hmss_ray.io.geometry import Contract, Grid, GridMap
from hmss_ray.models.factory import build_generator
from hmss_ray.serving.upload import gzip_level
from tests.small import TINY_MODEL

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {
    **TINY_MODEL,
    "serve.batch_slices": 4,
}


def _synth(**serve) -> Synthesizer:
    cfg = ExperimentConfig().replace({**TINY, **{f"serve.{k}": v for k, v in serve.items()}})
    torch.manual_seed(0)
    info = ModelInfo("tiny", "-", "-", "-", 0, 0, None, {})
    return Synthesizer(build_generator(cfg), cfg, info, torch.device("cpu"), 4)


LPS_1MM = np.diag([-1.0, -1.0, 1.0, 1.0])  # the contract's spacing: a small grid, fast


@pytest.fixture(scope="module")
def head():
    return make_case(CaseId.parse("1BA001"), seed=0, shape=(32, 32, 30))


def test_precision_is_checked_and_names_the_key() -> None:
    assert ExperimentConfig().serve.precision == "fp32"
    with pytest.raises(ConfigError, match=r"serve\.precision"):
        ExperimentConfig().replace({"serve.precision": "fp16"})
    with pytest.raises(ConfigError, match=r"serve\.batch_slices"):
        ExperimentConfig().replace({"serve.batch_slices": 0})


def test_bf16_engine_is_recorded_and_close_to_fp32(head) -> None:
    fp32, bf16 = _synth(), _synth(precision="bf16", channels_last=True)
    mr = head.mr.astype(np.float32)
    a, b = fp32(mr, head.mask, LPS_1MM), bf16(mr, head.mask, LPS_1MM)
    reason = bf16_support(torch.device("cpu"))
    assert bf16.engine.info.precision == ("bf16" if reason is None else "fp32")
    assert bf16.engine.info.fallback == reason
    body = head.mask > 0
    mae = np.abs(a.astype(np.float32) - b)[body].mean()
    assert mae < 40.0, mae  # untrained tiny net: bf16 rounding, not a different sCT (~10 HU)


def _whole_volume(synth: Synthesizer, mr: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The sCT as before issue 18: the float32 canvas, whole-volume preprocessing and inverse."""
    body = mask_from_mr(mr, affine)
    gmap = GridMap.plan(Grid(mr.shape, affine), Contract("RAS", (1.0, 1.0, 1.0)))
    place = preprocess.place_body(body, gmap, 32, synth.stride)
    prepared = preprocess.prepare_placed(mr, None, place, synth.cfg.data)
    canvas = np.full(prepared.mr.shape, float(AIR_HU), np.float32)
    idx = np.flatnonzero(prepared.mask_fraction > 0)
    for start in range(0, len(idx), synth.batch_slices):
        part = idx[start : start + synth.batch_slices]
        stack = preprocess.slices_with_context(prepared.mr, 1, part)
        high = synth.engine(stack)
        canvas[:, :, part] = np.moveaxis(preprocess.unit_to_ct(high, (-1024, 3000)), 0, 2)
    sct = gmap.inverse(canvas, order=1, cval=AIR_HU, box=place.canvas)
    sct[body == 0] = AIR_HU
    return np.clip(np.rint(sct), -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.9, 0.9, 2.0)])
def test_slabs_give_the_whole_volume_sct(head, spacing) -> None:
    synth = _synth()
    mr = head.mr.astype(np.float32)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])  # LPS storage
    slab = synth(mr, None, affine)
    whole = _whole_volume(synth, mr, affine)
    diff = np.abs(slab.astype(np.int32) - whole)
    if spacing == (1.0, 1.0, 1.0):
        assert diff.max() == 0  # reorientation only: exact
    else:
        assert diff.max() <= 1  # resampled: rounded before the inverse interpolation


def test_int16_upload_is_read_without_a_copy_and_synthesised(head) -> None:
    synth = _synth()
    mr = np.clip(head.mr, 0, 32767).astype(np.int16)
    raw = nib.Nifti1Image(mr, LPS_1MM).to_bytes()
    for data in (raw, gzip.compress(raw)):
        volume = volume_from_bytes(data, synth.cfg.io)
        assert volume.array.dtype == np.int16 and not volume.array.flags.owndata
        np.testing.assert_array_equal(volume.array, mr)
        np.testing.assert_allclose(volume.affine, LPS_1MM)
    sct = synth(volume.array, None, volume.affine)
    assert sct.dtype == np.int16 and sct.flags.f_contiguous  # as NIfTI stores it: no reorder
    np.testing.assert_array_equal(sct, synth(mr.astype(np.float32), None, LPS_1MM))


def test_gzip_level_follows_accept_encoding_and_loopback() -> None:
    assert gzip_level("gzip, deflate", "10.0.0.7") == 1
    assert gzip_level("gzip;q=0", "10.0.0.7") == 0
    assert gzip_level("", "10.0.0.7") == 0  # not asked
    assert gzip_level("gzip", "127.0.0.1") == 0  # loopback: stored
    volume = Volume(np.arange(4096, dtype=np.int16).reshape(16, 16, 16) % 7, np.eye(4))
    stored, fast = (volume_to_bytes(volume, "nifti", None, level) for level in (0, 1))
    assert len(fast) < len(stored)  # both stay valid .nii.gz files
    for body in (stored, fast):
        np.testing.assert_array_equal(volume_from_bytes(body, ExperimentConfig().io).array,
                                      volume.array)  # fmt: skip
