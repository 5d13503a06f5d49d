"""Validation: each worker scores its own share of the split, and the shares are summed.

The split's first ``train.val_max_slices`` slices (all when null) are cut into ``world_size``
contiguous ranges, one per worker. A worker copies the shard files that overlap its range once,
at the start of the run, into a local cache (nothing is copied from local storage), and re-reads
them from local disk at every validation. Its metric accumulators (per-patient sums of errors and
SSIM, bone overlap, the VGG distance and the KID feature slots) are all-reduced, so every worker
ends with the metrics of the whole split, equal to one process scoring it alone (up to the order
of floating-point sums). The image metrics are the challenges' (body only, HU, per patient:
:mod:`hmss_ray.metrics.patients`), the distribution term unbiased KID on body-masked slices
(:mod:`hmss_ray.metrics.kid`), the ``score`` the search ranks :func:`~hmss_ray.metrics.objective`.
No Ray here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from torch import nn

from hmss_ray import storage
from hmss_ray.config import ExperimentConfig
from hmss_ray.data.manifest import read_manifest
from hmss_ray.data.preprocess import centre_channels
from hmss_ray.data.shards import decode_batch
from hmss_ray.metrics import SliceMetrics
from hmss_ray.metrics.features import Kind, load_extractor
from hmss_ray.metrics.kid import KidTerm, load_kid_extractor
from hmss_ray.metrics.objective import objective
from hmss_ray.metrics.patients import SINGLE, PatientMetrics
from hmss_ray.models.factory import unwrap
from hmss_ray.train.steps import amp, low_views, model_device, to_model


@dataclass(frozen=True)
class ValidationShard:
    """One worker's contiguous share of the validation split.

    ``files`` holds (URI or local path, first row, end row) of every shard file it reads;
    ``start`` is the split index of its first slice, ``total`` the slices all workers score;
    ``cases`` every patient of the split, in one order for all workers.
    """

    files: tuple[tuple[str, int, int], ...]
    start: int
    slices: int
    total: int
    channels: int
    batch_size: int
    cases: tuple[str, ...] = ()

    @classmethod
    def open(
        cls,
        cfg: ExperimentConfig,
        data_uri: str,
        rank: int = 0,
        world_size: int = 1,
        cache_dir: str | Path | None = None,
    ) -> ValidationShard:
        """Worker ``rank``'s share; remote shard files it needs are copied to ``cache_dir``.

        Args:
            cfg: the experiment (``train.val_max_slices``, ``train.batch_size``, MR channels).
            data_uri: the shard root (local or s3://).
            rank, world_size: this worker and the number of workers.
            cache_dir: a local directory for the copies; None reads remote files in place.
        """
        shards = read_manifest(data_uri).shards_of("val")
        available = sum(s.rows for s in shards)
        total = min(available, cfg.train.val_max_slices or available)
        lo, hi = total * rank // world_size, total * (rank + 1) // world_size
        files, offset = [], 0
        for shard in shards:
            a, b = max(lo, offset), min(hi, offset + shard.rows)
            if a < b:
                uri = storage.join(data_uri, shard.path)
                files.append((_cached(uri, cache_dir), a - offset, b - offset))
            offset += shard.rows
        cases = tuple(sorted({case for shard in shards for case in shard.cases}))
        return cls(tuple(files), lo, hi - lo, total, cfg.in_channels, cfg.train.batch_size, cases)

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        """This share's slices in split order: ``mr``, ``ct``, ``mask`` batches, never augmented."""
        pending: list[pa.RecordBatch] = []
        rows = 0
        for uri, first, end in self.files:
            for piece in _rows(uri, first, end, self.batch_size):
                pending.append(piece)
                rows += piece.num_rows
                while rows >= self.batch_size:
                    table = pa.Table.from_batches(pending)
                    yield self._decode(table.slice(0, self.batch_size))
                    rest = table.slice(self.batch_size)
                    pending, rows = rest.to_batches(), rest.num_rows
        if rows:
            yield self._decode(pa.Table.from_batches(pending))

    def _decode(self, table: pa.Table) -> dict[str, np.ndarray]:
        batch = decode_batch(table)
        return {
            "mr": centre_channels(batch["mr"], self.channels),
            "ct": batch["ct"],
            "mask": batch["mask"],
            "case_id": batch["case_id"],
        }


def _cached(uri: str, cache_dir: str | Path | None) -> str:
    """A local copy of a remote file in ``cache_dir`` (made once), or ``uri`` itself."""
    if cache_dir is None or not storage.is_remote(uri):
        return uri
    target = Path(cache_dir) / uri.rsplit("/", 1)[-1]
    if not target.exists():
        fs, path = storage.resolve(uri)
        partial = target.with_suffix(".part")
        pafs.copy_files(path, str(partial), fs, pafs.LocalFileSystem())
        partial.rename(target)
    return str(target)


def _rows(uri: str, first: int, end: int, batch_size: int) -> Iterator[pa.RecordBatch]:
    """Rows ``first:end`` of one Parquet file, a row group or so at a time."""
    fs, path = storage.resolve(uri)
    offset = 0
    with fs.open_input_file(path) as handle:
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_size):
            a, b = max(first, offset), min(end, offset + batch.num_rows)
            if a < b:
                yield batch.slice(a - offset, b - a)
            offset += batch.num_rows
            if offset >= end:
                return


def validation_batches(cfg: ExperimentConfig, data_uri: str) -> Iterator[dict[str, np.ndarray]]:
    """The first ``train.val_max_slices`` slices of the val split, in order, for one process."""
    return ValidationShard.open(cfg, data_uri).batches()


@torch.no_grad()
def validate(
    generator: nn.Module,
    batches: Iterable[Mapping[str, Any]],
    cfg: ExperimentConfig,
    *,
    start: int = 0,
    cases: Sequence[str] | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Deterministic validation metrics of both outputs, and the Tune ``score``.

    LRG: ``low_mae_hu, low_mse, low_ssim, low_psnr`` against the downsampled CT (whole canvas).
    HRG, as the challenge scores (body only, HU, mean over patients): ``mae_hu, psnr, ssim,
    patients``; ``kid, kid_std, kid_slices`` (body-masked slices); and ``mse, perceptual,
    bone_dice``. ``score`` is :func:`~hmss_ray.metrics.objective.objective` (``tune.metric``).
    ``fid_random_features`` and ``perceptual_random_features`` are 1.0 when the fallback
    extractors were used.

    Args:
        generator: the cascade (plain or DDP-wrapped).
        batches: this worker's validation slices in split order; a ``case_id`` per slice groups
            them by patient (without it all slices are one patient).
        cfg: the experiment.
        start: the split index of the first slice in ``batches`` (a worker's share of a sharded
            split): KID takes the split's first ``metrics.fid_max_slices`` slices wherever they
            are, so sharded and single-process runs score the same slices.
        cases: every patient id of the split (:attr:`ValidationShard.cases`), so that every
            worker's per-patient table has one layout; with ``reduce`` and no list, the slices
            must carry no case ids (one patient).
        reduce: sums a float64 vector over the workers (an all-reduce); every accumulator goes
            through it before the metrics are computed, so every worker returns the metrics of
            the whole split.
        autocast_dtype: the generator's forward runs under this autocast (training's); the
            metrics are accumulated in float64 either way.
    """
    if reduce is not None and cases is None:
        cases = (SINGLE,)  # batches without case ids: one patient, one fixed table row
    model = unwrap(generator)
    was_training = model.training
    model.eval()
    device = model_device(model)
    m = cfg.metrics
    vgg = load_extractor(Kind.VGG_DISTANCE, m.vgg_weights).to(device, torch.float32)
    inception = load_kid_extractor(m.inception_weights).to(device)
    hu_range = cfg.data.hu_range
    high = SliceMetrics(hu_range, m.bone_threshold_hu, vgg)
    low = SliceMetrics(hu_range)
    patients = PatientMetrics(hu_range, cases)
    kid_term = KidTerm(inception, m.fid_max_slices)
    index = start
    try:
        for batch in batches:
            b = to_model(batch, model)
            with amp(device, autocast_dtype):
                out = model(b["mr"])
            sct = out["high"].float()
            high.update(b["ct"], sct, b["mask"])
            patients.update(b["ct"], sct, b["mask"], batch.get("case_id"))
            kid_term.update(b["ct"], sct, b["mask"], index)
            _, low_ct, low_mask = low_views(b)
            low.update(low_ct, out["low"].float(), low_mask)
            index += len(b["mr"])
    finally:
        model.train(was_training)
    accumulators = (high, low, patients, kid_term)
    if reduce is not None:
        for acc in accumulators:
            acc.load_packed(reduce(acc.packed()))
    canvas = high.compute()
    metrics = {**low.compute("low_"), **{k: canvas[k] for k in ("mse", "bone_dice", "perceptual")}}
    metrics.update(patients.compute())
    metrics.update(kid_term.compute())
    metrics["score"] = objective(metrics, cfg.tune)
    metrics["fid_random_features"] = float(not inception.pretrained)
    metrics["perceptual_random_features"] = float(not vgg.pretrained)
    return metrics
