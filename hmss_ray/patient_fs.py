"""A pyarrow filesystem that retries S3 errors, for the state Ray Train and Tune write.

Ray Train's controller writes its checkpoint-manager state to the run's storage after every
reported checkpoint, and Tune syncs its experiment state there, through the ``pyarrow``
filesystem they are given; neither retries, so an S3 outage that begins at that moment fails a
run whose checkpoints themselves are kept safe (:mod:`hmss_ray.train.upload`). Wrapped in
:func:`patient`, every call is retried with the backoff of :func:`hmss_ray.storage.with_retries`
for up to ``patience_s`` seconds (the trainer gives ``HMSS_CHECKPOINT_UPLOAD_PATIENCE_S``, as
for the checkpoints themselves); a file being written is held in memory and
uploaded, with retries, when it is closed (these state files are small). A local filesystem is
returned unchanged. Decision and exit plan: docs/decisions/patient-filesystem.md.
"""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from hmss_ray.storage import with_retries


def patient(fs: pafs.FileSystem, patience_s: float = 900.0) -> pafs.FileSystem:
    """``fs`` with every S3 call retried for ``patience_s`` (a local filesystem as it is)."""
    if isinstance(fs, (pafs.LocalFileSystem, pafs.PyFileSystem)):
        return fs
    return pafs.PyFileSystem(PatientHandler(fs, patience_s))


class _Upload(io.RawIOBase):
    """A file being written: bytes kept here, uploaded (retried) on close."""

    def __init__(self, fs: pafs.FileSystem, path: str, metadata: Any, patience_s: float) -> None:
        super().__init__()
        self.fs, self.path, self.metadata, self.buffer = fs, path, metadata, io.BytesIO()
        self.patience_s = patience_s

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self.buffer.write(data)

    def close(self) -> None:
        if not self.closed:
            data = self.buffer.getvalue()
            with_retries(lambda: self._put(data), f"write {self.path}", self.patience_s)
        super().close()

    def _put(self, data: bytes) -> None:
        # compression=None: PyFileSystem already applied any the caller asked for
        with self.fs.open_output_stream(self.path, compression=None, metadata=self.metadata) as f:
            f.write(data)


class PatientHandler(pafs.FileSystemHandler):
    """Delegates to ``fs``, retrying each call (see the module)."""

    def __init__(self, fs: pafs.FileSystem, patience_s: float) -> None:
        self.fs, self.patience_s = fs, patience_s

    def __reduce__(self) -> tuple[Any, ...]:  # Ray sends the filesystem to its workers
        return PatientHandler, (self.fs, self.patience_s)

    def _retry(self, name: str, *args: Any, **kwargs: Any) -> Any:
        call = lambda: getattr(self.fs, name)(*args, **kwargs)  # noqa: E731
        return with_retries(call, f"{name} {args[:1]}", self.patience_s)

    def get_type_name(self) -> str:
        return f"hmss-patient-{self.fs.type_name}"

    def normalize_path(self, path: str) -> str:
        return self.fs.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self._retry("get_file_info", paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self._retry("get_file_info", selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self._retry("create_dir", path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self._retry("delete_dir", path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self._retry("delete_dir_contents", path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        self._retry("delete_dir_contents", "/", missing_dir_ok=True)

    def delete_file(self, path: str) -> None:
        self._retry("delete_file", path)

    def move(self, src: str, dest: str) -> None:
        self._retry("move", src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self._retry("copy_file", src, dest)

    def open_input_stream(self, path: str) -> pa.NativeFile:
        def read() -> bytes:  # whole, so that a retry reads again from the start
            with self.fs.open_input_stream(path, compression=None) as f:
                return f.read()

        return pa.BufferReader(with_retries(read, f"read {path}", self.patience_s))

    def open_input_file(self, path: str) -> pa.NativeFile:
        return self._retry("open_input_file", path)

    def open_output_stream(self, path: str, metadata: Any) -> pa.NativeFile:
        return pa.PythonFile(_Upload(self.fs, path, metadata, self.patience_s), mode="w")

    def open_append_stream(self, path: str, metadata: Any) -> pa.NativeFile:
        raise OSError(f"{path}: appending is not supported on object storage")
