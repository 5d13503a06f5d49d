"""Checkpoints that are never lost: saved locally with a clear error, uploaded with patience.

Ray Train uploads a reported checkpoint in the background and then deletes the local copy; its
own upload gives up after 3 quick tries on a few AWS error codes, and the run then fails. Here
the upload (Ray's ``checkpoint_upload_fn`` hook, into the same place Ray would put it) is retried
with backoff for up to ``HMSS_CHECKPOINT_UPLOAD_PATIENCE_S`` seconds (default 900): an S3 outage
shorter than that delays the upload, training goes on meanwhile, and the local copy is deleted
only after the upload succeeded. After the patience the run fails with the local copy kept and
its path named, so it can be uploaded by hand.

A save that fails (a full disk) removes its half-written folder and says so in one line.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
PATIENCE_ENV = "HMSS_CHECKPOINT_UPLOAD_PATIENCE_S"
MAX_WAIT_S = 30.0


class CheckpointSaveError(RuntimeError):
    """A checkpoint could not be written locally (a full disk); nothing half-written is left."""


def save_local(save: Callable[[Path], Path], epoch: int) -> Path:
    """``save(folder)`` into a fresh ``hmss-ckpt-*`` folder, removed again when it fails."""
    folder = Path(tempfile.mkdtemp(prefix="hmss-ckpt-"))
    try:
        return save(folder)
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise CheckpointSaveError(
                f"disk full while saving the checkpoint of epoch {epoch} in {folder.parent}: "
                "free space there (or point TMPDIR elsewhere) and run the same command to resume"
            ) from None
        raise
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def patient_upload(checkpoint: Any, dir_name: str) -> Any:
    """Ray's ``checkpoint_upload_fn``: Ray's own upload, retried until it succeeds or the
    patience runs out (then the local copy stays, named in the error)."""
    from ray.train.v2._internal.execution.context import get_train_context

    storage = get_train_context().get_storage()
    patience = patience_s()
    deadline, wait = time.monotonic() + patience, 1.0
    while True:
        try:
            return storage.persist_current_checkpoint(checkpoint, dir_name)
        except FileNotFoundError:  # the local copy is gone: nothing to retry with
            raise
        except OSError as exc:
            if time.monotonic() + wait > deadline:
                raise OSError(
                    f"checkpoint {dir_name} not uploaded after {patience:.0f} s ({exc}); "
                    f"it is kept at {checkpoint.path}"
                ) from exc
            log.warning("checkpoint %s: upload failed (%s); retrying in %.0f s", dir_name, exc,
                        wait)  # fmt: skip
            time.sleep(wait)
            wait = min(wait * 2, MAX_WAIT_S)


def patience_s() -> float:
    """How long S3 writes of a training run are retried (``HMSS_CHECKPOINT_UPLOAD_PATIENCE_S``)."""
    return float(os.environ.get(PATIENCE_ENV, "900"))
