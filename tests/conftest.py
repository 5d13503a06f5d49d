"""Shared fixtures: one local Ray per session, a real S3-compatible server on 127.0.0.1.

Nothing here downloads anything. The S3 server is moto's ThreadedMotoServer, spoken to over HTTP by
boto3 and pyarrow exactly as a real bucket would be. Ray is started once per session with
``num_cpus=2`` (the machine's size) after the S3 variables are set, so Ray workers see the endpoint.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HMSS_RANDOM_FEATURES_OK", "1")  # tests never fetch pretrained weights


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1; sets AWS_* variables for boto3, pyarrow and Ray workers."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in _S3_ENV}
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
    )
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_S3_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)


@pytest.fixture
def s3_bucket(s3_server: str) -> str:
    """A fresh, empty bucket; returns ``s3://<bucket>``."""
    import boto3

    name = f"hmss-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def ray_session(s3_server: str) -> Iterator[None]:
    """One local Ray for the whole session (2 CPUs), with the S3 endpoint in its environment."""
    import ray

    from hmss_ray.cluster import serve_env

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    serve_env()  # Serve as hmss_ray.cluster.init_ray starts it: the HAProxy ingress
    ray.init(
        address="local",
        num_cpus=2,
        dashboard_host="127.0.0.1",  # the state API Ray Train polls lives in the dashboard
        log_to_driver=True,
        configure_logging=False,
    )
    try:
        yield None
    finally:
        ray.shutdown()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one thread: tiny convolutions only gain contention from a second one."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
