"""Whole-volume inference: an MR volume in, a synthetic CT in HU out, on the input grid.

The same preprocessing as training (MR normalisation inside the mask, crop/pad around the mask,
2.5D context), slices through the generator in batches of ``batch_slices`` (peak memory is one
batch, not the volume), the inverse intensity mapping to HU and the inverse crop back onto the
input grid. Used by Serve, by evaluation and by the CLI (``python -m hmss_ray.inference``).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from hmss_ray.config import ExperimentConfig, UserError
from hmss_ray.data import preprocess
from hmss_ray.io import Volume
from hmss_ray.models import checkpoint as ckpt
from hmss_ray.models.factory import resolve_device

AIR_HU = -1000


class InputError(UserError):
    """The input volume cannot be synthesised; the message says why (HTTP 422)."""


def check_volume(mr: np.ndarray, mask: np.ndarray | None, min_size: int) -> None:
    if mr.ndim != 3:
        raise InputError(f"the MR must be a 3D volume, got {mr.ndim} dimensions {mr.shape}")
    if min(mr.shape) < min_size:
        raise InputError(f"the MR is too small: shape {mr.shape}, each side needs >= {min_size}")
    if not np.isfinite(mr).all():
        raise InputError(f"the MR has {int((~np.isfinite(mr)).sum())} non-finite voxels")
    if mask is not None:
        if mask.shape != mr.shape:
            raise InputError(f"the mask shape {mask.shape} differs from the MR shape {mr.shape}")
        if not (mask > 0).any():
            raise InputError("the mask is empty")


def mask_from_mr(mr: np.ndarray) -> np.ndarray:
    """A body outline when none is given: threshold, close, fill holes per slice, largest part."""
    positive = mr[mr > 0]
    if positive.size == 0:
        raise InputError("the MR has no signal: cannot find the body outline")
    threshold = 0.1 * np.percentile(positive, 99)
    mask = ndimage.binary_closing(mr > threshold, iterations=2)
    for z in range(mask.shape[2]):
        mask[:, :, z] = ndimage.binary_fill_holes(mask[:, :, z])
    labels, count = ndimage.label(mask)
    if count > 1:
        sizes = ndimage.sum(mask, labels, range(1, count + 1))
        mask = labels == (int(np.argmax(sizes)) + 1)
    return mask.astype(np.uint8)


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is: registry name, weights version, where it came from, its metrics."""

    name: str
    version: str  # the first 12 hex digits of the generator weights' sha256
    uri: str
    stage: str
    epoch: int
    step: int
    parent: str | None
    metrics: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Synthesizer:
    """A loaded generator with its config; ``synth(mr, mask)`` -> int16 HU volume."""

    generator: torch.nn.Module
    cfg: ExperimentConfig
    info: ModelInfo
    device: torch.device
    batch_slices: int

    @classmethod
    def from_uri(
        cls, uri: str, device: str = "auto", batch_slices: int | None = None
    ) -> Synthesizer:
        directory = ckpt.localize(uri)
        dev = resolve_device(device)
        generator, meta = ckpt.load_generator(directory, dev)
        cfg = meta.cfg
        digest = hashlib.sha256((directory / ckpt.GENERATOR_FILE).read_bytes()).hexdigest()
        info = ModelInfo(
            name=Path(str(uri).rstrip("/")).name,
            version=digest[:12],
            uri=str(uri),
            stage=meta.stage,
            epoch=meta.epoch,
            step=meta.step,
            parent=meta.parent,
            metrics=meta.metrics,
        )
        return cls(generator, cfg, info, dev, batch_slices or cfg.serve.batch_slices)

    def canvas_size(self, mask: np.ndarray) -> int:
        """The training slice size, or larger when the body does not fit in it.

        The generator is fully convolutional, so a body wider than ``data.image_size`` is run on a
        larger canvas (a multiple of the network's stride) rather than cut off.
        """
        plane = mask.any(axis=2)
        rows = np.flatnonzero(plane.any(axis=1))
        cols = np.flatnonzero(plane.any(axis=0))
        extent = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
        stride = 2 ** (self.cfg.model.lrg_downsamples + 1)
        needed = -(-int(extent) // stride) * stride  # round up to the stride
        return max(self.cfg.data.image_size, needed)

    @torch.no_grad()
    def __call__(self, mr: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        mr = np.asarray(mr, dtype=np.float32)
        check_volume(mr, mask, self.cfg.serve.min_size)
        mask = mask_from_mr(mr) if mask is None else (np.asarray(mask) > 0).astype(np.uint8)
        data_cfg = replace(self.cfg.data, image_size=self.canvas_size(mask))
        prepared = preprocess.prepare_volume(mr, None, mask, data_cfg)
        mr_crop = prepared.mr  # (S, S, Z) in [-1, 1]
        sct_crop = np.full(mr_crop.shape, float(AIR_HU), dtype=np.float32)
        body_slices = np.flatnonzero(prepared.mask_fraction > 0)  # empty slices stay air
        for start in range(0, len(body_slices), self.batch_slices):
            idx = body_slices[start : start + self.batch_slices]
            stack = preprocess.slices_with_context(mr_crop, self.cfg.data.context_slices, idx)
            x = torch.from_numpy(stack).to(self.device)  # (B, 2k+1, S, S)
            high = self.generator(x)["high"][:, 0].float().cpu().numpy()  # (B, S, S)
            hu = preprocess.unit_to_ct(high, self.cfg.data.hu_range)
            sct_crop[:, :, idx] = np.moveaxis(hu, 0, 2)
        sct = preprocess.uncrop(sct_crop, prepared.box, mr.shape, fill=AIR_HU)
        sct[mask == 0] = AIR_HU  # outside the body is air, as in the planning CT
        return np.clip(np.rint(sct), -32768, 32767).astype(np.int16)


def synthesize_volume(synth: Synthesizer, mr: Volume, mask: Volume | None = None) -> Volume:
    """An MR volume in, its sCT (int16 HU) out on the MR's grid (same shape and affine)."""
    sct = synth(np.asarray(mr.array, dtype=np.float32), None if mask is None else mask.array)
    return mr.like(sct)
