"""The inference engine: how the generator runs on one batch of slices (issue 18).

``serve.precision`` (fp32 or bf16), ``serve.compile`` (``torch.compile``) and
``serve.channels_last`` pick it. bf16 runs as autocast (convolutions and matrix products in bf16,
normalisations and the output in fp32) and only where the device has bf16 kernels: a CPU whose
oneDNN reports bf16 support (AVX-512 BF16 / AMX), a CUDA device that reports bf16. Elsewhere the
engine runs fp32 and says why (logged, and in :attr:`EngineInfo.fallback`, shown by
``GET /v1/model``). A compile that fails falls back to eager the same way.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from hmss_ray.config import Precision, ServeConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineInfo:
    """What runs the generator: device, number format and graph, and any fallback's reason."""

    name: str  # e.g. "torch-bf16-cl" (precision, channels_last, compile)
    device: str
    precision: str  # what runs
    requested: str  # what serve.precision asked for
    channels_last: bool
    compiled: bool
    fallback: str | None = None  # why what runs differs from what was asked

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bf16_support(device: torch.device) -> str | None:
    """None when ``device`` has bf16 kernels, else the reason it has not."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return None
        return f"{torch.cuda.get_device_name(device)} has no bf16 support"
    if device.type == "cpu":
        if not torch.backends.mkldnn.is_available():
            return "this torch build has no oneDNN (mkldnn), so no bf16 CPU kernels"
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return "this CPU has no bf16 instructions (AVX-512 BF16, AVX-512 or AMX)"
        return None
    return f"bf16 autocast is not set up for device type {device.type!r}"


def engine_name(precision: str, channels_last: bool, compiled: bool) -> str:
    return "torch-" + "-".join(
        [precision] + (["cl"] if channels_last else []) + (["compile"] if compiled else [])
    )


class Engine:
    """``engine(x)`` -> the generator's high-resolution output, float32 (B, S, S) in [-1, 1].

    Args:
        generator: the loaded generator (on ``device``, eval mode); channels_last is applied to it
            in place.
        device: where it runs.
        serve: ``precision``, ``compile`` and ``channels_last`` are read from it.
    """

    def __init__(self, generator: torch.nn.Module, device: torch.device, serve: ServeConfig):
        self.device = device
        requested = Precision(serve.precision)
        precision, fallback = requested, None
        if requested is Precision.BF16:
            fallback = bf16_support(device)
            if fallback is not None:
                precision = Precision.FP32
                log.warning("serve.precision=bf16 runs as fp32: %s", fallback)
        self.bf16 = precision is Precision.BF16
        self.channels_last = bool(serve.channels_last)
        self.generator = generator.eval()
        if self.channels_last:
            self.generator.to(memory_format=torch.channels_last)
        self.module: Any = self.generator
        compiled = False
        if serve.compile:
            try:
                self.module = torch.compile(self.generator, dynamic=False)
                compiled = True
            except Exception as exc:  # no compiler toolchain, an unsupported platform, ...
                why = f"torch.compile failed ({type(exc).__name__}: {exc}); running eager"
                fallback = why if fallback is None else f"{fallback}; {why}"
                log.warning("serve.compile: %s", why)
        self.info = EngineInfo(
            name=engine_name(str(precision), self.channels_last, compiled),
            device=str(device),
            precision=str(precision),
            requested=str(requested),
            channels_last=self.channels_last,
            compiled=compiled,
            fallback=fallback,
        )

    @torch.no_grad()
    def __call__(self, stack: np.ndarray) -> np.ndarray:
        """``stack``: float32 (B, C, S, S) 2.5D slices -> float32 (B, S, S)."""
        x = torch.from_numpy(np.ascontiguousarray(stack)).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            high = self.module(x)["high"][:, 0]
        return high.float().cpu().numpy()
