"""An alias's pointer and the registry's clock: when an alias names which version.

A pointer says ``version`` from ``effective_at`` (UTC) and ``previous`` until then, so that every
replica following the alias switches at the same instant, whatever moment it read the pointer
(docs/registry.md: "How a promotion activates"). The instant is wall-clock time: the nodes'
clocks are assumed to agree (NTP) to well under the activation margin.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


def now(at: float | None = None) -> str:
    """``at`` (default: now), seconds since the epoch, as an ISO UTC time."""
    when = datetime.now(UTC) if at is None else datetime.fromtimestamp(at, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def epoch(text: str) -> float:
    """An ISO time (as :func:`now` writes it) as seconds since the epoch."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class AliasPointer:
    """An alias's pointer: ``version`` from ``effective_at`` (seconds since the epoch; None: at
    once), ``previous`` until then."""

    version: str
    previous: str | None = None
    effective_at: float | None = None

    @classmethod
    def parse(cls, record: dict[str, Any]) -> AliasPointer:
        when = record.get("effective_at")
        return cls(record["version"], record.get("previous"), epoch(when) if when else None)

    def at(self, when: float | None = None) -> str:
        """The version the alias names at ``when`` (default: now)."""
        if self.previous is None or self.effective_at is None:
            return self.version
        due = (time.time() if when is None else when) >= self.effective_at
        return self.version if due else self.previous

    def scheduled(self, when: float | None = None) -> bool:
        """True while the pointer waits for its activation time."""
        return self.at(when) != self.version
