"""Whole-volume inference: an MR volume in, a synthetic CT in HU out, on the input grid exactly.

The input (any storage order, spacing or oblique affine) goes onto the model's geometry contract
(:mod:`hmss_ray.io.geometry`: reoriented exactly, resampled only when the spacing or the angle
differ), gets the training preprocessing (MR normalisation inside the body mask, a canvas around
the body, grown when the body is larger: the generator is fully convolutional, 2.5D context), goes
through the generator in batches of ``batch_slices`` slices, is mapped back to HU and then back
onto exactly the input grid with the inverse map, all in slabs of slices (:mod:`.slabs`: memory
stays within about 3x the float32 input). The generator runs in the engine that ``serve.precision``,
``serve.compile`` and ``serve.channels_last`` choose (:mod:`.engine`). Used by Serve, by evaluation
and by the CLI (``python -m hmss_ray.inference``).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

from hmss_ray.config import ExperimentConfig, UserError
from hmss_ray.data import preprocess
from hmss_ray.data.intensity import ct_to_unit
from hmss_ray.inference import ensemble, slabs
from hmss_ray.inference.engine import Engine
from hmss_ray.io import UnreadableVolume, Volume, geometry
from hmss_ray.io.geometry import Contract, Grid, GridMap
from hmss_ray.io.limits import check_voxels
from hmss_ray.io.volume import check_affine
from hmss_ray.models import checkpoint as ckpt
from hmss_ray.models.factory import resolve_device
from hmss_ray.registry import load

AIR_HU = slabs.AIR_HU


class InputError(UserError):
    """The input volume cannot be synthesised; the message says why (HTTP 422)."""


def check_volume(mr: np.ndarray, mask: np.ndarray | None, min_size: int) -> None:
    if mr.ndim != 3:
        raise InputError(f"the MR must be a 3D volume, got {mr.ndim} dimensions {mr.shape}")
    if min(mr.shape) < min_size:
        raise InputError(f"the MR is too small: shape {mr.shape}, each side needs >= {min_size}")
    if mr.dtype.kind == "f" and not np.isfinite(mr).all():  # integer MR: finite by type
        raise InputError(f"the MR has {int((~np.isfinite(mr)).sum())} non-finite voxels")
    if mask is not None:
        if mask.shape != mr.shape:
            raise InputError(f"the mask shape {mask.shape} differs from the MR shape {mr.shape}")
        if not (mask > 0).any():
            raise InputError("the mask is empty")


def _signal_threshold(mr: np.ndarray) -> float:
    """A tenth of the 99th percentile of the positive voxels, from a histogram: no copy of the
    volume, and the same value whatever the storage order."""
    top = float(mr.max())
    if not top > 0:
        raise InputError("the MR has no signal: cannot find the body outline")
    values = mr.ravel(order="K")  # a view in any memory order (histogram's ravel would copy)
    counts, edges = np.histogram(values, bins=4096, range=(float(np.finfo(np.float32).tiny), top))
    cumulative = np.cumsum(counts)
    return 0.1 * float(edges[np.searchsorted(cumulative, 0.99 * cumulative[-1]) + 1])


def _labels(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The connected parts of ``mask``, labelled in uint16 when that holds them (2 bytes a voxel,
    not scipy's default 4: the largest temporary of whole-volume inference); else int32."""
    try:
        labels = np.empty(mask.shape, np.uint16)
        return labels, int(ndimage.label(mask, output=labels))
    except RuntimeError:  # scipy: "insufficient bit-depth" - more parts than uint16 holds
        del labels
        labels, count = ndimage.label(mask)
        return labels, int(count)


def _largest_part(mask: np.ndarray) -> np.ndarray:
    labels, count = _labels(mask)
    if count <= 1:
        return mask
    sizes = np.zeros(count + 1, np.int64)
    step = max(1, (1 << 20) // max(labels[:, :, 0].size, 1))
    for z in range(0, labels.shape[2], step):  # in slabs: bincount's int64 copy stays small
        sizes += np.bincount(labels[:, :, z : z + step].ravel(), minlength=count + 1)
    sizes[0] = 0  # background
    return np.asarray(labels == int(np.argmax(sizes)))


def mask_from_mr(mr: np.ndarray, affine: np.ndarray | None = None) -> np.ndarray:
    """A body outline when none is given: threshold, close, fill holes per axial slice, keep the
    largest part. Axial is the storage axis closest to superior-inferior in ``affine`` (axis 2
    without one), so the outline does not depend on the storage order."""
    # padded: scipy's closing erodes from an all-zero border, which would drop a body that
    # reaches the first or last slices (a head scanned down to the neck)
    pad = 2
    mask = np.pad(mr > _signal_threshold(mr), pad)
    mask = ndimage.binary_closing(mask, iterations=pad)[pad:-pad, pad:-pad, pad:-pad]
    axial = 2
    if affine is not None:  # the storage axis that nibabel's reorientation maps to I/S
        ornt = nib.orientations.io_orientation(affine)  # type: ignore[no-untyped-call]
        axial = int(np.flatnonzero(ornt[:, 0] == 2)[0])
    _fill_holes_per_slice(mask, axial)
    return _largest_part(mask).view(np.uint8)


def _fill_holes_per_slice(mask: np.ndarray, axial: int) -> None:
    """Fill the holes of every slice along ``axial`` (in place), in slabs of slices: no link
    across slices, so the slabs give the whole volume's answer with slab-sized temporaries."""
    in_plane = np.zeros((3, 3, 3), bool)
    np.moveaxis(in_plane, axial, 2)[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    per_slice = max(mask.size // max(mask.shape[axial], 1), 1)
    step = max(1, (1 << 24) // per_slice)
    for z0 in range(0, mask.shape[axial], step):
        index: list[Any] = [slice(None)] * 3
        index[axial] = slice(z0, z0 + step)
        slab = mask[tuple(index)]
        slab[...] = ndimage.binary_fill_holes(slab, structure=in_plane)


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is: registry name, weights version, where it came from, its metrics."""

    name: str
    # a registry version's id; else the first 12 hex digits of the generator weights' sha256
    version: str
    uri: str
    stage: str
    epoch: int
    step: int
    parent: str | None
    metrics: dict[str, float]
    # TTA and ensemble: what each slice costs (ensemble.Predictor.describe)
    inference: dict[str, Any] = field(default_factory=dict)
    # a registry version: {version, digest, alias, pinned}; None for a bare checkpoint
    registry: dict[str, Any] | None = None
    card: str | None = None  # the version's MODEL_CARD.md

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Synthesis:
    """One volume's result on the input grid: the sCT (int16 HU), the body mask it was made
    with, and the TTA/ensemble spread (float32 HU std, 0 outside the body; None for one pass)."""

    sct: np.ndarray
    body: np.ndarray
    spread: np.ndarray | None = None


@dataclass
class Synthesizer:
    """A loaded model: an MR :class:`~hmss_ray.io.Volume` in, its sCT (int16 HU) out.

    Load one with :meth:`from_uri` and call :meth:`predict`; ``synth(mr, mask, affine)`` does the
    same on bare arrays. ``engine`` runs the generator (built from ``cfg.serve``).

    Example::

        from hmss_ray import Synthesizer, read_volume, write_volume

        synth = Synthesizer.from_uri("outputs/demo/registry/demo", device="cpu")
        sct = synth.predict(read_volume("mr.nii.gz"))  # on the MR's grid, HU
        write_volume(sct, "sct.nii.gz")
    """

    generator: torch.nn.Module
    cfg: ExperimentConfig
    info: ModelInfo
    device: torch.device
    batch_slices: int
    # the winner (``generator``) and any ensemble members as modules, with the TTA flips;
    # None: the generator alone with the config's inference.tta
    predictor: ensemble.Predictor | None = None
    # built from the generators and cfg.serve, never passed in: dataclasses.replace() with another
    # generator or config gets engines of its own, not the old ones
    engine: Engine = field(init=False, repr=False)
    runner: ensemble.Predictor = field(init=False, repr=False)  # the predictor on engines

    def __post_init__(self) -> None:
        self.engine = Engine(self.generator, self.device, self.cfg.serve)
        low, high = self.cfg.data.hu_range
        hu_range, tta = (float(low), float(high)), self.cfg.inference.tta
        chosen = self.predictor or ensemble.Predictor([self.generator], tta, hu_range)
        if chosen.generators[0] is not self.generator:  # the winner is always ``generator``
            chosen = replace(chosen, generators=[self.generator, *chosen.generators[1:]])
        self.predictor = chosen
        # every TTA pass and ensemble member runs in the engine the config chooses
        members = [Engine(g, self.device, self.cfg.serve) for g in chosen.generators[1:]]
        modules: list[Any] = [_Module(e) for e in [self.engine, *members]]  # called as modules
        self.runner = replace(chosen, generators=modules)

    @classmethod
    def from_uri(
        cls,
        uri: str,
        device: str = "auto",
        batch_slices: int | None = None,
        overrides: dict[str, Any] | None = None,
        tta: str | None = None,
        at: float | None = None,
    ) -> Synthesizer:
        """Load a registry version or a checkpoint.

        Args:
            uri: ``<registry>/<name>`` (its ``production`` alias), ``<registry>/<name>@<alias>``,
                ``<registry>/<name>@<version>``, or a checkpoint folder (path or s3://).
            device: auto, cpu or cuda[:N].
            batch_slices: slices per generator call (default ``serve.batch_slices``).
            overrides: dotted keys of the model's config to replace before the engine is built
                (``serve.precision``, ``serve.compile``, ``io.*``).
            tta: overrides the entry's ``inference.tta``.
            at: for an alias, the version it names at this time (seconds since the epoch;
                default now): a replica pre-loads a scheduled promotion (registry/live.py).
        """
        opened = load.open_model(uri, at)  # a registry version: digests checked before loading
        directory = opened[0] if opened else ckpt.localize(uri)
        dev = resolve_device(device)
        generator, meta = ckpt.load_generator(directory, dev)
        cfg = meta.cfg.replace(overrides) if overrides else meta.cfg
        predictor = ensemble.load_predictor(directory, generator, cfg, dev, tta)
        digest = hashlib.sha256((directory / ckpt.GENERATOR_FILE).read_bytes()).hexdigest()
        name, version, record = Path(str(uri).rstrip("/")).name, digest[:12], None
        if opened:
            found = opened[1]
            name, version = found.name, found.version
            record = {"version": found.version, "digest": found.digest, "alias": found.alias,
                      "pinned": found.pinned}  # fmt: skip
        info = ModelInfo(
            name=name,
            version=version,
            uri=str(uri),
            stage=meta.stage,
            epoch=meta.epoch,
            step=meta.step,
            parent=meta.parent,
            metrics=meta.metrics,
            inference=predictor.describe(),
            registry=record,
            card=load.card(directory) if opened else None,
        )
        batch = batch_slices or cfg.serve.batch_slices
        return cls(generator, cfg, info, dev, batch, predictor)

    @property
    def stride(self) -> int:
        """The generator's total downsampling: a canvas side must be a multiple of it."""
        return int(2 ** (self.cfg.model.lrg_downsamples + 1))

    def canvas_size(self, mask: np.ndarray) -> int:
        """The training slice size, or larger when the body (``mask`` on the contract grid) does
        not fit in it: the generator is fully convolutional, so the body is never cut off."""
        extent = preprocess.body_extent(mask)
        return preprocess.fitting_canvas(extent, self.cfg.data.image_size, self.stride)

    def region(self, region: str | None = None) -> str:
        """The region whose contract applies: ``region``, or the model's when that is unambiguous.

        A model trained on several regions with different contracts needs to be told which.
        """
        regions = list(self.cfg.data.regions)
        if region is not None:
            if region not in regions:
                raise InputError(f"region {region!r} is not one of this model's: {regions}")
            return region
        contracts = {Contract.of(self.cfg.data, r) for r in regions}
        if len(contracts) > 1:
            raise InputError(
                f"this model covers regions {regions} with different geometry contracts "
                "(data.spacing): say which region the volume is (--region; ?region= over HTTP)"
            )
        return regions[0]

    def contract(self, region: str | None = None) -> Contract:
        return Contract.of(self.cfg.data, self.region(region))

    @torch.no_grad()
    def __call__(
        self,
        mr: np.ndarray,
        mask: np.ndarray | None = None,
        affine: np.ndarray | None = None,
        region: str | None = None,
    ) -> np.ndarray:
        """The sCT (int16 HU) of ``mr`` on ``mr``'s own grid.

        Args:
            mr: MR volume, any storage order.
            mask: body mask on the MR grid; derived from the MR (on its grid) when None.
            affine: the MR's voxel -> RAS+ mm affine; None means the array is on the contract
                grid already (contract axes and spacing).
            region: which contract applies (see :meth:`region`).
        """
        return self.synthesize(mr, mask, affine, region).sct

    @torch.no_grad()
    def synthesize(
        self,
        mr: np.ndarray,
        mask: np.ndarray | None = None,
        affine: np.ndarray | None = None,
        region: str | None = None,
        spread: bool = False,
        progress: slabs.Progress | None = None,
    ) -> Synthesis:
        """As :meth:`__call__`, with the body mask used and, with ``spread`` and more than one
        pass (TTA flips or ensemble members), the passes' voxel-wise standard deviation in HU.
        ``progress(done, total)`` is called with the slices through the generator so far."""
        mr = np.asarray(mr)
        check_volume(mr, mask, self.cfg.serve.min_size)
        contract = self.contract(region)
        if affine is None:
            affine = np.eye(4)
            affine[:3, :3] = geometry.contract_linear(contract)
        try:
            affine = check_affine(affine, "the MR")
        except UnreadableVolume as exc:
            raise InputError(str(exc)) from None
        gmap = GridMap.plan(Grid(mr.shape, affine), contract)
        self._check_grid(gmap.target.shape, contract)  # before the mask is put on that grid
        body = mask_from_mr(mr, affine) if mask is None else (np.asarray(mask) > 0)
        try:
            place = preprocess.place_body(body, gmap, self.cfg.data.image_size, self.stride)
        except ValueError as exc:  # a body smaller than one voxel of the contract grid
            raise InputError(f"{exc} (contract spacing {contract.spacing} mm)") from None
        with_spread = spread and self.runner.passes > 1
        spread_canvas = np.zeros(place.mask.shape, np.float32) if with_spread else None
        predict = self._predict_spread if with_spread else self._predict
        sct_canvas = slabs.generate(
            mr, place, self.cfg.data, predict, self.batch_slices, spread_canvas, progress
        )
        # the sCT in the MR's memory order: a NIfTI-read MR is Fortran-ordered, and so its sCT
        # is written out without a reordered copy
        layout = "F" if mr.flags.f_contiguous and not mr.flags.c_contiguous else "C"
        sct = gmap.inverse(
            sct_canvas, order=1, cval=AIR_HU, box=place.canvas, dtype=np.int16, layout=layout
        )
        del sct_canvas
        spread_map = None
        if spread_canvas is not None:
            spread_map = gmap.inverse(spread_canvas, order=1, box=place.canvas, layout=layout)
            spread_map[np.asarray(body) == 0] = 0.0
        # outside the body is air, as in the CT
        return Synthesis(slabs.air_outside(sct, body), body, spread_map)

    def _predict_spread(self, stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One batch with the passes' spread: ([-1, 1] output, float32 HU std), (B, S, S)."""
        hu, spread = self.runner.mean_and_spread(torch.from_numpy(stack))
        return ct_to_unit(hu, self.cfg.data.hu_range), spread

    def predict(
        self, volume: Volume, mask: Volume | None = None, region: str | None = None
    ) -> Volume:
        """The sCT (int16 HU) of the MR ``volume``, on exactly its grid (shape, affine, header).

        Args:
            volume: the MR, as :func:`hmss_ray.read_volume` returns it (any storage order,
                spacing or oblique affine).
            mask: a body mask on the MR's grid; derived from the MR when None.
            region: which geometry contract applies, for a model of several regions.

        Raises:
            InputError: a volume that cannot be synthesised (the message says why).
        """
        return synthesize_volume(self, volume, mask, region)

    def _check_grid(self, shape: tuple[int, ...], contract: Contract) -> None:
        """The model's grid (the input's field of view at the contract spacing) and the canvas
        on it are allocated as whole volumes: both within ``io.max_voxels``, checked before.
        A 32^3 input of 100 mm voxels would otherwise plan a 3200^3 grid at 1 mm."""
        check_voxels(shape, 4, self.cfg.io, f"MR on the model's grid ({contract.spacing} mm)")
        side = max(self.cfg.data.image_size, *shape[:2])  # no canvas is wider than this
        canvas = (side, side, shape[2])
        check_voxels(canvas, 4, self.cfg.io, f"MR on the model's canvas ({contract.spacing} mm)")

    def _predict(self, stack: np.ndarray) -> np.ndarray:
        """One batch: float32 (B, 2k+1, S, S) 2.5D stacks -> float32 (B, S, S) in [-1, 1]."""
        if self.runner.passes == 1:  # the generator alone: no HU round trip
            return self.engine(stack)
        hu = self.runner(torch.from_numpy(stack))  # TTA and ensemble mean, in HU
        return ct_to_unit(hu, self.cfg.data.hu_range)


class _Module:
    """An :class:`Engine` as ``ensemble.Predictor`` calls a generator: a batch -> ``{"high"}``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"high": torch.from_numpy(self.engine(x.cpu().numpy()))[:, None]}


def synthesize_volume(
    synth: Synthesizer, mr: Volume, mask: Volume | None = None, region: str | None = None
) -> Volume:
    """An MR volume in, its sCT (int16 HU) out on exactly the MR's grid (shape, affine, header).

    Any storage order, spacing or oblique affine: the model's geometry contract is applied on the
    way in and inverted on the way out. ``region`` picks the contract of a multi-region model.
    """
    mask_array = None if mask is None else mask.array
    return mr.like(synth(np.asarray(mr.array), mask_array, mr.affine, region))


def synthesize_with_spread(
    synth: Synthesizer,
    mr: Volume,
    mask: Volume | None = None,
    region: str | None = None,
    progress: slabs.Progress | None = None,
) -> tuple[Volume, Volume | None, np.ndarray]:
    """As :func:`synthesize_volume`, plus the passes' spread (float32 HU std on the MR grid,
    None with a single pass) and the body mask used; ``progress(done, total)`` counts slices."""
    mask_array = None if mask is None else mask.array
    result = synth.synthesize(
        np.asarray(mr.array), mask_array, mr.affine, region, spread=True, progress=progress
    )
    spread = None if result.spread is None else mr.like(result.spread)
    return mr.like(result.sct), spread, result.body
