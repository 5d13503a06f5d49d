"""Running a function over cases in a process pool: bounded memory, results in input order."""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any


def case_pool(workers: int) -> ProcessPoolExecutor | None:
    """A process pool for :func:`map_cases`, or None for ``workers <= 1`` (run in-process)."""
    if workers <= 1:
        return None
    # spawn, not fork: the parent may hold S3 client threads that a fork would copy mid-flight
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def map_cases(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    pool: ProcessPoolExecutor | None,
    in_flight: int = 4,
) -> Iterator[Any]:
    """``map(fn, items)`` in input order, on ``pool`` (in this process when None).

    At most ``in_flight`` cases are submitted at once (two per worker is plenty), so memory stays
    a few cases whatever the data set size; results come back in input order, so the output does
    not depend on the number of workers.
    """
    if pool is None:
        yield from map(fn, items)
        return
    pending: deque[Future] = deque()
    queue = iter(items)
    for item in queue:
        pending.append(pool.submit(fn, item))
        if len(pending) >= in_flight:
            break
    while pending:
        result = pending.popleft().result()
        for item in queue:  # refill one slot
            pending.append(pool.submit(fn, item))
            break
        yield result
