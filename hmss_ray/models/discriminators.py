"""Conditional multi-scale PatchGAN discriminator (pix2pixHD ``MultiscaleDiscriminator``).

The input is the MR concatenated with a real or synthetic CT on the channel axis, so the
discriminator judges whether the CT fits *this* MR, not just whether it looks like a CT. Each
scale sees the pair downsampled once more, so coarse scales judge global layout and the
full-resolution scale judges texture.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as add_spectral_norm

from hmss_ray.models.blocks import (
    Norm,
    check_positive,
    check_spatial_dims,
    downsample_image,
    norm_layer,
    parse_choice,
)

MAX_SCALES = 3


class PatchDiscriminator(nn.Module):
    """One PatchGAN: ``num_layers`` stride-2 convolutions, one stride-1, then a 1-channel map.

    Args:
        spatial_dims: must be 2.
        in_channels: MR channels + CT channels.
        channels: width of the first layer; doubles per layer up to ``8 * channels``.
        num_layers: stride-2 layers (pix2pixHD: 3).
        norm: ``"instance"``, ``"batch"`` or ``"none"``; the first layer has none.
        spectral_norm: wrap every convolution in spectral normalisation.
        out_channels: channels of the logit map.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 2,
        channels: int = 64,
        num_layers: int = 3,
        norm: Norm | str = Norm.INSTANCE,
        spectral_norm: bool = False,
        out_channels: int = 1,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        check_positive(in_channels=in_channels, channels=channels, num_layers=num_layers)
        norm = parse_choice(Norm, norm, "norm")

        def conv(c_in: int, c_out: int, stride: int) -> nn.Module:
            # kernel 4, padding 2 (pix2pixHD): output side H/2 + 1, never collapses to zero
            layer = nn.Conv2d(c_in, c_out, 4, stride, 2)
            return add_spectral_norm(layer) if spectral_norm else layer

        widths = [min(channels * 2**i, 8 * channels) for i in range(num_layers + 1)]
        blocks: list[nn.Module] = [
            nn.Sequential(conv(in_channels, widths[0], 2), nn.LeakyReLU(0.2, inplace=True))
        ]
        for i in range(1, num_layers + 1):
            stride = 2 if i < num_layers else 1
            blocks.append(
                nn.Sequential(
                    conv(widths[i - 1], widths[i], stride),
                    norm_layer(norm, widths[i]),
                    nn.LeakyReLU(0.2, inplace=True),
                )
            )
        self.blocks = nn.ModuleList(blocks)
        self.head = conv(widths[-1], out_channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, C, H, W) -> (logits (B, 1, h, w), the ``num_layers + 1`` intermediate maps)."""
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return self.head(x), features


class MultiScalePatchDiscriminator(nn.Module):
    """``num_scales`` PatchGANs; scale i sees the input downsampled i times.

    Args:
        spatial_dims: must be 2.
        in_channels: MR channels + CT channels (``cfg.in_channels + 1``).
        channels: first-layer width of every scale.
        num_layers: stride-2 layers per scale.
        num_scales: 1 to 3.
        norm: ``"instance"``, ``"batch"`` or ``"none"``.
        spectral_norm: spectral normalisation on every convolution.
        out_channels: channels of each logit map.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 2,
        channels: int = 64,
        num_layers: int = 3,
        num_scales: int = 2,
        norm: Norm | str = Norm.INSTANCE,
        spectral_norm: bool = False,
        out_channels: int = 1,
    ) -> None:
        super().__init__()
        if not 1 <= num_scales <= MAX_SCALES:
            raise ValueError(f"num_scales must be 1 to {MAX_SCALES}, got {num_scales}")
        self.num_layers = num_layers
        self.in_channels = in_channels
        self.discriminators = nn.ModuleList(
            PatchDiscriminator(
                spatial_dims, in_channels, channels, num_layers, norm, spectral_norm, out_channels
            )
            for _ in range(num_scales)
        )

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """(B, C, H, W) -> (logits per scale, features per scale), finest scale first."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"the discriminator takes (B, {self.in_channels}, H, W) pairs (MR channels + 1 "
                f"CT channel), got {tuple(x.shape)}"
            )
        logits, features = [], []
        for index, disc in enumerate(self.discriminators):
            if index:
                x = downsample_image(x)  # (B, C, H / 2**index, W / 2**index)
            scale_logits, scale_features = disc(x)
            logits.append(scale_logits)
            features.append(scale_features)
        return logits, features
