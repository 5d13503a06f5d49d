"""Where Ray runs and how its Serve front is started (hmss_ray.cluster)."""

import subprocess

import pytest

from hmss_ray.cluster import haproxy_wrapper

# the listeners of Ray Serve's HAProxy template (ray/serve/_private/haproxy_templates.py)
RAY_TEMPLATE_BINDS = """global
    maxconn 64
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend prometheus
    bind :9101
    no log
frontend http_frontend
    bind {host}:8000
    default_backend none
backend none
listen stats
  bind *:8404
  stats enable
"""


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_haproxy_listens_only_where_the_endpoint_was_told_to(tmp_path, host):
    # Ray binds HAProxy's stats and Prometheus ports on every interface; through the wrapper they
    # follow the endpoint's host (127.0.0.1 unless told otherwise), and HAProxy accepts the result
    wrapper = haproxy_wrapper(tmp_path / "bin")
    if wrapper is None:
        pytest.skip("no HAProxy binary (ray[serve] ships one on Linux)")
    config = tmp_path / "haproxy.cfg"
    config.write_text(RAY_TEMPLATE_BINDS.format(host=host))
    checked = subprocess.run([wrapper, "-c", "-f", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr  # the real HAProxy's check
    binds = [line.split()[1] for line in config.read_text().splitlines() if "bind " in line]
    assert binds == [f"{host}:9101", f"{host}:8000", f"{host}:8404"]
