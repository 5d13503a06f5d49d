"""Building blocks shared by the generators and the discriminator (pix2pixHD layouts).

Convolutions on images use reflection padding (pix2pixHD): zero padding draws a dark frame that
the discriminator learns to spot, and CT slices are mostly air at the border anyway.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from hmss_ray.config import Norm, parse_choice

__all__ = ["Norm", "parse_choice"]  # re-exported for the networks built on these blocks


def check_spatial_dims(spatial_dims: int) -> None:
    if spatial_dims != 2:
        raise ValueError(f"spatial_dims={spatial_dims} is not supported; only 2 (axial slices)")


def check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def norm_layer(norm: Norm, channels: int) -> nn.Module:
    # affine=False as in pix2pixHD: the next convolution can rescale anyway
    if norm is Norm.INSTANCE:
        return nn.InstanceNorm2d(channels, affine=False)
    if norm is Norm.BATCH:
        return nn.BatchNorm2d(channels)
    return nn.Identity()


def conv_norm_act(
    in_channels: int, out_channels: int, kernel_size: int, norm: Norm, stride: int = 1
) -> nn.Sequential:
    """Reflection pad, convolution, norm, ReLU. Stride 2 halves H and W exactly (even sizes)."""
    pad = kernel_size // 2
    layers: list[nn.Module] = []
    if stride == 1:
        layers.append(nn.ReflectionPad2d(pad))
        pad = 0
    # a bias in front of a normalisation is cancelled by it
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, pad, bias=norm is Norm.NONE)
    return nn.Sequential(*layers, conv, norm_layer(norm, out_channels), nn.ReLU(inplace=True))


def upsample_block(in_channels: int, out_channels: int, norm: Norm) -> nn.Sequential:
    """Transposed convolution that doubles H and W exactly, then norm and ReLU."""
    conv = nn.ConvTranspose2d(
        in_channels, out_channels, 3, 2, padding=1, output_padding=1, bias=norm is Norm.NONE
    )
    return nn.Sequential(conv, norm_layer(norm, out_channels), nn.ReLU(inplace=True))


class Fp32Head(nn.Sequential):
    """A Sequential that runs in float32 under autocast: the output head rounds the image itself,
    and bf16's 8-bit mantissa is +-4 HU near air and fat (+-2 HU in soft tissue). Same parameter
    names as a plain Sequential, so checkpoints are unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = next(self.parameters())
        with torch.autocast(device_type=x.device.type, enabled=False):
            return super().forward(x.to(weight.dtype))  # bf16 activations -> the fp32 weights


def output_head(in_channels: int, out_channels: int) -> nn.Sequential:
    """7x7 projection to the image and tanh, so outputs live in [-1, 1] like the targets; in
    float32 even under bf16 autocast (:class:`Fp32Head`)."""
    return Fp32Head(nn.ReflectionPad2d(3), nn.Conv2d(in_channels, out_channels, 7), nn.Tanh())


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a skip connection (pix2pixHD ``ResnetBlock``); keeps the shape.

    Args:
        channels: input and output channels.
        norm: normalisation after each convolution.
    """

    def __init__(self, channels: int, norm: Norm = Norm.INSTANCE) -> None:
        super().__init__()
        bias = norm is Norm.NONE
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            norm_layer(norm, channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            norm_layer(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def downsample_image(x: torch.Tensor) -> torch.Tensor:
    """Halve H and W the pix2pixHD way: (B, C, H, W) -> (B, C, H/2, W/2).

    Used for the LRG input, the low-resolution targets and between discriminator scales.
    ``count_include_pad=False`` keeps border pixels from being pulled towards zero.
    """
    return F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
