import pyarrow.fs as pafs
import pytest

from hmss_ray import storage


def test_local_paths_and_file_uris_resolve_alike(tmp_path):
    fs1, p1 = storage.resolve(str(tmp_path / "a"))
    fs2, p2 = storage.resolve(f"file://{tmp_path}/a")
    assert isinstance(fs1, pafs.LocalFileSystem) and isinstance(fs2, pafs.LocalFileSystem)
    assert p1 == p2


def test_unsupported_scheme_is_an_error():
    with pytest.raises(ValueError, match="unsupported scheme 'gs'"):
        storage.resolve("gs://bucket/x")


def test_s3_uri_needs_bucket():
    with pytest.raises(ValueError, match="needs a bucket"):
        storage.resolve("s3:///x")


def test_write_read_list_delete_local(tmp_path):
    root = str(tmp_path / "root")
    storage.write_json(storage.join(root, "sub", "x.json"), {"a": 1})
    assert storage.read_json(storage.join(root, "sub", "x.json")) == {"a": 1}
    assert storage.listdir(storage.join(root, "sub")) == ["x.json"]
    assert not list((tmp_path / "root" / "sub").glob("*.tmp-*"))  # atomic write left no temp
    storage.delete(storage.join(root, "sub"))
    assert not storage.exists(storage.join(root, "sub"))
    assert storage.listdir(storage.join(root, "missing")) == []


@pytest.mark.integration
def test_s3_round_trip_through_a_real_server(s3_bucket, tmp_path):
    uri = f"{s3_bucket}/prefix"
    fs, path = storage.resolve(uri)
    assert isinstance(fs, pafs.S3FileSystem) and path == f"{s3_bucket[5:]}/prefix"
    storage.write_text(storage.join(uri, "hello.txt"), "hi")
    assert storage.read_text(storage.join(uri, "hello.txt")) == "hi"
    assert storage.listdir(uri) == ["hello.txt"]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.bin").write_bytes(b"\x00\x01")
    storage.copy_dir(str(tmp_path / "d"), storage.join(uri, "copied"))
    storage.copy_dir(storage.join(uri, "copied"), str(tmp_path / "back"))
    assert (tmp_path / "back" / "f.bin").read_bytes() == b"\x00\x01"
