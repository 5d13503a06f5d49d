"""Multi-scale conditional PatchGAN: logits and features per scale."""

from __future__ import annotations

import pytest
import torch

from hmss_ray.config import ExperimentConfig
from hmss_ray.models import MultiScalePatchDiscriminator, build_discriminator

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("scales", "layers"), [(1, 2), (2, 3), (3, 2)])
def test_logits_and_features_per_scale(scales, layers):
    disc = MultiScalePatchDiscriminator(
        in_channels=2, channels=4, num_layers=layers, num_scales=scales
    )
    logits, features = disc(torch.randn(2, 2, 32, 32))
    assert len(logits) == len(features) == scales
    for scale_logits, scale_features in zip(logits, features, strict=True):
        assert scale_logits.shape[:2] == (2, 1)
        assert len(scale_features) == layers + 1  # the maps feature matching weighs
        assert [f.shape[1] for f in scale_features][:2] == [4, 8]
    sides = [t.shape[-1] for t in logits]
    assert sides == sorted(sides, reverse=True) and len(set(sides)) == scales


def test_conditional_input_is_mr_channels_plus_ct():
    cfg = ExperimentConfig().replace(
        {"data.context_slices": 1, "model.disc_channels": 4, "model.disc_layers": 2}
    )
    disc = build_discriminator(cfg)
    logits, _ = disc(torch.randn(1, 4, 32, 32))  # 3 MR channels + 1 CT
    assert len(logits) == cfg.model.disc_scales
    with pytest.raises(ValueError, match=r"takes \(B, 4, H, W\) pairs .* got \(1, 2, 32, 32\)"):
        disc(torch.randn(1, 2, 32, 32))


def test_spectral_norm_bounds_every_convolution_and_trains():
    torch.manual_seed(0)
    disc = MultiScalePatchDiscriminator(channels=4, num_layers=2, spectral_norm=True)
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        for conv in convs:
            conv.parametrizations.weight.original.mul_(10.0)  # far above norm 1 unwrapped
        for _ in range(30):  # each training forward takes one power-iteration step
            disc(torch.randn(1, 2, 32, 32))
    for conv in convs:  # the weight a forward uses has spectral norm ~1, whatever its scale
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, rel=0.05)
    sum(t.mean() for t in disc(torch.randn(1, 2, 32, 32))[0]).backward()  # every scale
    grads = [c.parametrizations.weight.original.grad for c in convs]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)  # gradients reach the weights


def test_scale_count_is_checked():
    with pytest.raises(ValueError, match="num_scales must be 1 to 3"):
        MultiScalePatchDiscriminator(num_scales=4)
    with pytest.raises(ValueError, match="'instance', 'batch', 'none'"):
        MultiScalePatchDiscriminator(norm="layer")
