"""Multi-scale conditional PatchGAN: logits and features per scale."""

from __future__ import annotations

import pytest
import torch

from hmss_ray.config import ExperimentConfig
from hmss_ray.models import MultiScalePatchDiscriminator, build_discriminator


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
    with pytest.raises(RuntimeError):
        disc(torch.randn(1, 2, 32, 32))


def test_spectral_norm_wraps_every_convolution():
    disc = MultiScalePatchDiscriminator(channels=4, num_layers=2, spectral_norm=True)
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(hasattr(c, "parametrizations") for c in convs)
    disc(torch.randn(1, 2, 32, 32))[0][0].mean().backward()


def test_scale_count_is_checked():
    with pytest.raises(ValueError, match="num_scales must be 1 to 3"):
        MultiScalePatchDiscriminator(num_scales=4)
    with pytest.raises(ValueError, match="'instance', 'batch', 'none'"):
        MultiScalePatchDiscriminator(norm="layer")
