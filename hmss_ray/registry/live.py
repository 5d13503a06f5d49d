"""A Serve replica's model, following the alias its deployment pins.

A deployment names ``<registry>/<name>@<alias>`` (or the entry: its ``production`` alias) or a
version. With an alias, a watcher thread re-reads the alias every ``HMSS_REGISTRY_POLL_S`` seconds
(default 5); when it names another version, that version is fetched, its digests checked and the
model loaded beside the one serving, and only then swapped in: one reference assignment. A request
takes the model once when it starts and answers with that model's version, so every answer's
``X-Model-Version`` names the version that computed it, and no request fails during the switch.
A version that cannot be fetched or fails verification is not swapped in: the replica keeps
serving what it has and says why in its log. A version pin never moves.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from hmss_ray.registry import load

POLL_ENV = "HMSS_REGISTRY_POLL_S"
log = logging.getLogger(__name__)
Model = TypeVar("Model")


class LiveModel(Generic[Model]):
    """The model for ``uri``, swapped when the alias it follows moves (see the module)."""

    def __init__(
        self,
        uri: str,
        loader: Callable[[str], Model],
        on_change: Callable[[Model], Any] | None = None,
        poll_s: float | None = None,
    ) -> None:
        self.uri = uri
        self.loader = loader
        self.on_change = on_change
        self.current = loader(uri)
        self.version = _version_of(self.current)
        found = load.resolve(uri)
        self.follows = found is not None and found.alias is not None
        self.poll_s = float(poll_s or os.environ.get(POLL_ENV) or 5.0)
        self.stopped = threading.Event()
        if self.follows:
            threading.Thread(target=self._watch, name="hmss-registry-watch", daemon=True).start()

    def _watch(self) -> None:
        while not self.stopped.wait(self.poll_s):
            self.check()

    def check(self) -> bool:
        """Swap in the version the alias names now, if it changed; True when it did."""
        try:
            found = load.resolve(self.uri)
            if found is None or found.version == self.version:
                return False
            model = self.loader(self.uri)
        except Exception as exc:  # storage down, a refused version: keep serving this one
            log.warning("registry: keeping version %s of %s: %s", self.version, self.uri, exc)
            return False
        old, self.current, self.version = self.version, model, _version_of(model)
        log.warning("registry: %s now serves version %s (was %s)", self.uri, self.version, old)
        if self.on_change is not None:
            self.on_change(model)
        return True

    def stop(self) -> None:
        self.stopped.set()


def _version_of(model: Any) -> str | None:
    info = getattr(model, "info", None)
    return getattr(info, "version", None)


def follow(
    uri: str, loader: Callable[[str], Model], on_change: Callable[[Model], Any] | None = None
) -> LiveModel[Model]:
    """A :class:`LiveModel` for a Serve replica (see the module)."""
    return LiveModel(uri, loader, on_change)
