"""Benchmarks, each run as ``python -m bench.<name>`` from the repository root (``make bench``).

Shared here: the machine facts and command line every bench prints, a tiny table printer, a JSON
writer, a free loopback port, and a sampler of the resident memory of Ray worker processes.
Nothing is imported or started at import time beyond the standard library.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hmss_ray import resources

MB = 2**20
DEMO = resources.find(resources.CONFIGS, "demo")  # the default config


def _psutil():
    # psutil ships inside Ray (ray/thirdparty_files): importing ray puts it on sys.path first
    import importlib

    import ray  # noqa: F401

    return importlib.import_module("psutil")


def command_line() -> str:
    """The exact command this process was started with, shell-quoted."""
    return shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts(device: str = "cpu") -> dict[str, Any]:
    """What the figures depend on: CPUs, torch threads, device, versions, load at the start."""
    import ray
    import torch

    psutil = _psutil()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "platform": platform.platform(),
    }


def print_header(title: str, facts: dict[str, Any]) -> None:
    print(f"\n== {title} ==")
    print(f"command: {command_line()}")
    print(
        f"machine: {facts['cpu_count']} CPUs ({facts['cpus_usable']} usable, "
        f"{facts['cpu_model']}), {facts['memory_gib']} GiB, device {facts['device']}, "
        f"torch threads {facts['torch_threads']}"
    )
    print(
        f"versions: python {facts['python']}, torch {facts['torch']}, ray {facts['ray']}; "
        f"load average at start {facts['load_avg_1_5_15']} ({facts['date']})"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], left: Sequence[int] = (0,)) -> str:
    """Columns ``left`` left-aligned (text), the others right-aligned (pre-formatted numbers)."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        aligned = [
            cell.ljust(width) if i in left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(aligned).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    return out


class RssSampler:
    """Samples, every ``interval`` s, the RSS of this process's descendants whose command line
    (Ray's process title, e.g. ``ray::RayTrainWorker.run_train_fn``) contains ``match``, or of
    this process itself when ``match`` is None.

    A process is followed by pid once matched, whatever title it takes later. Only descendants of
    this process are considered, so another Ray on the same machine is never measured. Use as a
    context manager; ``peak_bytes`` is the highest RSS of any one matched process and
    ``peak_private_bytes`` the highest RSS less its shared pages (libraries, and the Ray object
    store's shared memory that the process has mapped); ``env`` holds the ``env_keys`` variables
    (e.g. OMP_NUM_THREADS) of the first matched process.
    """

    def __init__(
        self, match: str | None, interval: float = 0.2, env_keys: Sequence[str] = ()
    ) -> None:
        self.match, self.interval, self.env_keys = match, interval, tuple(env_keys)
        self.pids: set[int] = set() if match else {os.getpid()}
        self.env: dict[str, str | None] = {}
        self.peak_bytes = 0
        self.peak_private_bytes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current_bytes(self) -> int:
        """The RSS now of the largest matched process (scans for new ones first)."""
        return self.measure()[0]

    def measure(self) -> tuple[int, int]:
        """(largest RSS, largest RSS less shared pages) over the matched processes now."""
        psutil = _psutil()
        if self.match:
            self._scan(psutil)
        rss = private = 0
        for pid in list(self.pids):
            try:
                info = psutil.Process(pid).memory_info()
            except psutil.Error:
                self.pids.discard(pid)
                continue
            rss = max(rss, info.rss)
            private = max(private, info.rss - getattr(info, "shared", 0))
        return rss, private

    def _scan(self, psutil) -> None:
        for proc in psutil.Process().children(recursive=True):
            if proc.pid in self.pids:
                continue
            try:
                if self.match in " ".join(proc.cmdline()):
                    self.pids.add(proc.pid)
                    if not self.env and self.env_keys:
                        environ = proc.environ()
                        self.env = {key: environ.get(key) for key in self.env_keys}
            except psutil.Error:
                continue

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, private = self.measure()
            self.peak_bytes = max(self.peak_bytes, rss)
            self.peak_private_bytes = max(self.peak_private_bytes, private)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class deadline:  # lower case: used like contextlib's helpers
    """Interrupt the main thread after ``seconds`` (a guard against a hung run, not a threshold).

    Whatever the interrupted call turned the TimeoutError into (Ray may wrap it), the block
    ends with a SystemExit that says so; the caller's ``finally`` blocks have run by then.
    """

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self.expired = False

    def _expire(self, signum: int, frame: object) -> None:
        self.expired = True
        raise TimeoutError(f"the bench ran past --max-seconds {self.seconds}")

    def __enter__(self) -> deadline:
        import signal

        self._previous = signal.signal(signal.SIGALRM, self._expire)
        signal.alarm(self.seconds)
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        import signal

        signal.alarm(0)
        signal.signal(signal.SIGALRM, self._previous)
        if self.expired and exc_type is not None:
            raise SystemExit(f"error: the bench ran past --max-seconds {self.seconds}; aborted")
