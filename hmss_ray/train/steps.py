"""Pure training steps of the cascade GAN and the staged schedule (no Ray).

Schedule (pix2pixHD): stage ``lrg`` trains the global generator alone, judged at half resolution
against the downsampled CT (the discriminator is fully convolutional, so the same one serves both
resolutions); stage ``hrg`` trains the local enhancer with the LRG frozen; stage ``joint`` trains
both, with the LRG output kept close to the downsampled CT by ``loss.lambda_low``.

The functions work on plain or DistributedDataParallel-wrapped modules. Side passes that must not
trigger DDP's gradient bookkeeping (the discriminator inside the generator step, the fake image in
a stand-alone D step, validation) call the inner module. Devices come from the batch tensors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

import numpy as np
import torch
from torch import nn

from hmss_ray.config import ExperimentConfig, parse_choice
from hmss_ray.data.shards import TENSOR_COLUMNS
from hmss_ray.metrics import SliceMetrics
from hmss_ray.metrics.features import Kind, load_extractor
from hmss_ray.models.blocks import downsample_image
from hmss_ray.models.factory import unwrap
from hmss_ray.train.losses import d_adversarial, generator_loss, gradient_penalty, masked_l1


class Stage(StrEnum):
    LRG = "lrg"  # low-resolution generator alone
    HRG = "hrg"  # high-resolution generator, LRG frozen
    JOINT = "joint"  # both


def parse_stage(stage: str) -> Stage:
    return parse_choice(Stage, stage, "stage")


def stage_for_epoch(epoch: int, stage_epochs: Sequence[int]) -> str:
    """The stage of a 0-based epoch; epochs past the schedule stay ``joint``."""
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    lrg, hrg, _ = stage_epochs
    if epoch < lrg:
        return Stage.LRG.value
    return Stage.HRG.value if epoch < lrg + hrg else Stage.JOINT.value


def set_stage(generator: nn.Module, stage: str) -> None:
    """Freeze what the stage does not train: the HRG in ``lrg``, the LRG in ``hrg``."""
    stage = parse_stage(stage)
    inner = unwrap(generator)
    inner.freeze_low(stage is Stage.HRG)
    inner.high.requires_grad_(stage is not Stage.LRG)


def build_optimizers(
    cfg: ExperimentConfig, generator: nn.Module, discriminator: nn.Module
) -> dict[str, torch.optim.Optimizer]:
    """Adam for the generator (``"g"``) and the discriminator (``"d"``), from ``cfg.optim``.

    Build them after the modules are on their device: Adam's state follows the parameters.
    """
    o = cfg.optim
    betas = (o.beta1, o.beta2)
    return {
        "g": torch.optim.Adam(generator.parameters(), lr=o.lr_g, betas=betas),
        "d": torch.optim.Adam(discriminator.parameters(), lr=o.lr_d, betas=betas),
    }


def prepare_batch(batch: Mapping[str, Any], device: torch.device | str | None = None) -> dict:
    """``mr``, ``ct``, ``mask`` as float32 tensors (numpy arrays converted); other keys dropped."""
    out = {}
    for key in TENSOR_COLUMNS:
        value = batch[key]
        tensor = torch.from_numpy(np.asarray(value)) if not torch.is_tensor(value) else value
        out[key] = tensor.to(device=device or tensor.device, dtype=torch.float32)
    return out


def _model_device(module: nn.Module) -> torch.device:
    return next(unwrap(module).parameters()).device


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _low_views(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """MR, CT and mask at the LRG's half resolution (the mask stays binary)."""
    mask = (downsample_image(batch["mask"]) > 0.5).float()
    return downsample_image(batch["mr"]), downsample_image(batch["ct"]), mask


def _views(batch: dict[str, torch.Tensor], stage: Stage) -> tuple[torch.Tensor, ...]:
    """(condition MR, target CT, mask) at the resolution the stage is judged on."""
    if stage is Stage.LRG:
        return _low_views(batch)
    return batch["mr"], batch["ct"], batch["mask"]


def _floats(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    # one device sync for all terms instead of one .item() each
    values = torch.stack([v.detach().float() for v in terms.values()]).tolist()
    return dict(zip(terms, values, strict=True))


def _generate(generator: nn.Module, mr: torch.Tensor, stage: Stage) -> dict[str, torch.Tensor]:
    return generator(mr, with_high=stage is not Stage.LRG)


def d_step(
    generator: nn.Module,
    discriminator: nn.Module,
    opt_d: torch.optim.Optimizer,
    batch: Mapping[str, Any],
    cfg: ExperimentConfig,
    stage: str,
    autocast_dtype: torch.dtype | None = None,
    fake: torch.Tensor | None = None,
) -> dict[str, float]:
    """One discriminator update; ``fake`` (the stage's output) is generated when not given."""
    stage = parse_stage(stage)
    b = prepare_batch(batch, None if torch.is_tensor(batch["mr"]) else _model_device(generator))
    cond, real, _ = _views(b, stage)
    amp = _autocast(real.device, autocast_dtype)
    if fake is None:
        with torch.no_grad(), amp:
            fake = _generate(unwrap(generator), b["mr"], stage)[
                "low" if stage is Stage.LRG else "high"
            ]
    opt_d.zero_grad(set_to_none=True)  # also drops what the G step left on D's parameters
    with _autocast(real.device, autocast_dtype):
        # real and fake pairs in one forward: one DDP forward per backward
        pairs = torch.cat(
            [torch.cat([cond, real], 1), torch.cat([cond, fake.detach().to(real)], 1)]
        )
        logits, _ = discriminator(pairs)
    n = real.shape[0]
    loss_real, loss_fake = d_adversarial(
        cfg.loss.adversarial, [t[:n] for t in logits], [t[n:] for t in logits], cfg.loss.real_label
    )
    terms = {"d_real": loss_real, "d_fake": loss_fake}
    total = 0.5 * (loss_real + loss_fake)
    if cfg.loss.lambda_gp:
        terms["d_gp"] = gradient_penalty(unwrap(discriminator), cond, real, fake)
        total = total + cfg.loss.lambda_gp * terms["d_gp"]
    total.backward()
    opt_d.step()
    return _floats({"d_total": total, **terms})


def _g_step(generator, discriminator, opt_g, batch, cfg, stage, autocast_dtype):
    stage = parse_stage(stage)
    b = prepare_batch(batch, None if torch.is_tensor(batch["mr"]) else _model_device(generator))
    cond, real, mask = _views(b, stage)
    loss_cfg = cfg.loss
    opt_g.zero_grad(set_to_none=True)
    with _autocast(real.device, autocast_dtype):
        out = _generate(generator, b["mr"], stage)
        fake = out["low" if stage is Stage.LRG else "high"]
        d_out: dict[str, Any] = {}
        if loss_cfg.lambda_adv or loss_cfg.lambda_fm:
            disc = unwrap(discriminator)
            d_out["fake_logits"], d_out["fake_features"] = disc(torch.cat([cond, fake], 1))
            if loss_cfg.lambda_fm:
                with torch.no_grad():
                    d_out["real_features"] = disc(torch.cat([cond, real], 1))[1]
        vgg = None
        if loss_cfg.lambda_perc:
            vgg = load_extractor(Kind.PERCEPTUAL, loss_cfg.vgg_weights).to(real.device)
        total, terms = generator_loss(fake, real, mask, loss_cfg, vgg=vgg, **d_out)
        if stage is Stage.JOINT and loss_cfg.lambda_low:
            _, low_ct, low_mask = _low_views(b)
            terms["low_l1"] = masked_l1(out["low"], low_ct, low_mask)
            total = total + loss_cfg.lambda_low * terms["low_l1"]
    total.backward()
    opt_g.step()
    losses = _floats({"total": total, **terms})
    return {f"g_{k}": v for k, v in losses.items()}, fake.detach()


def g_step(
    generator: nn.Module,
    discriminator: nn.Module,
    opt_g: torch.optim.Optimizer,
    batch: Mapping[str, Any],
    cfg: ExperimentConfig,
    stage: str,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """One generator update of the parts the stage trains; every loss term by name."""
    return _g_step(generator, discriminator, opt_g, batch, cfg, stage, autocast_dtype)[0]


def train_step(
    generator: nn.Module,
    discriminator: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    batch: Mapping[str, Any],
    cfg: ExperimentConfig,
    stage: str,
    step_index: int,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """A G step, then a D step on the same fake every ``optim.g_steps_per_d`` steps.

    ``d_*`` keys appear only on steps that update D.
    """
    losses, fake = _g_step(generator, discriminator, opt_g, batch, cfg, stage, autocast_dtype)
    if step_index % cfg.optim.g_steps_per_d == 0:
        d_losses = d_step(
            generator, discriminator, opt_d, batch, cfg, stage, autocast_dtype, fake=fake
        )
        losses.update(d_losses)
    return losses


@torch.no_grad()
def validate(
    generator: nn.Module, batches: Iterable[Mapping[str, Any]], cfg: ExperimentConfig
) -> dict[str, float]:
    """Deterministic validation metrics of both outputs, and the Tune ``score``.

    LRG: ``low_mae_hu, low_mse, low_ssim, low_psnr`` against the downsampled CT. HRG: ``mae_hu,
    mse, ssim, psnr, perceptual, fid, bone_dice``. ``fid_random_features`` and
    ``perceptual_random_features`` are 1.0 when the fallback extractors were used.
    """
    model = unwrap(generator)
    was_training = model.training
    model.eval()
    device = _model_device(model)
    m = cfg.metrics
    vgg = load_extractor(Kind.VGG_DISTANCE, m.vgg_weights).to(device)
    inception = load_extractor(Kind.INCEPTION, m.inception_weights).to(device)
    hu_range = cfg.data.hu_range
    high = SliceMetrics(hu_range, m.bone_threshold_hu, vgg, inception, m.fid_max_slices)
    low = SliceMetrics(hu_range)
    try:
        for batch in batches:
            b = prepare_batch(batch, device)
            out = model(b["mr"])
            high.update(b["ct"], out["high"], b["mask"])
            _, low_ct, low_mask = _low_views(b)
            low.update(low_ct, out["low"], low_mask)
    finally:
        model.train(was_training)
    metrics = {**low.compute("low_"), **high.compute()}
    t = cfg.tune
    metrics["score"] = t.w_ssim * (1 - metrics["ssim"]) + t.w_fid * metrics["fid"] / t.fid_ref
    metrics["fid_random_features"] = float(not inception.pretrained)
    metrics["perceptual_random_features"] = float(not vgg.pretrained)
    return metrics
