"""Inference under the geometry contract: any storage order, spacing or oblique affine in, the
sCT back on exactly the input grid, and the same anatomy gives the same sCT in world space.

Exactness tests use a tiny seeded, untrained cascade from a real registry entry. The spacing
agreement test uses a fixed band-pass "generator" instead: an untrained cascade's output is not a
smooth function of its input (its 1 mm and 2 mm sCTs of one phantom differ by as much as the sCT
varies, ~500 HU, with or without the contract), so it cannot judge agreement.
"""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from hmss_ray.config import ExperimentConfig
from hmss_ray.data.phantom import make_case
from hmss_ray.data.synthrad import CaseId
from hmss_ray.inference import __main__ as inference_cli
from hmss_ray.inference.synthesizer import InputError, Synthesizer, synthesize_volume
from hmss_ray.io import Volume, read_volume, write_volume
from hmss_ray.models import checkpoint as ckpt
from hmss_ray.models.factory import build_generator
from tests.geometry_cases import at_spacing, reorder, sample_on, storage_variants
from tests.small import TINY_MODEL

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {
    **TINY_MODEL,
    # a coarse contract: a whole phantom head (224 x 256 mm) fits the 32 px canvas at 8 mm
    "data.spacing.brain": [8.0, 8.0, 8.0],
}


@pytest.fixture(scope="module")
def entry(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A registry entry holding a tiny seeded, untrained generator (brain contract, 8 mm)."""
    torch.manual_seed(0)
    cfg = ExperimentConfig().replace(TINY)
    tmp = tmp_path_factory.mktemp("entry")
    directory = ckpt.save_checkpoint(tmp / "ckpt", generator=build_generator(cfg), cfg=cfg)
    return ckpt.write_registry_entry(
        directory, str(tmp / "registry"), "tiny", metrics={}, winner={"trial_id": "t0"}
    )


@pytest.fixture(scope="module")
def synth(entry: str) -> Synthesizer:
    return Synthesizer.from_uri(entry, device="cpu")


@pytest.fixture(scope="module")
def head():
    """A whole phantom head on the contract's 8 mm grid (28 x 32 x 30 voxels)."""
    return make_case(CaseId.parse("1BA001"), seed=0, spacing=(8.0, 8.0, 8.0))


def _in_world(volume: Volume, reference: Volume) -> np.ndarray:
    """``volume`` on ``reference``'s grid, by exact reordering (the grids hold the same points)."""
    return sample_on(volume.array, volume.affine, reference.shape, reference.affine, order=0)


def test_the_registry_entry_carries_the_contract(entry: str, synth: Synthesizer) -> None:
    version = ckpt.localize(entry)
    saved = (version / "config.yaml").read_text()
    assert "orientation: RAS" in saved and "spacing:" in saved
    assert synth.contract().to_dict() == {"orientation": "RAS", "spacing": [8.0, 8.0, 8.0]}
    assert ckpt.read_meta(version).cfg.data.spacing["brain"] == (8.0, 8.0, 8.0)


def test_all_48_storage_orders_give_the_same_sct_in_world_space(synth, head) -> None:
    """No mask given: the body outline is derived on each input grid, the same in every order."""
    reference = synthesize_volume(synth, Volume(head.mr, head.affine))
    diffs = []
    for mr, affine in storage_variants(head.mr, head.affine):
        sct = synthesize_volume(synth, Volume(mr, affine))
        assert sct.shape == mr.shape and np.array_equal(sct.affine, affine)
        diffs.append(np.abs(_in_world(sct, reference) - reference.array).mean())
    assert len(diffs) == 48
    assert max(diffs) <= 1.0  # HU; reorientation is exact, so in fact 0
    assert max(diffs) == 0.0
    assert reference.array.std() > 100  # not a constant image that would pass trivially


@pytest.mark.parametrize(
    "spacing, perm, angle",
    [((1.0, 1.0, 1.0), (0, 1, 2), 0), ((2.0, 2.0, 2.0), (0, 1, 2), 0),
     ((0.9, 0.9, 3.0), (2, 0, 1), 0), ((0.9, 0.9, 3.0), (0, 1, 2), 12)],
    ids=["1mm", "2mm", "0.9x0.9x3-sagittal-storage", "0.9x0.9x3-oblique-12deg"],
)  # fmt: skip
def test_any_spacing_or_angle_comes_back_on_its_own_grid(synth, head, spacing, perm, angle):
    mr, affine = at_spacing(head.mr, head.affine, spacing)
    mask, _ = at_spacing(head.mask, head.affine, spacing, order=0)
    mr, affine2 = reorder(mr, affine, perm, (False, True, False))
    mask, _ = reorder(mask, affine, perm, (False, True, False))
    a = np.deg2rad(angle)
    rotation = np.array([[np.cos(a), -np.sin(a), 0, 0], [np.sin(a), np.cos(a), 0, 0],
                         [0, 0, 1, 0], [0, 0, 0, 1]])  # fmt: skip
    affine2 = rotation @ affine2
    sct = synthesize_volume(synth, Volume(mr, affine2), Volume(mask, affine2))
    assert sct.shape == mr.shape and sct.array.dtype == np.int16
    np.testing.assert_array_equal(sct.affine, affine2)
    assert (sct.array[mask == 0] == -1000).all()  # air outside the body, on the input grid
    assert sct.array[mask > 0].std() > 50  # the network's output, not a fill value


class ScaleProbe(torch.nn.Module):
    """A fixed band-pass filter (difference of Gaussians, sigma 1 and 3 voxels) on the centre MR
    channel: like a trained generator, its output depends on how many voxels a structure spans."""

    def __init__(self) -> None:
        super().__init__()
        ax = torch.arange(-12, 13, dtype=torch.float32)
        g1, g3 = (torch.exp(-(ax**2) / (2 * s**2)) for s in (1.0, 3.0))
        g1, g3 = g1 / g1.sum(), g3 / g3.sum()
        self.register_buffer("kernel", (g1[:, None] * g1 - g3[:, None] * g3)[None, None])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        centre = x[:, x.shape[1] // 2 :][:, :1]
        band = F.conv2d(F.pad(centre, (12,) * 4, mode="replicate"), self.kernel)
        return {"high": torch.tanh(2 * band + 0.5 * centre)}


def test_1mm_2mm_and_anisotropic_inputs_agree_on_their_own_grids(synth) -> None:
    """The same head (rendered whole at about 3.5 x 4 x 10 mm, smoothed with a Gaussian of sigma
    2 voxels so every grid below holds it) resampled to 2 mm and to 0.9x0.9x3 mm. Each sCT,
    compared on its own grid with the native input's sCT sampled there: mean |diff| inside the
    body <= 15 HU (measured 4.4 and 6.7 HU), where the sCT varies by ~350 HU about its mean;
    treating the 2 mm volume as if it were 1 mm (no contract: the network sees the head at half
    its size) is off by > 75 HU (measured 100 HU)."""
    case = make_case(CaseId.parse("1BA001"), seed=0, shape=(64, 64, 24))
    case = dataclasses.replace(case, mr=ndimage.gaussian_filter(case.mr, 2.0))
    # the brain's own 1 mm contract: finer than every input, so the probe sees all their detail
    contract = synth.cfg.replace({"data.spacing.brain": [1.0, 1.0, 1.0]})
    probe = dataclasses.replace(synth, generator=ScaleProbe(), cfg=contract)
    reference = synthesize_volume(
        probe, Volume(case.mr, case.affine), Volume(case.mask, case.affine)
    )
    body = ndimage.binary_erosion(case.mask > 0, iterations=3)
    assert np.abs(reference.array[body] - reference.array[body].mean()).mean() > 300
    for spacing in ((2.0, 2.0, 2.0), (0.9, 0.9, 3.0)):
        mr, affine = at_spacing(case.mr, case.affine, spacing)
        mask, _ = at_spacing(case.mask, case.affine, spacing, order=0)
        sct = synthesize_volume(probe, Volume(mr, affine), Volume(mask, affine))
        assert sct.shape == mr.shape and np.array_equal(sct.affine, affine)
        expected = sample_on(reference.array, reference.affine, mr.shape, affine)
        inner = ndimage.binary_erosion(mask > 0, iterations=2)
        assert np.abs(sct.array - expected)[inner].mean() <= 15, spacing
    mr, affine = at_spacing(case.mr, case.affine, (2.0, 2.0, 2.0))
    mask, _ = at_spacing(case.mask, case.affine, (2.0, 2.0, 2.0), order=0)
    as_if_1mm = affine.copy()
    as_if_1mm[:3, :3] /= 2
    wrong = synthesize_volume(probe, Volume(mr, as_if_1mm), Volume(mask, as_if_1mm)).array
    expected = sample_on(reference.array, reference.affine, mr.shape, affine)
    inner = ndimage.binary_erosion(mask > 0, iterations=2)
    assert np.abs(wrong - expected)[inner].mean() > 75


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def _real_head_mr(synth: Synthesizer, contract_mm: float, storage_orders) -> None:
    """The MNI152 2009 T1 template that nilearn ships (1 mm, 197x233x189; nothing downloaded),
    stored in other orders: each sCT on its own grid, all the same in world space."""
    from nilearn.datasets import load_mni152_template

    image = load_mni152_template(resolution=1)
    mr = np.asarray(image.dataobj)
    spacing = {"data.spacing.brain": [contract_mm] * 3}
    synth = dataclasses.replace(synth, cfg=synth.cfg.replace(spacing))
    reference = synthesize_volume(synth, Volume(mr, image.affine.copy()))
    assert reference.shape == image.shape and np.array_equal(reference.affine, image.affine)
    head = reference.array > -1000
    assert 1e6 < head.sum() < 2.5e6  # the outline was found (~1.9 litres), on the input grid
    for perm, flips in storage_orders:
        data, affine = reorder(mr, image.affine, perm, flips)
        sct = synthesize_volume(synth, Volume(data, affine))
        assert sct.shape == data.shape and np.array_equal(sct.affine, affine)
        diff = np.abs(_in_world(sct, reference) - reference.array)
        assert diff.mean() <= 1.0 and diff[head].max() <= 2  # HU: float rounding at most


def test_a_real_head_mr_comes_back_on_its_grid_whatever_its_storage_order(synth, no_network):
    """A model with a 2 mm contract: the 1 mm head is resampled there and back."""
    _real_head_mr(synth, 2.0, [((1, 2, 0), (True, False, True))])


@pytest.mark.slow
def test_a_real_head_mr_at_the_1mm_contract_in_three_storage_orders(synth, no_network):
    """The same at the brain contract (1 mm: reorientation only, exact); ~20 s on 2 cores."""
    orders = [((1, 2, 0), (True, False, True)), ((2, 0, 1), (False, True, True))]
    _real_head_mr(synth, 1.0, orders)


def test_a_model_of_several_regions_needs_to_know_which(synth: Synthesizer, head) -> None:
    both = dataclasses.replace(synth, cfg=synth.cfg.replace({"data.regions": ["brain", "pelvis"]}))
    with pytest.raises(InputError, match="say which region"):
        synthesize_volume(both, Volume(head.mr, head.affine))
    with pytest.raises(InputError, match="'liver' is not one of this model's"):
        synthesize_volume(both, Volume(head.mr, head.affine), region="liver")
    sct = synthesize_volume(both, Volume(head.mr, head.affine), region="brain")
    assert sct.shape == head.mr.shape


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_the_cli_keeps_the_input_header_geometry(entry, head, tmp_path: Path, suffix) -> None:
    """0.9x0.9x3 mm, oblique, stored sagittally: the sCT file has the MR file's grid."""
    mr, affine = at_spacing(head.mr, head.affine, (0.9, 0.9, 3.0))
    mr, affine = reorder(mr, affine, (2, 0, 1), (True, False, False))
    a = np.deg2rad(8)
    rotation = np.eye(4)
    rotation[1:3, 1:3] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    affine = rotation @ affine
    path = tmp_path / f"mr{suffix}"
    if suffix == ".nii.gz":
        image = nib.Nifti1Image(mr, affine)
        image.header.set_qform(affine, code=1)
        image.header.set_sform(affine, code=2)  # aligned to another scan
        image.header.set_xyzt_units("mm", "sec")
        nib.save(image, path)
    else:
        write_volume(Volume(mr, affine), path)
    out = tmp_path / f"sct{suffix}"
    argv = ["--model", entry, "-i", str(path), "-o", str(out), "--device", "cpu"]
    assert inference_cli.main(argv) == 0
    source, sct = read_volume(path), read_volume(out)
    assert sct.shape == source.shape and sct.array.dtype == np.int16
    np.testing.assert_allclose(sct.affine, source.affine, atol=1e-5)
    if suffix == ".nii.gz":
        before, after = nib.load(path).header, nib.load(out).header
        for key in ("qform_code", "sform_code", "xyzt_units", "pixdim", "dim"):
            np.testing.assert_array_equal(after[key], before[key], err_msg=key)
        np.testing.assert_allclose(nib.load(out).get_sform(), nib.load(path).get_sform())
