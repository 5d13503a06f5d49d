"""The HMSS cascade: a low-resolution global generator and a full-resolution local enhancer.

Layout follows pix2pixHD (``GlobalGenerator`` + ``LocalEnhancer``). The LRG sees the MR at half
resolution and lays out the global anatomy; the HRG sees the MR at full resolution, adds its
downsampled features to the LRG's last feature map and refines local detail (bone edges, air
cavities). Both heads end in tanh: outputs are CT in [-1, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from hmss_ray.models.blocks import (
    Norm,
    ResidualBlock,
    check_positive,
    check_spatial_dims,
    conv_norm_act,
    downsample_image,
    output_head,
    parse_choice,
    upsample_block,
)


class LowResGenerator(nn.Module):
    """Global generator (LRG): encoder, residual blocks, decoder, at half resolution.

    Args:
        spatial_dims: must be 2 (axial slices).
        in_channels: MR channels (1, or 2k+1 with 2.5D context).
        out_channels: output channels (1: CT).
        channels: width of the first layer; doubles at every downsampling.
        num_downsamples: stride-2 stages; the input side must be a multiple of 2**num_downsamples.
        num_res_blocks: residual blocks at the bottleneck (global context).
        norm: ``"instance"``, ``"batch"`` or ``"none"``.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: int = 64,
        num_downsamples: int = 3,
        num_res_blocks: int = 9,
        norm: Norm | str = Norm.INSTANCE,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        check_positive(in_channels=in_channels, out_channels=out_channels, channels=channels)
        if num_downsamples < 0 or num_res_blocks < 0:
            raise ValueError("num_downsamples and num_res_blocks must be >= 0")
        norm = parse_choice(Norm, norm, "norm")
        self.num_downsamples = num_downsamples
        self.feature_channels = channels
        self.stem = conv_norm_act(in_channels, channels, 7, norm)
        widths = [channels * 2**i for i in range(num_downsamples + 1)]
        self.down = nn.ModuleList(
            conv_norm_act(widths[i], widths[i + 1], 3, norm, stride=2)
            for i in range(num_downsamples)
        )
        self.res = nn.Sequential(*(ResidualBlock(widths[-1], norm) for _ in range(num_res_blocks)))
        self.up = nn.ModuleList(
            upsample_block(widths[i + 1], widths[i], norm) for i in reversed(range(num_downsamples))
        )
        self.head = output_head(channels, out_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C_in, h, w) -> (image (B, C_out, h, w) in [-1, 1], features (B, channels, h, w))."""
        x = self.stem(x)
        for block in self.down:
            x = block(x)  # (B, 2c, h/2, w/2) each stage
        x = self.res(x)
        for block in self.up:
            x = block(x)  # (B, c/2, 2h, 2w) each stage
        return self.head(x), x


class HighResGenerator(nn.Module):
    """Local enhancer (HRG): full-resolution MR in, LRG features fused at half resolution.

    Args:
        spatial_dims: must be 2.
        in_channels: MR channels.
        out_channels: output channels (1: CT).
        channels: width at full resolution; the fused half-resolution stage has twice this.
        low_channels: channels of the LRG feature map it receives. pix2pixHD ties it to
            ``2 * channels``; any other value is bridged by a 1x1 convolution.
        num_res_blocks: residual blocks after the fusion.
        norm: ``"instance"``, ``"batch"`` or ``"none"``.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: int = 32,
        low_channels: int = 64,
        num_res_blocks: int = 3,
        norm: Norm | str = Norm.INSTANCE,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        check_positive(
            in_channels=in_channels,
            out_channels=out_channels,
            channels=channels,
            low_channels=low_channels,
        )
        if num_res_blocks < 0:
            raise ValueError("num_res_blocks must be >= 0")
        norm = parse_choice(Norm, norm, "norm")
        wide = 2 * channels
        self.down = nn.Sequential(
            conv_norm_act(in_channels, channels, 7, norm),
            conv_norm_act(channels, wide, 3, norm, stride=2),
        )
        self.bridge = nn.Identity() if low_channels == wide else nn.Conv2d(low_channels, wide, 1)
        self.res = nn.Sequential(*(ResidualBlock(wide, norm) for _ in range(num_res_blocks)))
        self.up = upsample_block(wide, channels, norm)
        self.head = output_head(channels, out_channels)

    def forward(self, x: torch.Tensor, low_features: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, H, W), low_features (B, low_channels, H/2, W/2) -> (B, C_out, H, W)."""
        fused = self.down(x) + self.bridge(low_features)  # (B, 2c, H/2, W/2)
        return self.head(self.up(self.res(fused)))


class CascadeGenerator(nn.Module):
    """LRG + HRG: ``forward(mr) -> {"low": (B,1,H/2,W/2), "high": (B,1,H,W)}``, both in [-1, 1].

    Args:
        spatial_dims: must be 2.
        in_channels: MR channels (1, or 2k+1 with 2.5D context).
        out_channels: output channels (1: CT).
        lrg_channels: LRG first-layer width.
        lrg_downsamples: LRG stride-2 stages. H and W must be multiples of
            ``2 ** (lrg_downsamples + 1)`` and at least twice that.
        lrg_res_blocks: LRG bottleneck residual blocks.
        hrg_channels: HRG full-resolution width.
        hrg_res_blocks: HRG residual blocks.
        norm: ``"instance"``, ``"batch"`` or ``"none"``.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        lrg_channels: int = 64,
        lrg_downsamples: int = 3,
        lrg_res_blocks: int = 9,
        hrg_channels: int = 32,
        hrg_res_blocks: int = 3,
        norm: Norm | str = Norm.INSTANCE,
    ) -> None:
        super().__init__()
        self.low = LowResGenerator(
            spatial_dims, in_channels, out_channels, lrg_channels, lrg_downsamples,
            lrg_res_blocks, norm,
        )  # fmt: skip
        self.high = HighResGenerator(
            spatial_dims, in_channels, out_channels, hrg_channels, lrg_channels,
            hrg_res_blocks, norm,
        )  # fmt: skip
        self.size_multiple = 2 ** (lrg_downsamples + 1)
        self.low_frozen = False

    def forward(self, mr: torch.Tensor, with_high: bool = True) -> dict[str, torch.Tensor]:
        """mr (B, C, H, W) -> {"low", "high"}; ``with_high=False`` skips the HRG (LRG stage)."""
        self._check_size(mr)
        low, features = self.low(downsample_image(mr))  # (B, 1, H/2, W/2), (B, c, H/2, W/2)
        if not with_high:
            return {"low": low}
        return {"low": low, "high": self.high(mr, features)}  # high: (B, 1, H, W)

    def freeze_low(self, frozen: bool) -> None:
        """Freeze the LRG (HRG stage): no gradients, and kept in eval mode by ``train()``."""
        self.low_frozen = frozen
        self.low.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> CascadeGenerator:
        super().train(mode)
        if self.low_frozen:
            self.low.eval()  # frozen batch-norm statistics must not drift either
        return self

    def _check_size(self, mr: torch.Tensor) -> None:
        if mr.ndim != 4:
            raise ValueError(f"expected MR of shape (B, C, H, W), got {tuple(mr.shape)}")
        m = self.size_multiple
        h, w = mr.shape[-2:]
        if h % m or w % m or min(h, w) < 2 * m:
            raise ValueError(
                f"MR slices of {h}x{w} do not fit this generator: H and W must be multiples of "
                f"{m} (2 ** (lrg_downsamples + 1)) and at least {2 * m}"
            )
