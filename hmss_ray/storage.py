"""The one place that turns a URI into a filesystem.

``resolve("s3://bucket/prefix")`` -> ``(pyarrow.fs.S3FileSystem, "bucket/prefix")``;
``resolve("/data/x")`` or ``resolve("file:///data/x")`` -> ``(LocalFileSystem, "/data/x")``.

The S3 endpoint comes from ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``), or the ``endpoint``
argument; credentials come from the standard AWS chain (environment, profile, instance role), never
from a config file. Nothing here logs a credential.

Every S3 read and write is retried with exponential backoff (:func:`retried`): ``HMSS_S3_ATTEMPTS``
tries (default 6), waiting ``HMSS_S3_BACKOFF_S`` (default 0.5 s) doubled after each failure, at
most 8 s, about 16 s in all; a missing object is an answer, not a failure, and is not retried.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs

log = logging.getLogger(__name__)
ATTEMPTS_ENV, BACKOFF_ENV = "HMSS_S3_ATTEMPTS", "HMSS_S3_BACKOFF_S"
MAX_WAIT_S = 8.0


def is_remote(uri: str) -> bool:
    return urlparse(str(uri)).scheme in ("s3", "s3a")


def s3_endpoint(explicit: str | None = None) -> str | None:
    return explicit or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def resolve(uri: str | os.PathLike, endpoint: str | None = None) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it for ``uri`` (local path, file:// or s3://)."""
    text = str(uri)
    parsed = urlparse(text)
    if parsed.scheme in ("s3", "s3a"):
        if not parsed.netloc:
            raise ValueError(f"{text!r}: an s3 URI needs a bucket, as in s3://bucket/prefix")
        return _s3_filesystem(endpoint), f"{parsed.netloc}{parsed.path}".rstrip("/")
    if parsed.scheme == "file":
        return pafs.LocalFileSystem(), str(Path(parsed.path).resolve())
    if parsed.scheme and len(parsed.scheme) > 1:
        raise ValueError(f"{text!r}: unsupported scheme {parsed.scheme!r}; use a path or s3://")
    return pafs.LocalFileSystem(), str(Path(text).expanduser().resolve())


def _s3_filesystem(endpoint: str | None) -> pafs.S3FileSystem:
    kwargs: dict[str, Any] = {}
    url = s3_endpoint(endpoint)
    if url:
        parsed = urlparse(url)
        kwargs["endpoint_override"] = parsed.netloc or parsed.path
        kwargs["scheme"] = parsed.scheme or "https"
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)


def retried(fn: Callable) -> Callable:
    """Retry ``fn(uri, ...)`` on an S3 error (any OSError but a missing object) with backoff."""

    @functools.wraps(fn)
    def call(uri: str, *args: Any, **kwargs: Any) -> Any:
        remote = [str(uri), *map(str, args[:1])]
        if not any(is_remote(u) for u in remote):
            return fn(uri, *args, **kwargs)
        return with_retries(functools.partial(fn, uri, *args, **kwargs), f"{fn.__name__} {uri}")

    return call


def with_retries(call: Callable[[], Any], what: str, patience_s: float | None = None) -> Any:
    """``call()``, retried on an S3 error (any OSError but a missing object) with backoff:
    ``HMSS_S3_ATTEMPTS`` tries, or for ``patience_s`` seconds when given."""
    attempts = max(1, int(os.environ.get(ATTEMPTS_ENV, "6")))
    wait = float(os.environ.get(BACKOFF_ENV, "0.5"))
    deadline = None if patience_s is None else time.monotonic() + patience_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except FileNotFoundError:
            raise
        except OSError as exc:
            out = attempt >= attempts if deadline is None else time.monotonic() > deadline
            if out:
                raise OSError(f"{what}: S3 failed {attempt} times: {exc}") from exc
            log.warning("%s failed (%s); retry %d in %.1f s", what, exc, attempt, wait)
            time.sleep(wait)
            wait = min(wait * 2, MAX_WAIT_S)


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a URI or local path with '/'."""
    base = str(uri).rstrip("/")
    return "/".join([base, *(p.strip("/") for p in parts)])


@retried
def exists(uri: str) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


@retried
def makedirs(uri: str) -> None:
    fs, path = resolve(uri)
    fs.create_dir(path, recursive=True)


@retried
def read_bytes(uri: str) -> bytes:
    """The object's bytes as stored (pyarrow would gunzip a ``.gz`` name: not here)."""
    fs, path = resolve(uri)
    with fs.open_input_stream(path, compression=None) as f:
        return f.read()


@retried
def write_bytes(uri: str, data: bytes) -> None:
    """Write atomically where the filesystem allows (local: temp file + rename)."""
    fs, path = resolve(uri)
    parent = path.rsplit("/", 1)[0]
    if parent:
        fs.create_dir(parent, recursive=True)
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = f"{path}.tmp-{os.getpid()}"
        with fs.open_output_stream(tmp, compression=None) as f:
            f.write(data)
        os.replace(tmp, path)
    else:  # an S3 PUT is atomic: readers see the old object or the new one
        with fs.open_output_stream(path, compression=None) as f:  # bytes as given, .gz or not
            f.write(data)


def read_json(uri: str) -> Any:
    return json.loads(read_bytes(uri))


def write_json(uri: str, obj: Any) -> None:
    write_bytes(uri, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_text(uri: str) -> str:
    return read_bytes(uri).decode()


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode())


@retried
def listdir(uri: str) -> list[str]:
    """Base names directly under ``uri`` (empty when it does not exist)."""
    fs, path = resolve(uri)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    return sorted(info.base_name for info in infos)


@retried
def delete(uri: str) -> None:
    fs, path = resolve(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif info.type == pafs.FileType.File:
        fs.delete_file(path)


@retried
def copy_dir(src: str, dst: str) -> None:
    """Copy a directory tree between any two URIs (local <-> s3)."""
    sfs, spath = resolve(src)
    dfs, dpath = resolve(dst)
    dfs.create_dir(dpath, recursive=True)  # a local destination must exist before the copy
    pafs.copy_files(spath, dpath, source_filesystem=sfs, destination_filesystem=dfs)


def open_input(uri: str) -> io.BufferedIOBase:
    fs, path = resolve(uri)
    return fs.open_input_file(path)


@contextlib.contextmanager
def output_dir(uri: str, last: str | None = None) -> Iterator[Path]:
    """A local folder to write a command's whole output into; it becomes ``uri`` on success.

    Local ``uri``: the folder is ``.<name>.partial-*`` beside it and is renamed to ``uri`` when
    the block ends; a previous output there is renamed aside first and removed after. A failure
    in the block removes the partial folder: no half output ever carries the final name, and the
    previous one is untouched. ``s3://`` (no rename there): the folder is a local temporary one,
    uploaded only once complete, ``last`` (the file readers look for: a report, a manifest)
    after every other file; a failure in the block leaves S3 untouched, one during the upload
    leaves the previous ``last`` in place.
    """
    if is_remote(uri):
        with tempfile.TemporaryDirectory(prefix="hmss-out-") as tmp:
            yield Path(tmp)
            held = Path(tmp) / last if last else None
            data = held.read_bytes() if held and held.is_file() else None
            if data is not None:
                held.unlink()  # type: ignore[union-attr]
            copy_dir(tmp, uri)
            if data is not None:
                write_bytes(join(uri, last), data)  # type: ignore[arg-type]
        return
    target = Path(resolve(uri)[1])
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    partial.chmod(0o777 & ~umask)  # as a folder made by mkdir (mkdtemp makes it 0700)
    try:
        yield partial
        old = target.with_name(f".{target.name}.old-{os.getpid()}") if target.exists() else None
        if old is not None:
            os.rename(target, old)
        try:
            os.rename(partial, target)
        except OSError:
            if old is not None:
                os.rename(old, target)  # the previous output back under its name
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
