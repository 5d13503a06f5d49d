"""A Serve replica's model, following the alias its deployment pins.

A deployment names ``<registry>/<name>@<alias>`` (or the entry: its ``production`` alias) or a
version. With an alias, a watcher thread re-reads the alias's pointer every
``HMSS_REGISTRY_POLL_S`` seconds (default 5). A promotion writes the new version into the pointer
with an activation time, ``effective_at`` (:mod:`hmss_ray.registry.pointer`): as soon as a
replica sees it, it fetches the new version, checks its digests and loads it beside the one
serving; it answers every request that arrives before ``effective_at`` with the old version and
every request that arrives from then on with the new one. Every replica does the same with the
same instant, so under one pin two versions never answer at the same time. A request that
arrives after ``effective_at`` on a replica still loading waits for the load (at most
``HMSS_REGISTRY_WAIT_S``, default 30 s), then gets :class:`NotReady` (the endpoint's 503 with
Retry-After), never the old version. A pointer without ``effective_at`` (older registries, a
promotion with ``--activate-in 0``) switches each replica as soon as it has loaded the version.

A request takes its model once, when it arrives, and answers with that model's version, so
every answer's ``X-Model-Version`` names the version that computed it. A version that cannot be
fetched or fails verification is not loaded: the replica says why in its log and tries again at
the next poll. A version pin never moves.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from hmss_ray.registry import load, store
from hmss_ray.registry.pointer import AliasPointer

POLL_ENV = "HMSS_REGISTRY_POLL_S"  # how often a replica re-reads its alias (default 5 s)
WAIT_ENV = "HMSS_REGISTRY_WAIT_S"  # how long a request waits for a due version's load (30 s)
log = logging.getLogger(__name__)
Model = TypeVar("Model")


class NotReady(RuntimeError):
    """The version the pin names for this request is not loaded on this replica (yet)."""


@dataclass(frozen=True)
class Pending(Generic[Model]):
    """A loaded version waiting for its activation time (None: at once)."""

    version: str
    effective_at: float | None
    model: Model


class LiveModel(Generic[Model]):
    """The model for ``uri``; switches when the alias it follows moves (see the module).

    Args:
        loader: ``loader(uri, at)`` loads the version ``uri`` names at time ``at`` (None: now).
        on_change: called with the model that has just become current.
    """

    def __init__(
        self,
        uri: str,
        loader: Callable[[str, float | None], Model],
        on_change: Callable[[Model], Any] | None = None,
        poll_s: float | None = None,
        wait_s: float | None = None,
    ) -> None:
        self.uri, self.loader, self.on_change = uri, loader, on_change
        self.poll_s = float(poll_s or os.environ.get(POLL_ENV) or 5.0)
        self.wait_s = float(wait_s or os.environ.get(WAIT_ENV) or 30.0)
        self.lock = threading.Lock()
        found = load.resolve(uri)
        self.follows = found is not None and found.alias is not None
        self.alias = (found.registry, found.name, found.alias) if self.follows else None
        # the pointer first: a promotion due during this load is then waited for, not missed
        self.wanted: AliasPointer | None = self._read() if self.follows else None
        self.current: Model = loader(uri, None)
        self.version = _version_of(self.current)
        self.pending: Pending[Model] | None = None
        self.error = ""
        self.stopped = threading.Event()
        if self.follows:
            threading.Thread(target=self._watch, name="hmss-registry-watch", daemon=True).start()

    def _read(self) -> AliasPointer | None:
        registry, name, alias = self.alias  # type: ignore[misc]
        return store.read_alias(registry, name, alias)

    def _watch(self) -> None:
        if self.wanted is not None and self.wanted.version != self.version:
            self.check()  # started during a scheduled move: load its version now
        while not self.stopped.wait(self.poll_s):
            self.check()

    def check(self) -> bool:
        """Read the pointer; load a version it names that is not loaded. True when loaded."""
        try:
            pointer = self._read()
        except Exception as exc:  # storage down: keep serving what this replica has
            log.warning("registry: cannot read the alias of %s: %s", self.uri, exc)
            return False
        if pointer is None:
            return False
        with self.lock:
            self._note_late(pointer)
            self.wanted = pointer
            if pointer.version == self.version or (
                self.pending is not None and self.pending.version == pointer.version
            ):
                self.pending = None if pointer.version == self.version else self.pending
                self._activate(time.time())
                return False
        try:
            model = self.loader(self.uri, pointer.effective_at)  # the version due then
        except Exception as exc:  # storage down, a refused version: tried again next poll
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("registry: cannot load %s of %s: %s", pointer.version, self.uri, exc)
            return False
        if _version_of(model) != pointer.version:  # the alias moved again meanwhile
            return False
        with self.lock:
            self.pending, self.error = Pending(pointer.version, pointer.effective_at, model), ""
            self._activate(time.time())
        log.warning("registry: %s loaded version %s (serves it from %s)", self.uri,
                    pointer.version, _when(pointer.effective_at))  # fmt: skip
        return True

    def _note_late(self, pointer: AliasPointer) -> None:
        """Warn when a scheduled move is first seen after it was due: the margin is too short."""
        known = self.wanted is not None and self.wanted.version == pointer.version
        due = pointer.effective_at
        if not known and pointer.version != self.version and due and time.time() > due:
            log.warning(
                "registry: %s saw version %s %.1f s after its activation time: promote with a "
                "longer --activate-in (> 2 x %s + the load time)",
                self.uri, pointer.version, time.time() - due, POLL_ENV,
            )  # fmt: skip

    def _activate(self, now: float) -> None:
        """Under the lock: make the pending version current when it is due."""
        pending = self.pending
        if pending is None or (pending.effective_at is not None and now < pending.effective_at):
            return
        old, self.version = self.version, pending.version
        self.current, self.pending = pending.model, None
        log.warning("registry: %s now serves version %s (was %s)", self.uri, self.version, old)
        if self.on_change is not None:
            self.on_change(self.current)

    def model_now(self) -> Model | None:
        """The model for a request arriving now; None when the version due is still loading."""
        now = time.time()
        with self.lock:
            self._activate(now)
            wanted = self.wanted
            if (
                wanted is not None
                and wanted.version != self.version
                and wanted.effective_at is not None
                and now >= wanted.effective_at
            ):
                return None  # a scheduled version is due but not loaded here: never the old one
            return self.current

    async def model_at_arrival(self) -> Model:
        """:meth:`model_now`, waiting (at most ``wait_s``) for a due version's load."""
        deadline = time.monotonic() + self.wait_s
        while (model := self.model_now()) is None:
            if time.monotonic() > deadline:
                wanted = self.wanted.version if self.wanted else "?"
                log.warning("registry: %s@%s not loaded: %s", self.uri, wanted, self.error)
                raise NotReady(f"model version {wanted} is still loading on this replica: retry")
            await asyncio.sleep(0.05)
        return model

    def stop(self) -> None:
        self.stopped.set()


def _version_of(model: Any) -> str | None:
    info = getattr(model, "info", None)
    return getattr(info, "version", None)


def _when(at: float | None) -> str:
    return "now" if at is None else store.now(at)


def follow(
    uri: str,
    loader: Callable[[str, float | None], Model],
    on_change: Callable[[Model], Any] | None = None,
) -> LiveModel[Model]:
    """A :class:`LiveModel` for a Serve replica (see the module)."""
    return LiveModel(uri, loader, on_change)
