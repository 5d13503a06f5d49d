"""TLS for the sCT endpoint with a configured certificate, on whichever HTTP front Serve runs.

Ray Serve 2.60 offers ``http_options.ssl_certfile`` / ``ssl_keyfile`` for its Python proxy
(uvicorn). With the HAProxy ingress (:data:`hmss_ray.cluster.SERVE_ENV`) those options do not
reach HAProxy's frontend, which stays plain HTTP, and they would switch the replicas' own servers
(which HAProxy reaches in plain HTTP) to TLS. So:

- HAProxy front: the certificate and key are joined into one PEM (mode 600, in a new private
  folder) named by ``HMSS_SERVE_TLS_PEM`` in the environment of the Ray started next; the
  HAProxy guard (:mod:`hmss_ray.haproxy`) binds the endpoint's frontend with ``ssl crt`` and
  refuses to start HAProxy when the PEM cannot be read;
- Python proxy (``RAY_SERVE_ENABLE_HA_PROXY=0``): Serve's own ``ssl_*`` HTTP options.

On Kubernetes TLS ends at the ingress (infra/kuberay/ingress.yaml, cert-manager). Clients refuse
plain HTTP to a host other than this machine unless told ``--insecure`` (:func:`require_tls`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from hmss_ray.config import UserError
from hmss_ray.haproxy import TLS_PEM_ENV


def _read_pem(path: str | Path, what: str, marker: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UserError(f"cannot read the TLS {what} {path}: {e.strerror}") from None
    if marker.encode() not in data:
        raise UserError(f"{path} is not a PEM {what} (no '{marker}' block)")
    return data


def haproxy_pem(cert: str | Path, key: str | Path) -> Path:
    """The certificate chain and its key in one PEM file (HAProxy's ``crt``), mode 600 in a new
    private folder; UserError when either file is missing or not PEM."""
    chain = _read_pem(cert, "certificate", "-----BEGIN CERTIFICATE-----")
    secret = _read_pem(key, "key", "PRIVATE KEY-----")
    folder = Path(tempfile.mkdtemp(prefix=f"hmss-tls-{os.getuid()}-"))
    path = folder / "endpoint.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(chain.rstrip(b"\n") + b"\n" + secret)
    return path


def configure(cert: str | Path | None, key: str | Path | None) -> dict[str, Any]:
    """Set up TLS for the endpoint a local Ray serves next; the Serve HTTP options it needs.

    Call before :func:`hmss_ray.cluster.init_ray` (the HAProxy front reads the environment when
    Ray starts). Returns ``{}`` without a certificate; ``ssl_*`` options for Serve's Python proxy;
    nothing for HAProxy, which gets :data:`TLS_PEM_ENV` instead.
    """
    if cert is None and key is None:
        return {}
    if cert is None or key is None:
        raise UserError("TLS needs both --tls-cert and --tls-key")
    pem = haproxy_pem(cert, key)  # validates both files on either front
    if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY", "1") == "0":
        return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    os.environ[TLS_PEM_ENV] = str(pem)
    return {}


def require_tls(url: str, insecure: bool = False) -> None:
    """UserError for plain ``http://`` to a host other than this machine, unless ``insecure``:
    the upload is a patient volume and the header a bearer token."""
    import httpx

    from hmss_ray.serving.upload import is_loopback

    parsed = httpx.URL(url)
    if parsed.scheme == "http" and not is_loopback(parsed.host) and not insecure:
        raise UserError(
            f"refusing plain http:// to {parsed.host}: patient data and the API token would "
            "cross the network in clear; use https:// (or --insecure on a network you trust)"
        )
