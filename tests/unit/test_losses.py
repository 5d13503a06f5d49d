"""Each loss term is zero (or minimal) where it should be, has the documented weights, and has a
gradient."""

from __future__ import annotations

import math

import pytest
import torch

from hmss_ray.config import LossConfig
from hmss_ray.metrics.features import RandomFeatures
from hmss_ray.models import MultiScalePatchDiscriminator
from hmss_ray.train import losses


def ones(value: float, shape=(2, 1, 4, 4)) -> torch.Tensor:
    return torch.full(shape, float(value))


@pytest.mark.parametrize(
    ("kind", "real", "fake"), [("lsgan", 1.0, 0.0), ("hinge", 1.0, -1.0), ("bce", 30.0, -30.0)]
)
def test_discriminator_loss_vanishes_on_perfect_logits(kind, real, fake):
    loss_real, loss_fake = losses.d_adversarial(kind, [ones(real)] * 2, [ones(fake)] * 2)
    assert loss_real.item() == pytest.approx(0.0, abs=1e-6)
    assert loss_fake.item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(("kind", "logit", "expected"), [("lsgan", 1.0, 0.0), ("bce", 30.0, 0.0)])
def test_generator_adversarial_vanishes_when_d_is_fooled(kind, logit, expected):
    assert losses.g_adversarial(kind, [ones(logit)]).item() == pytest.approx(expected, abs=1e-6)


def test_hinge_generator_loss_is_minus_the_mean_logit():
    assert losses.g_adversarial("hinge", [ones(2.0), ones(4.0)]).item() == pytest.approx(-3.0)


def test_bce_label_smoothing_moves_the_optimum_to_the_label():
    logit = torch.tensor(math.log(0.9 / 0.1), requires_grad=True)
    loss_real, _ = losses.d_adversarial("bce", [logit.view(1, 1, 1, 1)], [ones(0.0)], 0.9)
    loss_real.backward()
    entropy = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert loss_real.item() == pytest.approx(entropy, rel=1e-5)
    assert abs(logit.grad.item()) < 1e-6


def test_unknown_criterion_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'lsgan', 'hinge', 'bce'"):
        losses.g_adversarial("wgan", [ones(0.0)])


def test_masked_l1_ignores_pixels_outside_the_mask():
    target = torch.zeros(1, 1, 4, 4)
    pred = target.clone()
    pred[..., :2, :] = 0.5  # inside
    pred[..., 2:, :] = 9.0  # outside
    mask = torch.zeros_like(target)
    mask[..., :2, :] = 1
    assert losses.masked_l1(pred, target, mask).item() == pytest.approx(0.5)
    assert losses.masked_l1(pred, target).item() == pytest.approx((0.5 * 8 + 9 * 8) / 16)
    assert losses.masked_l1(target, target, mask).item() == 0.0


def test_feature_matching_weights_layers_and_scales_like_pix2pixhd():
    real = [[ones(0.0), ones(0.0)], [ones(0.0), ones(0.0)]]
    fake = [[ones(1.0), ones(2.0)], [ones(3.0), ones(0.0)]]
    # per layer 4 / (n_layers + 1) = 4 / 2, per scale 1 / num_D = 1 / 2
    expected = 0.5 * 2.0 * (1 + 2) + 0.5 * 2.0 * 3
    assert losses.feature_matching(real, fake).item() == pytest.approx(expected)
    assert losses.feature_matching(real, real).item() == 0.0


def test_feature_matching_trains_only_the_generator_side():
    real = [[torch.ones(1, 2, 3, 3, requires_grad=True)]]
    fake = [[torch.zeros(1, 2, 3, 3, requires_grad=True)]]
    losses.feature_matching(real, fake).backward()
    assert real[0][0].grad is None and fake[0][0].grad.abs().sum() > 0


def test_perceptual_is_zero_for_identical_images_and_differentiable():
    vgg = RandomFeatures().requires_grad_(False)
    target = torch.rand(2, 1, 32, 32) * 2 - 1
    assert losses.perceptual(vgg, target, target).item() == 0.0
    pred = torch.zeros_like(target, requires_grad=True)
    loss = losses.perceptual(vgg, pred, target)
    loss.backward()
    assert loss.item() > 0 and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_ssim_loss_is_zero_for_identical_images_and_grows_with_noise():
    target = torch.rand(2, 1, 32, 32) * 2 - 1
    mask = torch.ones_like(target)
    assert losses.ssim_loss(target, target, mask).item() == pytest.approx(0.0, abs=1e-5)
    pred = (target + 0.3 * torch.randn_like(target)).requires_grad_(True)
    loss = losses.ssim_loss(pred, target, mask)
    loss.backward()
    assert loss.item() > 0.1 and torch.isfinite(pred.grad).all()


def test_gradient_penalty_is_finite_and_reaches_the_discriminator():
    disc = MultiScalePatchDiscriminator(in_channels=2, channels=4, num_layers=2)
    mr, real, fake = (torch.randn(2, 1, 32, 32) for _ in range(3))
    penalty = losses.gradient_penalty(disc, mr, real, fake)
    penalty.backward()
    assert torch.isfinite(penalty)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in disc.parameters())


def test_generator_loss_is_the_weighted_sum_of_named_terms():
    cfg = LossConfig(lambda_adv=2.0, lambda_fm=3.0, lambda_l1=4.0, lambda_perc=5.0, lambda_ssim=6.0)
    target = torch.rand(1, 1, 32, 32) * 2 - 1
    fake = torch.zeros_like(target, requires_grad=True)
    feats = [[torch.randn(1, 2, 5, 5)]]
    total, terms = losses.generator_loss(
        fake, target, torch.ones_like(target), cfg, [ones(0.5)], [[f + 1 for f in feats[0]]],
        feats, RandomFeatures(),
    )  # fmt: skip
    assert set(terms) == {"adv", "fm", "l1", "perc", "ssim"}
    weights = {"adv": 2.0, "fm": 3.0, "l1": 4.0, "perc": 5.0, "ssim": 6.0}
    assert total.item() == pytest.approx(sum(weights[k] * v.item() for k, v in terms.items()))
    total.backward()
    assert fake.grad.abs().sum() > 0


def test_zero_weights_skip_terms_and_all_zero_is_an_error():
    target = torch.zeros(1, 1, 16, 16)
    cfg = LossConfig(lambda_adv=0, lambda_fm=0, lambda_perc=0, lambda_ssim=0)
    _, terms = losses.generator_loss(target, target, None, cfg)
    assert list(terms) == ["l1"]
    with pytest.raises(ValueError, match="every generator loss weight is 0"):
        losses.generator_loss(target, target, None, LossConfig(lambda_l1=0, lambda_ssim=0))
