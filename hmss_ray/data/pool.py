"""Running a function over cases on an executor: bounded memory, results in input order.

Two executors behind one interface (``submit(fn, item) -> Future`` and ``shutdown``): a local
process pool, or Ray tasks spread over a cluster's nodes (:class:`RayTasks`). :func:`map_cases`
keeps a bounded number of cases in flight and yields results in input order, so the output is
the same whichever executor ran it and however many workers it had.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Protocol


class CaseExecutor(Protocol):
    def submit(self, fn: Callable[[Any], Any], item: Any, /) -> Future: ...

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None: ...


def case_pool(workers: int, ray_tasks: bool = False) -> CaseExecutor | None:
    """The executor for :func:`map_cases`: Ray tasks when ``ray_tasks``, else a process pool of
    ``workers``, or None for ``workers <= 1`` (run in this process)."""
    if ray_tasks:
        return RayTasks()
    if workers <= 1:
        return None
    # spawn, not fork: the parent may hold S3 client threads that a fork would copy mid-flight
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _run_on_node(fn: Callable[[Any], Any], item: Any) -> tuple[Any, str]:
    import ray

    return fn(item), ray.get_runtime_context().get_node_id()


class RayTasks:
    """Each case a Ray task of one CPU, spread over the nodes of the Ray this process joined.

    On an autoscaling cluster the pending tasks are the demand that brings worker nodes up.
    The inputs must be readable from every node (a shared file system, or one machine); a task
    lost with its node is retried by Ray. ``nodes`` collects the nodes that ran a case.
    """

    def __init__(self, num_cpus: float = 1.0) -> None:
        import ray

        if not ray.is_initialized():
            raise RuntimeError("RayTasks needs a running Ray: call hmss_ray.cluster.init_ray()")
        self._ray = ray
        task = ray.remote(_run_on_node)
        self._task = task.options(num_cpus=num_cpus, scheduling_strategy="SPREAD")
        self._pending: set[Any] = set()
        self.nodes: set[str] = set()
        self.cases = 0

    def submit(self, fn: Callable[[Any], Any], item: Any, /) -> Future:
        ref = self._task.remote(fn, item)
        self._pending.add(ref)
        out: Future = Future()

        def finished(done: Future) -> None:
            self._pending.discard(ref)
            if done.exception() is not None:
                out.set_exception(done.exception())
                return
            result, node = done.result()
            self.nodes.add(node)
            self.cases += 1
            out.set_result(result)

        ref.future().add_done_callback(finished)
        return out

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            for ref in list(self._pending):
                self._ray.cancel(ref)
        if self.cases:
            print(f"[hmss] {self.cases} case task(s) ran on {len(self.nodes)} Ray node(s)",
                  file=sys.stderr)  # fmt: skip


def map_cases(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    pool: CaseExecutor | None,
    in_flight: int = 4,
) -> Iterator[Any]:
    """``map(fn, items)`` in input order, on ``pool`` (in this process when None).

    At most ``in_flight`` cases are submitted at once (two per worker is plenty), so memory stays
    a few cases whatever the data set size; results come back in input order, so the output does
    not depend on the executor or its number of workers.
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
