"""Who may call the endpoint: API tokens of the deployment, the Host allow-list, request ids.

Tokens come from the deployment, never from the model: the variable ``HMSS_API_TOKEN`` (its
name is ``serve.api_token_env``; several tokens separated by commas or spaces) and the file
named by ``HMSS_API_TOKEN_FILE`` or ``serve.api_token_file`` (a mounted secret, one token a
line, ``#`` comments). Rotation: add the new token, roll the clients, remove the old one, redeploy.

The checks work on the raw header bytes: a non-ASCII or otherwise malformed ``Authorization``
is a 401 like a wrong token, and every configured token is compared in constant time.
"""

from __future__ import annotations

import hmac
import logging
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from fastapi import HTTPException

from hmss_ray.config import UserError
from hmss_ray.config.inference import ServeConfig

TOKEN_FILE_ENV = "HMSS_API_TOKEN_FILE"
MIN_TOKEN_CHARS = 12
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
log = logging.getLogger("hmss.serve")


def load_tokens(cfg: ServeConfig, env: dict[str, str] | None = None) -> tuple[bytes, ...]:
    """The deployment's tokens (empty: no authentication), each checked for its spelling."""
    env = dict(os.environ) if env is None else env
    texts = env.get(cfg.api_token_env, "").replace(",", " ").split()
    path = env.get(TOKEN_FILE_ENV) or cfg.api_token_file
    if path:
        try:
            lines = Path(path).read_text(encoding="ascii").splitlines()
        except (OSError, UnicodeDecodeError):
            raise UserError(f"cannot read the API token file {path} (ASCII, one a line)") from None
        texts += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for text in texts:
        if len(text) < MIN_TOKEN_CHARS or not text.isascii() or not text.isprintable():
            raise UserError(
                f"an API token must be at least {MIN_TOKEN_CHARS} printable ASCII characters"
            )
    return tuple(text.encode("ascii") for text in texts)


def require_token_off_loopback(host: str, tokens: Iterable[bytes]) -> None:
    """Refuse to serve beyond this machine without a token (one line, exit status 2)."""
    if host not in LOOPBACK_HOSTS and not tuple(tokens):
        raise UserError(
            f"serving on {host} needs an API token: set HMSS_API_TOKEN or HMSS_API_TOKEN_FILE "
            "(see docs/security/endpoint.md), or bind 127.0.0.1"
        )


def header(scope_headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first raw value of header ``name`` (lower case), or None."""
    return next((value for key, value in scope_headers if key == name), None)


def authorised(given: bytes | None, tokens: tuple[bytes, ...]) -> bool:
    """Whether ``Authorization: Bearer <one of tokens>`` was sent; constant time per token."""
    if not tokens:
        return True
    scheme, _, value = (given or b"").partition(b" ")
    ok = scheme.lower() == b"bearer"
    matched = False
    for token in tokens:  # every token is compared, whatever matched before
        matched |= hmac.compare_digest(value.strip(), token)
    return ok and matched


def host_allowed(given: bytes | None, allowed: tuple[str, ...]) -> bool:
    """Whether the Host header names one of ``allowed`` (any port); empty ``allowed``: any."""
    if not allowed:
        return True
    try:
        text = (given or b"").decode("ascii").strip().lower()
    except UnicodeDecodeError:
        return False
    name = text.split("]")[0] + "]" if text.startswith("[") else text.split(":")[0]
    return name in {h.lower() for h in allowed}


def unauthorised() -> HTTPException:
    return HTTPException(
        status_code=401,
        detail="missing or wrong API token: send 'Authorization: Bearer <token>'",
        headers={"WWW-Authenticate": "Bearer"},
    )


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def log_unexpected(request_id: str, exc: BaseException) -> None:
    """An unexpected failure in the server log: the request id, the exception's type and where
    it was raised (files and lines only: no message, no values, nothing from the upload)."""
    frames, tb = [], exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append(f"{Path(code.co_filename).name}:{tb.tb_lineno}")
        tb = tb.tb_next
    log.error(
        "request %s failed: %s at %s", request_id, type(exc).__name__, " < ".join(frames[::-1][:8])
    )
