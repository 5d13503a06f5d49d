"""The cascade's shapes, ranges, argument checks and LRG freezing."""

from __future__ import annotations

import pytest
import torch

from hmss_ray.config import ExperimentConfig
from hmss_ray.models import (
    CascadeGenerator,
    HighResGenerator,
    LowResGenerator,
    build_generator,
    count_parameters,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(lrg_channels=8, lrg_downsamples=2, lrg_res_blocks=1, hrg_channels=4, hrg_res_blocks=1)


@pytest.mark.parametrize(
    ("batch", "channels", "height", "width"),
    [(1, 1, 32, 32), (2, 3, 32, 32), (1, 5, 64, 64), (2, 1, 32, 48)],
)
def test_cascade_outputs_low_and_high_in_range(batch, channels, height, width):
    gen = CascadeGenerator(in_channels=channels, **TINY)
    out = gen(torch.randn(batch, channels, height, width))
    assert set(out) == {"low", "high"}
    assert out["low"].shape == (batch, 1, height // 2, width // 2)
    assert out["high"].shape == (batch, 1, height, width)
    for image in out.values():
        assert image.abs().max() <= 1.0


def test_without_high_skips_the_enhancer():
    gen = CascadeGenerator(**TINY)
    out = gen(torch.randn(1, 1, 32, 32), with_high=False)
    assert list(out) == ["low"]


@pytest.mark.parametrize("size", [(30, 32), (8, 8)])
def test_sizes_that_do_not_fit_are_rejected_with_the_rule(size):
    gen = CascadeGenerator(**TINY)
    with pytest.raises(ValueError, match="multiples of 8"):
        gen(torch.randn(1, 1, *size))


def test_bad_arguments_name_the_valid_values():
    with pytest.raises(ValueError, match="'instance', 'batch', 'none'"):
        CascadeGenerator(norm="group", **TINY)
    with pytest.raises(ValueError, match="spatial_dims"):
        LowResGenerator(spatial_dims=3)
    with pytest.raises(ValueError, match="channels must be >= 1"):
        HighResGenerator(channels=0)


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_every_norm_builds_and_runs(norm):
    gen = CascadeGenerator(norm=norm, **TINY)
    assert gen(torch.randn(2, 1, 32, 32))["high"].shape == (2, 1, 32, 32)


def test_enhancer_bridges_lrg_width_that_is_not_twice_its_own():
    gen = CascadeGenerator(**{**TINY, "lrg_channels": 6})
    assert isinstance(gen.high.bridge, torch.nn.Conv2d)
    assert gen(torch.randn(1, 1, 32, 32))["high"].shape == (1, 1, 32, 32)


def test_frozen_lrg_has_no_gradients_and_stays_in_eval_mode():
    gen = CascadeGenerator(norm="batch", **TINY)
    gen.freeze_low(True)
    gen.train()
    assert not gen.low.training and gen.high.training
    gen(torch.randn(2, 1, 32, 32))["high"].mean().backward()
    assert all(p.grad is None for p in gen.low.parameters())
    assert all(p.grad is not None for p in gen.high.parameters())
    gen.freeze_low(False)
    assert gen.low.training


def test_factory_uses_context_channels_and_counts_parameters():
    cfg = ExperimentConfig().replace(
        {"data.context_slices": 2, "data.image_size": 32}
        | {f"model.{k}": v for k, v in TINY.items()}
    )
    gen = build_generator(cfg)
    assert gen(torch.randn(1, 5, 32, 32))["high"].shape == (1, 1, 32, 32)
    assert 10_000 < count_parameters(gen) < 100_000


def test_default_generator_has_pix2pixhd_size():
    params = count_parameters(build_generator(ExperimentConfig()))
    assert 40e6 < params < 50e6  # the global generator dominates, as in pix2pixHD


def test_the_output_head_runs_in_fp32_under_bf16_autocast():
    import torch

    from hmss_ray.models.blocks import output_head

    torch.manual_seed(0)
    head = output_head(4, 1).eval()
    x = torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        exact = head(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_autocast = head(x)
            plain = torch.nn.Sequential(*head)(x)  # what a bf16 head gives
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, exact, rtol=0, atol=1e-6)
    assert (plain.float() - exact).abs().max() > 1e-4  # bf16 would have rounded it
    assert list(head.state_dict()) == ["1.weight", "1.bias"]  # checkpoints unchanged
