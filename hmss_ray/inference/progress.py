"""The command's progress bars for a batch: the studies overall, and the current study's slices.

A :class:`~hmss_ray.inference.batch.Progress` drawn with tqdm on stderr. Off a terminal (a log
file, a pipe, CI) the bars are off (``disable=None``), so logs get the summary table only; the
library itself draws nothing unless it is handed one.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


class Bars:
    """Two bars: ``studies`` (the whole batch) above the current study's ``slices``."""

    def __init__(self, studies: int, enabled: bool | None = None) -> None:
        disable = None if enabled is None else not enabled  # None: on at a terminal only
        self.options: dict[str, Any] = {"file": sys.stderr, "disable": disable}
        self.overall = tqdm(total=studies, unit="study", position=0, **self.options)
        self.current: tqdm | None = None

    def study(self, name: str) -> None:
        self.overall.set_postfix_str(name)
        self.current = tqdm(desc=name, unit="slice", position=1, leave=False, **self.options)

    def slices(self, done: int, total: int) -> None:
        if self.current is not None:
            self.current.total = total
            self.current.update(done - self.current.n)

    def finished(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None
        self.overall.update(1)

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
        self.overall.close()

    def __enter__(self) -> Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
