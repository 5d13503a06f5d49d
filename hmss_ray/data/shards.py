"""Parquet slice shards and ``manifest.json``: written idempotently, read back by everyone.

Layout under the output URI (a local path or ``s3://bucket/prefix``)::

    manifest.json                         written last: the shards it lists are complete
    <split>/part-<seq>-<sha256[:16]>.parquet

One row per axial slice. ``mr`` (2k+1, S, S) float32, ``ct`` (1, S, S) float32 (absent in the
``infer`` split) and ``mask`` (1, S, S) uint8 are Arrow canonical ``fixed_shape_tensor`` columns:
plain Parquet that pyarrow and Ray Data both read back as (N, C, S, S) arrays with no custom
type to register. A shard's name is the hash of its bytes, so the same input and config give the
same names, and a shard already present is not written again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from hmss_ray import storage
from hmss_ray.data.manifest import SPLITS, Manifest, ShardEntry, check_split, read_manifest

TENSOR_COLUMNS = ("mr", "ct", "mask")
META_COLUMNS = ("case_id", "centre", "region", "slice_index", "split")
ROW_GROUP_ROWS = 64  # small row groups: readers stream a shard without holding all of it
_SHARD_RE = re.compile(r"^part-\d{5}-[0-9a-f]{16}\.parquet$|\.parquet\.tmp-\d+$")


def _tensor(values: np.ndarray, dtype: type) -> pa.Array:
    return pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(values, dtype=dtype))


def slices_table(
    mr: np.ndarray,
    ct: np.ndarray | None,
    mask: np.ndarray,
    slice_index: np.ndarray,
    meta: Mapping[str, str],
) -> pa.Table:
    """Rows for N slices of one case.

    Args:
        mr: (N, 2k+1, S, S) MR in [-1, 1]; ct: (N, 1, S, S) CT in [-1, 1] or None (MR-only);
        mask: (N, 1, S, S) body mask; slice_index: (N,) axial index in the original volume.
        meta: ``case_id``, ``centre``, ``region`` and ``split`` for every row.
    """
    n = len(slice_index)
    columns: dict[str, pa.Array] = {"mr": _tensor(mr, np.float32)}
    if ct is not None:
        columns["ct"] = _tensor(ct, np.float32)
    columns["mask"] = _tensor(mask, np.uint8)
    for key in ("case_id", "centre", "region"):
        columns[key] = pa.array([meta[key]] * n, pa.string())
    columns["slice_index"] = pa.array(np.asarray(slice_index, dtype=np.int32))
    columns["split"] = pa.array([meta["split"]] * n, pa.string())
    return pa.table(columns)


def _column_to_numpy(column: Any) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if isinstance(column, pa.Array):
        if isinstance(column.type, pa.FixedShapeTensorType):
            return column.to_numpy_ndarray()
        column = column.to_numpy(zero_copy_only=False)
    values = np.asarray(column)
    if values.dtype == object and values.size and isinstance(values.flat[0], np.ndarray):
        values = np.stack(list(values))  # pandas batches hold one ndarray per row
    return values


def decode_batch(batch: Any) -> dict[str, np.ndarray]:
    """Shard rows -> ``mr`` (N, C, S, S), ``ct`` (N, 1, S, S), ``mask`` (N, 1, S, S) float32.

    Takes a pyarrow Table or RecordBatch, or a Ray Data batch (numpy dict or pandas DataFrame).
    Metadata columns come back as numpy arrays: strings as ``str``, ``slice_index`` as int64.
    ``ct`` is absent for ``infer`` rows (MR-only cases).
    """
    if isinstance(batch, pa.RecordBatch):
        batch = pa.Table.from_batches([batch])
    if isinstance(batch, pa.Table):
        columns = {name: batch.column(name) for name in batch.column_names}
    elif hasattr(batch, "columns") and hasattr(batch, "iloc"):  # a pandas DataFrame
        columns = {name: batch[name].to_numpy() for name in batch.columns}
    elif isinstance(batch, Mapping):
        columns = dict(batch)
    else:
        raise TypeError(f"decode_batch: cannot read a {type(batch).__name__}")
    missing = [name for name in ("mr", "mask") if name not in columns]
    if missing:
        raise KeyError(f"decode_batch: the batch has no {missing} column(s): {sorted(columns)}")
    out: dict[str, np.ndarray] = {}
    for name in TENSOR_COLUMNS:
        if name in columns:
            values = _column_to_numpy(columns[name])
            if values.ndim != 4:
                raise ValueError(f"decode_batch: {name} must be (N, C, S, S), got {values.shape}")
            out[name] = values.astype(np.float32, copy=False)
    for name in META_COLUMNS:
        if name in columns:
            values = _column_to_numpy(columns[name])
            out[name] = values.astype(np.int64 if name == "slice_index" else str)
    return out


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(
        table.combine_chunks(),  # one layout whatever the batching: same rows, same bytes
        sink,
        compression="zstd",
        row_group_size=ROW_GROUP_ROWS,
        use_dictionary=["case_id", "centre", "region", "split"],
    )
    return sink.getvalue().to_pybytes()


def _sizes(uri: str) -> dict[str, int]:
    """File name -> size directly under ``uri`` (empty when the folder does not exist)."""
    fs, path = storage.resolve(uri)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return {}
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    return {info.base_name: info.size for info in infos if info.type == pafs.FileType.File}


class ShardWriter:
    """Collects the slices of one split in order and writes shards of ``rows_per_shard`` rows.

    A shard whose content-addressed name already exists with the same size is left untouched.
    Local writes go to a temporary name and are renamed; an S3 PUT is atomic.
    """

    def __init__(self, root_uri: str, split: str, rows_per_shard: int) -> None:
        self.root_uri, self.split, self.rows_per_shard = root_uri, split, rows_per_shard
        self._existing = _sizes(storage.join(root_uri, split))
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.shards: list[ShardEntry] = []
        self.written = 0
        self.unchanged = 0

    def add(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        while self._pending_rows >= self.rows_per_shard:
            self._flush(self.rows_per_shard)

    def close(self) -> list[ShardEntry]:
        if self._pending_rows:
            self._flush(self._pending_rows)
        return self.shards

    def _flush(self, rows: int) -> None:
        table = pa.concat_tables(self._pending)
        rest = table.slice(rows)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows
        self._write(table.slice(0, rows))

    def _write(self, table: pa.Table) -> None:
        data = _parquet_bytes(table)
        digest = hashlib.sha256(data).hexdigest()
        name = f"part-{len(self.shards):05d}-{digest[:16]}.parquet"
        if self._existing.get(name) == len(data):
            self.unchanged += 1
        else:
            storage.write_bytes(storage.join(self.root_uri, self.split, name), data)
            self.written += 1
        cases = list(dict.fromkeys(table.column("case_id").to_pylist()))
        self.shards.append(
            ShardEntry(f"{self.split}/{name}", self.split, table.num_rows, len(data), digest, cases)
        )


def remove_stale(root_uri: str, manifest: Manifest) -> list[str]:
    """Delete shard files (and leftover temporaries) the manifest does not list."""
    listed = {shard.path for shard in manifest.shards}
    removed = []
    for split in SPLITS:
        for name in _sizes(storage.join(root_uri, split)):
            rel = f"{split}/{name}"
            if _SHARD_RE.search(name) and rel not in listed:
                storage.delete(storage.join(root_uri, rel))
                removed.append(rel)
    return removed


def shard_uris(root_uri: str, split: str, manifest: Manifest | None = None) -> list[str]:
    """URIs of the shards of ``split``, in order, as the manifest lists them (never a listing,
    so a stale or half-written file is never read)."""
    check_split(split)
    manifest = manifest or read_manifest(root_uri)
    return [storage.join(root_uri, s.path) for s in manifest.shards_of(split)]


def iter_batches(root_uri: str, split: str, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Decoded batches of ``batch_size`` rows (the last may be short), one shard open at a time.

    Single-process and Ray-free: for evaluation, tests and small jobs.
    """
    buffer: list[pa.RecordBatch] = []
    buffered = 0
    for uri in shard_uris(root_uri, split):
        fs, path = storage.resolve(uri)
        with fs.open_input_file(path) as handle:
            for record_batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_size):
                buffer.append(record_batch)
                buffered += record_batch.num_rows
                while buffered >= batch_size:
                    table = pa.Table.from_batches(buffer)
                    yield decode_batch(table.slice(0, batch_size))
                    rest = table.slice(batch_size)
                    buffer, buffered = rest.to_batches(), rest.num_rows
    if buffered:
        yield decode_batch(pa.Table.from_batches(buffer))
