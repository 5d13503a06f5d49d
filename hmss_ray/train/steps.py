"""Pure training steps of the cascade GAN and the staged schedule (no Ray).

Schedule (pix2pixHD): stage ``lrg`` trains the global generator alone, judged at half resolution
against the downsampled CT (the discriminator is fully convolutional, so the same one serves both
resolutions); stage ``hrg`` trains the local enhancer with the LRG frozen; stage ``joint`` trains
both, with the LRG output kept close to the downsampled CT by ``loss.lambda_low``.

The functions work on plain or DistributedDataParallel-wrapped modules. Side passes that must not
trigger DDP's gradient bookkeeping (the discriminator inside the generator step, the fake image in
a stand-alone D step, validation) call the inner module. Batches are moved to the networks'
device and dtype.
:func:`build_training` puts the networks on their device before it builds and restores the
optimisers (Adam's state follows the parameters it was restored onto). Validation is in
:mod:`hmss_ray.train.validation`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hmss_ray.config import ExperimentConfig, MixedPrecision, parse_choice
from hmss_ray.data.shards import TENSOR_COLUMNS
from hmss_ray.metrics.features import Kind, load_extractor
from hmss_ray.models import checkpoint as ckpt
from hmss_ray.models.blocks import downsample_image
from hmss_ray.models.factory import build_discriminator, build_generator, unwrap
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


def autocast_dtype(mode: str, device: torch.device | str) -> torch.dtype | None:
    """bf16 autocast on CUDA unless ``train.mixed_precision`` is ``off``; None (fp32) elsewhere.

    On CPU bf16 autocast is slower than fp32 for these convolutions, so training never takes it.
    """
    if parse_choice(MixedPrecision, mode, "train.mixed_precision") is MixedPrecision.OFF:
        return None
    return torch.bfloat16 if torch.device(device).type == "cuda" else None


@dataclass
class Networks:
    """The cascade, its discriminator and their optimisers on one device, and where they start."""

    generator: nn.Module
    discriminator: nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    start_epoch: int = 0  # the next epoch to train
    step: int = 0  # global step reached
    parent: str | None = None  # what this run continues or was warm-started from


def build_training(
    cfg: ExperimentConfig,
    device: torch.device | str,
    *,
    dtype: torch.dtype | None = None,
    resume: str | Path | None = None,
    warm_start: str | Path | None = None,
) -> Networks:
    """Networks on ``device``, then their optimisers, then the restored state, in that order.

    Adam's state is created on, and restored onto, the device and dtype of its parameters: a
    module moved after the restore would step with its state left behind (on a GPU every resume
    failed at its first step).

    Args:
        cfg: the experiment.
        device: where the networks train.
        dtype: floating dtype of the parameters (None keeps float32); float64 on a CPU is how
            the tests stand in for a device move.
        resume: a checkpoint directory to continue: weights, optimiser states, epoch and step.
        warm_start: a checkpoint directory whose weights (only) start a new run.
    """
    generator = build_generator(cfg).to(device=device, dtype=dtype)
    discriminator = build_discriminator(cfg).to(device=device, dtype=dtype)
    optimizers = build_optimizers(cfg, generator, discriminator)
    nets = Networks(generator, discriminator, optimizers)
    if resume is not None:
        meta = ckpt.load_training_state(resume, generator, discriminator, optimizers)
        nets.start_epoch, nets.step, nets.parent = meta.epoch + 1, meta.step, meta.parent
    elif warm_start is not None:
        ckpt.load_training_state(warm_start, generator, discriminator)  # fresh optimisers
    return nets


def prepare_batch(
    batch: Mapping[str, Any],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict:
    """``mr``, ``ct``, ``mask`` as ``dtype`` tensors (numpy arrays converted) on ``device`` (the
    tensors' own when None); other keys dropped."""
    out = {}
    for key in TENSOR_COLUMNS:
        value = batch[key]
        tensor = torch.from_numpy(np.asarray(value)) if not torch.is_tensor(value) else value
        out[key] = tensor.to(device=device or tensor.device, dtype=dtype)
    return out


def model_device(module: nn.Module) -> torch.device:
    """Where a (possibly DDP-wrapped) module's parameters live."""
    return next(unwrap(module).parameters()).device


def to_model(batch: Mapping[str, Any], module: nn.Module) -> dict:
    """:func:`prepare_batch` on the device and in the floating dtype of ``module``'s parameters."""
    param = next(unwrap(module).parameters())
    return prepare_batch(batch, param.device, param.dtype)


def amp(device: torch.device, dtype: torch.dtype | None):
    """Autocast to ``dtype`` on ``device``'s type; nothing when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def low_views(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """MR, CT and mask at the LRG's half resolution (the mask stays binary)."""
    mask = (downsample_image(batch["mask"]) > 0.5).float()
    return downsample_image(batch["mr"]), downsample_image(batch["ct"]), mask


def _views(batch: dict[str, torch.Tensor], stage: Stage) -> tuple[torch.Tensor, ...]:
    """(condition MR, target CT, mask) at the resolution the stage is judged on."""
    if stage is Stage.LRG:
        return low_views(batch)
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
    b = to_model(batch, generator)
    cond, real, _ = _views(b, stage)
    if fake is None:
        with torch.no_grad(), amp(real.device, autocast_dtype):
            fake = _generate(unwrap(generator), b["mr"], stage)[
                "low" if stage is Stage.LRG else "high"
            ]
    opt_d.zero_grad(set_to_none=True)  # also drops what the G step left on D's parameters
    with amp(real.device, autocast_dtype):
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
    b = to_model(batch, generator)
    cond, real, mask = _views(b, stage)
    loss_cfg = cfg.loss
    opt_g.zero_grad(set_to_none=True)
    with amp(real.device, autocast_dtype):
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
            # the cached extractor follows the batch (a module's .to is in place)
            vgg = load_extractor(Kind.PERCEPTUAL, loss_cfg.vgg_weights).to(real.device, real.dtype)
        total, terms = generator_loss(fake, real, mask, loss_cfg, vgg=vgg, **d_out)
        if stage is Stage.JOINT and loss_cfg.lambda_low:
            _, low_ct, low_mask = low_views(b)
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
