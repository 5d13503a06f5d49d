"""One private scratch folder per replica for every temporary file a request makes.

Uploads are held in memory; what a library still writes to disk (ITK's temporary files, any
``tempfile`` user) goes to ``$TMPDIR/hmss-serve-<uid>/r<pid>-XXXX`` (0700, made with mkdtemp
inside a 0700 parent owned by this user): ``tempfile.tempdir`` points there in the replica.
Its contents are removed after each request; a replica's start removes the folders of
replicas that are gone (killed with SIGKILL, say), so no patient data outlives its process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from hmss_ray.config import UserError


def parent_folder(base: str | None = None) -> Path:
    """``<base>/hmss-serve-<uid>``: made 0700 if missing; refused if not ours or not private."""
    parent = Path(base or tempfile.gettempdir()) / f"hmss-serve-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        parent.mkdir(mode=0o700)
    info = os.lstat(parent)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise UserError(f"{parent} is not a private folder of this user: remove it")
    return parent


def sweep_dead(parent: Path) -> int:
    """Remove the scratch folders of replicas whose process is gone; how many were removed."""
    removed = 0
    for folder in parent.glob("r*-*"):
        pid = folder.name[1:].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Scratch:
    """This replica's scratch folder; :meth:`clear` after each request."""

    def __init__(self, base: str | None = None) -> None:
        parent = parent_folder(base)
        sweep_dead(parent)
        self.path = Path(tempfile.mkdtemp(prefix=f"r{os.getpid()}-", dir=parent))
        tempfile.tempdir = str(self.path)  # every tempfile user in this process writes here
        os.environ["TMPDIR"] = str(self.path)  # and libraries that read the variable

    def clear(self) -> None:
        """Remove what the last request left here (the folder stays)."""
        for entry in self.path.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
