"""Shard encoding, decode_batch on every batch kind, content-addressed writes, streaming reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hmss_ray.data import shards
from hmss_ray.data.manifest import Manifest, ShardEntry, read_manifest, write_manifest


def _rows(n: int, channels: int = 3, size: int = 8, with_ct: bool = True, seed: int = 0):
    rng = np.random.default_rng(seed)
    mr = rng.uniform(-1, 1, (n, channels, size, size)).astype(np.float32)
    ct = rng.uniform(-1, 1, (n, 1, size, size)).astype(np.float32) if with_ct else None
    mask = (rng.random((n, 1, size, size)) > 0.5).astype(np.uint8)
    meta = {"case_id": f"1BA00{seed + 1}", "centre": "A", "region": "brain"}
    meta["split"] = "train" if with_ct else "infer"
    table = shards.slices_table(mr, ct, mask, np.arange(n) + 10, meta)
    return table, mr, ct, mask


def _check(decoded: dict[str, np.ndarray], mr, ct, mask) -> None:
    np.testing.assert_array_equal(decoded["mr"], mr)
    np.testing.assert_array_equal(decoded["ct"], ct)
    np.testing.assert_array_equal(decoded["mask"], mask.astype(np.float32))
    assert decoded["mr"].dtype == decoded["ct"].dtype == decoded["mask"].dtype == np.float32
    assert decoded["case_id"].tolist() == ["1BA001"] * len(mr)
    assert decoded["slice_index"].dtype == np.int64
    assert decoded["slice_index"].tolist() == list(range(10, 10 + len(mr)))


def test_schema_uses_fixed_shape_tensors_that_survive_parquet(tmp_path: Path) -> None:
    table, mr, ct, mask = _rows(5)
    assert isinstance(table.schema.field("mr").type, pa.FixedShapeTensorType)
    assert table.schema.field("mr").type.shape == [3, 8, 8]
    pq.write_table(table, tmp_path / "x.parquet")
    _check(shards.decode_batch(pq.read_table(tmp_path / "x.parquet")), mr, ct, mask)


@pytest.mark.parametrize("kind", ["table", "record_batch", "numpy", "pandas"])
def test_decode_batch_accepts_every_batch_format(kind: str) -> None:
    table, mr, ct, mask = _rows(4)
    if kind == "record_batch":
        batch = table.to_batches()[0]
    elif kind == "numpy":  # what Ray Data hands a batch_format="numpy" function
        batch = {name: shards._column_to_numpy(table.column(name)) for name in table.column_names}
        batch["case_id"] = batch["case_id"].astype(object)
    elif kind == "pandas":  # one ndarray per cell, as Ray Data's pandas batches hold them
        batch = table.drop_columns(["mr", "ct", "mask"]).to_pandas()
        batch["mr"], batch["ct"], batch["mask"] = list(mr), list(ct), list(mask)
    else:
        batch = table
    _check(shards.decode_batch(batch), mr, ct, mask)


def test_decode_batch_mr_only_rows_have_no_ct_and_bad_input_is_named() -> None:
    table, *_ = _rows(2, with_ct=False)
    decoded = shards.decode_batch(table)
    assert "ct" not in decoded and decoded["split"].tolist() == ["infer", "infer"]
    with pytest.raises(KeyError, match="no \\['mr'\\] column"):
        shards.decode_batch({"mask": np.zeros((1, 1, 4, 4))})
    with pytest.raises(TypeError, match="cannot read a list"):
        shards.decode_batch([1, 2])


def _write(root: Path, tables: list[pa.Table], rows_per_shard: int) -> shards.ShardWriter:
    writer = shards.ShardWriter(str(root), "train", rows_per_shard)
    for table in tables:
        writer.add(table)
    writer.close()
    write_manifest(str(root), _manifest(writer.shards))
    return writer


def _manifest(entries: list[ShardEntry]) -> Manifest:
    """A manifest listing ``entries`` (the other fields do not matter to the shard readers)."""
    return Manifest(
        data_hash="", data_config={}, content_hash="", source="", image_size=4,
        context_slices=0, in_channels=1, hu_range=[-1024.0, 3000.0], columns={}, counts={},
        shards=entries, cases={},
    )  # fmt: skip


def test_shards_are_content_addressed_and_not_rewritten(tmp_path: Path) -> None:
    tables = [_rows(5, seed=s)[0] for s in range(3)]
    first = _write(tmp_path, tables, rows_per_shard=4)
    assert [s.rows for s in first.shards] == [4, 4, 4, 3]
    assert first.written == 4 and first.unchanged == 0
    files = sorted((tmp_path / "train").iterdir())
    stamps = [f.stat().st_mtime_ns for f in files]
    # the same rows batched differently give the same shards, and nothing is written again
    again = _write(tmp_path, [pa.concat_tables(tables)], rows_per_shard=4)
    assert again.shards == first.shards and again.written == 0 and again.unchanged == 4
    assert [f.stat().st_mtime_ns for f in files] == stamps
    changed = _write(tmp_path, [_rows(5, seed=9)[0], *tables[1:]], rows_per_shard=4)
    assert changed.written >= 1 and changed.shards[0].path != first.shards[0].path
    removed = shards.remove_stale(str(tmp_path), _manifest(changed.shards))
    assert first.shards[0].path in removed
    assert sorted(f"train/{p.name}" for p in (tmp_path / "train").iterdir()) == sorted(
        s.path for s in changed.shards
    )


def test_iter_batches_streams_all_rows_in_order_in_even_batches(tmp_path: Path) -> None:
    tables = [_rows(5, seed=s)[0] for s in range(3)]
    _write(tmp_path, tables, rows_per_shard=4)
    batches = list(shards.iter_batches(str(tmp_path), "train", batch_size=6))
    assert [len(b["mr"]) for b in batches] == [6, 6, 3]
    expected = shards.decode_batch(pa.concat_tables(tables))
    for key in ("mr", "ct", "mask", "case_id", "slice_index"):
        np.testing.assert_array_equal(np.concatenate([b[key] for b in batches]), expected[key])


def test_readers_explain_a_missing_manifest_and_a_bad_split(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"run `hmss-ray prepare"):
        read_manifest(str(tmp_path))
    with pytest.raises(ValueError, match="unknown split 'training'"):
        shards.shard_uris(str(tmp_path), "training")
