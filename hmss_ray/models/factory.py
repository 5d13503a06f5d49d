"""Build the networks from the typed config (the only place that maps config keys to arguments)."""

from __future__ import annotations

import torch
from torch import nn

from hmss_ray.config import ExperimentConfig
from hmss_ray.models.discriminators import MultiScalePatchDiscriminator
from hmss_ray.models.generators import CascadeGenerator


def build_generator(cfg: ExperimentConfig) -> CascadeGenerator:
    """The cascade for ``cfg.in_channels`` MR channels, one CT channel out."""
    m = cfg.model
    return CascadeGenerator(
        spatial_dims=2,
        in_channels=cfg.in_channels,
        out_channels=1,
        lrg_channels=m.lrg_channels,
        lrg_downsamples=m.lrg_downsamples,
        lrg_res_blocks=m.lrg_res_blocks,
        hrg_channels=m.hrg_channels,
        hrg_res_blocks=m.hrg_res_blocks,
        norm=m.norm,
    )


def build_discriminator(cfg: ExperimentConfig) -> MultiScalePatchDiscriminator:
    """The conditional discriminator: MR channels + 1 CT channel in."""
    m = cfg.model
    return MultiScalePatchDiscriminator(
        spatial_dims=2,
        in_channels=cfg.in_channels + 1,
        channels=m.disc_channels,
        num_layers=m.disc_layers,
        num_scales=m.disc_scales,
        norm=m.norm,
        spectral_norm=m.spectral_norm,
    )


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def unwrap(module: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (the module itself otherwise)."""
    return getattr(module, "module", module)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> the first CUDA device when there is one, else the CPU; else ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
