"""Where Ray runs and how its Serve front is started (hmss_ray.cluster, hmss_ray.haproxy).

The HAProxy guard is checked on the config Ray 2.60's own template code renders (HAProxyApi from
the installed ray package) and on hand-made variants of its bind lines, each time with the real
HAProxy's ``-c`` check through the guard script, as Serve starts it.
"""

import os
import stat
import subprocess

import pytest

from hmss_ray import haproxy
from hmss_ray.cluster import haproxy_wrapper


@pytest.fixture(scope="module")
def real_haproxy():
    real = haproxy.real_binary()
    if real is None:
        pytest.skip("no HAProxy binary (ray[serve] ships one on Linux)")
    return real


def ray_rendered(folder, host, grpc=False):
    """The config Ray Serve 2.60 writes for an endpoint on ``host``, by Ray's own code."""
    from ray.serve._private.haproxy import BackendConfig, HAProxyApi, HAProxyConfig, ServerConfig
    from ray.serve.config import HTTPOptions, gRPCOptions

    grpc_options = gRPCOptions(port=9000, grpc_servicer_functions=["a.b:c"]) if grpc else None
    extra = {"grpc_options": grpc_options} if grpc else {}
    cfg = HAProxyConfig(
        http_options=HTTPOptions(host=host, port=8000),
        socket_path=str(folder / "admin.sock"),
        server_state_base=str(folder),
        server_state_file=str(folder / "server-state"),
        metrics_socket_path=str(folder / "metrics.sock"),
        **extra,
    )
    backend = BackendConfig(
        name="hmss", path_prefix="/", servers=[ServerConfig("r1", "127.0.0.1", 30001)]
    )
    path = folder / "haproxy.cfg"
    HAProxyApi(cfg, {"hmss": backend}, config_file_path=str(path))._generate_config_file_internal()
    return path


def binds(text):
    return [line.split()[1] for line in text.splitlines() if line.split()[:1] == ["bind"]]


def section(text, header):
    """The split lines of the section that starts with ``header``."""
    lines, inside = [], False
    for line in text.splitlines():
        if line and not line[0].isspace():
            inside = line.split()[:2] == header.split()
        elif inside:
            lines.append(line.split())
    return lines


def check(wrapper, config):
    return subprocess.run(
        [wrapper, "-c", "-f", str(config)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("host", "endpoint", "others"),
    [
        ("127.0.0.1", "127.0.0.1:8000", "127.0.0.1"),
        ("0.0.0.0", "*:8000", "127.0.0.1"),  # a pod's endpoint: the rest stays on loopback
        ("::1", "::1:8000", "[::1]"),  # as Ray renders it
        ("10.1.2.3", "10.1.2.3:8000", "127.0.0.1"),  # a network address: the rest stays home
    ],
)
def test_guard_pins_rays_real_config(tmp_path, real_haproxy, host, endpoint, others):
    # Ray binds stats (8404) and Prometheus (9101) on every interface; through the guard they
    # are on loopback, whether the endpoint listens on loopback, everywhere or a network address
    wrapper = haproxy.install(tmp_path / "bin", real_haproxy)
    config = ray_rendered(tmp_path, host)
    assert {"*:8404", ":9101"} <= set(binds(config.read_text()))  # Ray's own rendering
    done = check(wrapper, config)
    assert done.returncode == 0, done.stdout + done.stderr  # the real HAProxy accepts it
    text = config.read_text()
    assert sorted(binds(text)) == sorted([f"{others}:9101", endpoint, f"{others}:8404"])
    assert "mode 600 level admin" in text and "mode 666" not in text
    defaults = section(text, "defaults")
    for name, seconds in haproxy.TIMEOUTS.items():
        assert [w for w in defaults if w[:2] == ["timeout", name]] == [
            ["timeout", name, f"{seconds}s"]
        ]
    assert "timeout client 3600s" not in text


def test_guard_keeps_the_grpc_endpoint_and_pins_the_rest(tmp_path, real_haproxy):
    wrapper = haproxy.install(tmp_path / "bin", real_haproxy)
    config = ray_rendered(tmp_path, "0.0.0.0", grpc=True)
    assert check(wrapper, config).returncode == 0
    assert sorted(binds(config.read_text())) == [
        "*:8000", "*:9000", "127.0.0.1:8404", "127.0.0.1:9101"
    ]  # fmt: skip


WILDCARDS = [":8404", "*:8404", "0.0.0.0:8404", "[::]:8404", ":::8404", "ipv4@:8404",
             "ipv4@0.0.0.0:8404", "ipv6@:::8404", "ipv6@[::]:8404", "ipv4@*:8404"]  # fmt: skip


@pytest.mark.parametrize("spelling", WILDCARDS)
def test_every_wildcard_spelling_is_pinned(tmp_path, real_haproxy, spelling):
    wrapper = haproxy.install(tmp_path / "bin", real_haproxy)
    config = ray_rendered(tmp_path, "10.1.2.3")
    config.write_text(config.read_text().replace("bind *:8404", f"bind {spelling}"))
    done = check(wrapper, config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(binds(config.read_text())) == [
        "10.1.2.3:8000",
        "127.0.0.1:8404",
        "127.0.0.1:9101",
    ]


@pytest.mark.parametrize(
    "breaks",
    [
        lambda t: t.replace("frontend http_frontend", "frontend renamed_frontend"),
        lambda t: t.replace("bind *:8404", "bind fd@3"),
        lambda t: t.replace("bind *:8404", "bind unix@/tmp/x.sock"),
        lambda t: t.replace("bind *:8404", "bind"),
        lambda t: t.replace("bind *:8404", "bind *:stats"),
        lambda t: t.replace("stats socket ", "stats socket ipv4@0.0.0.0:9999 #"),
        lambda t: t.replace("defaults", "# defaults gone"),
        lambda t: t + "peers mesh\n    peer node1 0.0.0.0:10000\n",
        lambda t: t + "log-forward syslog\n    dgram-bind :1514\n    log global\n",
    ],
    ids=[
        "no-endpoint",
        "fd",
        "unix",
        "empty",
        "named-port",
        "tcp-admin",
        "no-defaults",
        "peers",
        "log-forward",
    ],
)
def test_guard_fails_closed_when_it_cannot_prove_the_listeners(tmp_path, real_haproxy, breaks):
    wrapper = haproxy.install(tmp_path / "bin", real_haproxy)
    config = ray_rendered(tmp_path, "127.0.0.1")
    config.write_text(breaks(config.read_text()))
    before = config.read_text()
    done = check(wrapper, config)
    assert done.returncode == haproxy.EX_CONFIG
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "HAProxy not started" in lines[0], done.stderr
    assert config.read_text() == before  # nothing rewritten


def test_guard_folder_is_created_fresh_and_private(tmp_path, real_haproxy):
    taken = tmp_path / "taken"
    taken.mkdir()
    with pytest.raises(FileExistsError):  # a folder someone prepared is never trusted
        haproxy.install(taken, real_haproxy)
    path = haproxy.install(None, real_haproxy)
    folder = os.path.dirname(path)
    try:
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
        assert os.stat(folder).st_uid == os.getuid()
    finally:
        os.unlink(path)
        os.rmdir(folder)
    assert haproxy_wrapper(tmp_path / "fresh").endswith("fresh/haproxy")


def test_config_rewrite_never_writes_through_a_symlink(tmp_path, real_haproxy):
    config = ray_rendered(tmp_path, "127.0.0.1")
    victim = tmp_path / "victim"
    victim.write_text("keep")
    # someone plants the rewrite's temporary name as a symlink: the guard refuses, victim intact
    planted = config.with_name(f".{config.name}.{os.getpid()}.hmss")
    planted.symlink_to(victim)
    assert haproxy.run(real_haproxy, ["-c", "-f", str(config)]) == haproxy.EX_CONFIG
    assert victim.read_text() == "keep"


def _fetch_token(out, secret_id, capsys):
    from hmss_ray import auth_token

    code = auth_token.main(["--secret-id", secret_id, "--out", str(out)])
    return code, capsys.readouterr()


def test_node_start_puts_the_ray_token_from_the_secret_store_where_ray_reads_it(
    tmp_path, s3_server, capsys
):
    # the launcher's setup command, against Secrets Manager (moto on 127.0.0.1)
    import boto3

    token = "t" * 48
    client = boto3.client("secretsmanager", endpoint_url=s3_server)
    client.create_secret(Name="hmss-ray/test-token", SecretString=token)
    client.create_secret(Name="hmss-ray/short", SecretString="abc")
    out = tmp_path / ".ray" / "auth_token"
    code, said = _fetch_token(out, "hmss-ray/test-token", capsys)
    assert code == 0, said.err
    assert out.read_text() == token and token not in said.out + said.err
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.parent.stat().st_mode) == 0o700
    for secret_id, why in (("hmss-ray/missing", "cannot read secret"), ("hmss-ray/short", "32")):
        code, said = _fetch_token(out, secret_id, capsys)
        assert code == 2 and why in said.err
        assert len(said.err.strip().splitlines()) == 1, said.err
    assert out.read_text() == token  # a failed fetch leaves the good token in place


def test_a_guard_never_wraps_a_guard(tmp_path, monkeypatch):
    """With RAY_SERVE_HAPROXY_BINARY_PATH at a guard (a local Ray sets it), the real binary is
    still HAProxy itself: a guard around a guard would rewrite the config twice and refuse."""
    from hmss_ray import haproxy

    real = haproxy.real_binary()
    if real is None:
        pytest.skip("no HAProxy binary")
    guard = haproxy.install(tmp_path / "guard", real)
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", guard)
    assert haproxy.real_binary() == real
