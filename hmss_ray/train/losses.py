"""Generator and discriminator losses of the cascade GAN, and their weighted sum from ``cfg.loss``.

Every term is a pure function of tensors; ``generator_loss`` weighs them by ``cfg.loss`` (a weight
of 0 skips a term entirely) and returns the total with each unweighted term by name, for logging.
Adversarial terms are averaged over discriminator scales so ``lambda_adv`` keeps its meaning when
``model.disc_scales`` changes; feature matching uses pix2pixHD's explicit 1/num_D weight.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from hmss_ray.config import AdversarialCriterion, LossConfig, parse_choice
from hmss_ray.metrics import ssim_map


def criterion(value: str) -> AdversarialCriterion:
    return parse_choice(AdversarialCriterion, value, "adversarial")


def d_adversarial(
    kind: AdversarialCriterion | str,
    real_logits: list[torch.Tensor],
    fake_logits: list[torch.Tensor],
    real_label: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss on real, loss on fake) for the discriminator, each averaged over scales."""
    kind = criterion(kind)
    real = [_d_term(kind, t.float(), True, real_label) for t in real_logits]
    fake = [_d_term(kind, t.float(), False, real_label) for t in fake_logits]
    return torch.stack(real).mean(), torch.stack(fake).mean()


def _d_term(kind: AdversarialCriterion, logits: torch.Tensor, real: bool, label: float):
    if kind is AdversarialCriterion.HINGE:
        return F.relu(1 - logits).mean() if real else F.relu(1 + logits).mean()
    target = torch.full_like(logits, label if real else 0.0)
    if kind is AdversarialCriterion.LSGAN:
        return F.mse_loss(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target)


def g_adversarial(
    kind: AdversarialCriterion | str, fake_logits: list[torch.Tensor]
) -> torch.Tensor:
    """The generator's adversarial loss (target 1: label smoothing is for D only), scale mean."""
    kind = criterion(kind)
    terms = []
    for logits in fake_logits:
        logits = logits.float()
        if kind is AdversarialCriterion.HINGE:
            terms.append(-logits.mean())
        elif kind is AdversarialCriterion.LSGAN:
            terms.append(F.mse_loss(logits, torch.ones_like(logits)))
        else:
            terms.append(F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits)))
    return torch.stack(terms).mean()


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None):
    """Mean |pred - target| over pixels where ``mask > 0`` (all pixels when ``mask`` is None)."""
    diff = (pred.float() - target.float()).abs()
    if mask is None:
        return diff.mean()
    weight = (mask > 0.5).float().expand_as(diff)
    return (diff * weight).sum() / weight.sum().clamp(min=1.0)


def feature_matching(
    real_features: list[list[torch.Tensor]],
    fake_features: list[list[torch.Tensor]],
    layer_weight: float | None = None,
    scale_weight: float | None = None,
) -> torch.Tensor:
    """pix2pixHD feature matching: L1 between D features of real and fake pairs.

    Per layer ``4 / (n_layers + 1)`` (``n_layers + 1`` = feature maps per scale) and per scale
    ``1 / num_D`` unless given. Real features are detached: only the generator learns from it.
    """
    scale_weight = 1.0 / len(fake_features) if scale_weight is None else scale_weight
    total = fake_features[0][0].new_zeros((), dtype=torch.float32)
    for real_scale, fake_scale in zip(real_features, fake_features, strict=True):
        weight = 4.0 / len(fake_scale) if layer_weight is None else layer_weight
        for real, fake in zip(real_scale, fake_scale, strict=True):
            total = total + scale_weight * weight * F.l1_loss(fake.float(), real.detach().float())
    return total


def perceptual(extractor: nn.Module, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Weighted L1 between feature maps of ``extractor`` (VGG19 taps, pix2pixHD weights)."""
    with torch.no_grad():
        target_features = extractor(target)
    pred_features = extractor(pred)
    total = pred.new_zeros((), dtype=torch.float32)
    for weight, p, t in zip(extractor.weights, pred_features, target_features, strict=True):
        total = total + weight * F.l1_loss(p.float(), t.float())
    return total


def ssim_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None):
    """``1 - SSIM`` of [-1, 1] images on [0, 1] (7x7 window), averaged inside the mask if given."""
    smap = ssim_map((pred.float() + 1) / 2, (target.float() + 1) / 2, 1.0)
    if mask is not None:
        crop = (mask.shape[-1] - smap.shape[-1]) // 2
        inner = (mask[..., crop:-crop, crop:-crop] > 0.5).float().expand_as(smap)
        if inner.sum() > 0:
            return 1 - (smap * inner).sum() / inner.sum()
    return 1 - smap.mean()


def gradient_penalty(
    disc: nn.Module, condition: torch.Tensor, real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """WGAN-GP penalty ``(|grad D(x)| - 1)^2`` on random mixes of real and fake CT.

    ``disc`` should be the unwrapped module: DistributedDataParallel does not support the
    double backward this needs through its own forward.
    """
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    logits, _ = disc(torch.cat([condition, mixed], dim=1))
    score = sum(t.float().mean() for t in logits)
    (grad,) = torch.autograd.grad(score, mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square().mean()


def generator_loss(
    fake: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None,
    cfg: LossConfig,
    fake_logits: list[torch.Tensor] | None = None,
    fake_features: list[list[torch.Tensor]] | None = None,
    real_features: list[list[torch.Tensor]] | None = None,
    vgg: nn.Module | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(total, terms)``: the ``cfg.loss``-weighted sum and each unweighted term by name.

    Terms: ``adv`` and ``fm`` (need the discriminator outputs), ``l1`` (masked when
    ``cfg.masked_l1``), ``perc`` (needs ``vgg``), ``ssim``. Zero-weight terms are not computed.
    """
    terms: dict[str, torch.Tensor] = {}
    weights: dict[str, float] = {}
    if cfg.lambda_adv and fake_logits is not None:
        terms["adv"], weights["adv"] = g_adversarial(cfg.adversarial, fake_logits), cfg.lambda_adv
    if cfg.lambda_fm and fake_features is not None and real_features is not None:
        terms["fm"], weights["fm"] = feature_matching(real_features, fake_features), cfg.lambda_fm
    if cfg.lambda_l1:
        terms["l1"] = masked_l1(fake, target, mask if cfg.masked_l1 else None)
        weights["l1"] = cfg.lambda_l1
    if cfg.lambda_perc and vgg is not None:
        terms["perc"], weights["perc"] = perceptual(vgg, fake, target), cfg.lambda_perc
    if cfg.lambda_ssim:
        terms["ssim"], weights["ssim"] = ssim_loss(fake, target, mask), cfg.lambda_ssim
    if not terms:
        raise ValueError("every generator loss weight is 0: nothing to train")
    total = sum(weights[name] * value for name, value in terms.items())
    return total, terms
