"""Where a peer is: shared by the endpoint and its client (no web framework imported here, so
the ``client`` extra needs neither FastAPI nor Ray)."""

from __future__ import annotations

LOOPBACK = ("127.", "::1", "localhost")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is this machine: compressing costs more there
    than sending the bytes."""
    return host.strip("[]").lower().startswith(LOOPBACK)
