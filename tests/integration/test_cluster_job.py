"""The search as the README runs it, on the rehearsal cluster: Ray's real autoscaler here.

``python -m infra.rehearsal``'s head (no CPUs, like the cloud's) starts with 0 worker nodes;
``ray job submit`` runs the search; the autoscaler brings worker nodes of the cloud's types up for
the trials' ``accel`` demand and takes them away when idle. Mid-search, the node of a Train worker
whose trial has a checkpoint is killed (raylet and agents, SIGKILL): Ray Train restarts the worker
on a node the autoscaler brings up, from that checkpoint, and no trial fails. Shards,
checkpoints, Tune state and the registry live in an S3 bucket (moto on 127.0.0.1) whose endpoint
and credentials reach the job only through its runtime_env; MLflow tracks the trials.
``prepare`` as a job on the rehearsal is measured by ``bench/autoscale.py``; its Ray executor is
tested in test_prepare_ray.py.
"""

from __future__ import annotations

import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor

import pytest
import ray

from hmss_ray import storage
from hmss_ray.data.manifest import read_manifest
from hmss_ray.registry.load import Resolved, resolve
from infra.rehearsal.cluster import RehearsalError, down, up, wait_until
from infra.rehearsal.jobs import NodeSampler, actor_nodes, kill_node, node_holders, submit

from .conftest import TINY

# about 6 min on 2 cores: `make cluster-test` or `make test-all`
pytestmark = [pytest.mark.integration, pytest.mark.own_ray, pytest.mark.slow]

SEARCH = "job"
TRIALS = 2
EPOCHS = 3


@pytest.fixture(autouse=True)
def _no_shared_ray():
    # its own Ray must be the only one on the machine (see test_cli_tune_resume.py)
    assert not ray.is_initialized(), "run this before any test that uses ray_session"


@pytest.fixture
def rehearsal():
    # a short state dir: Ray's socket paths under it must stay below 107 characters
    state = tempfile.mkdtemp(prefix="hmss-rh-", dir="/tmp")
    cluster = up(state)
    try:
        yield cluster
    finally:
        down(state)


def _tune(bucket: str, mlflow_uri: str) -> list[str]:
    sets = [
        *TINY,
        f"tune.num_samples={TRIALS}",
        f"tune.max_concurrent_trials={TRIALS}",
        # the cloud config's GPU request, answered by the rehearsal's stand-in resource
        "train.use_gpu=true",
        "train.accelerator_resource=accel",
        # no VGG/Inception weights on this machine; a GPU run refuses random features otherwise
        "train.allow_random_features=true",
        # a node (2 CPUs) holds one Train worker: the trials need two nodes, and data tasks
        # their own CPUs
        "train.cpus_per_worker=1.5",
        # a lost node can cost more than one restart: a retry may be scheduled before the GCS
        # has declared the node dead
        "train.max_failures=3",
        # three epochs of 30 steps, no early stop: a node is lost between a trial's first
        # checkpoint and its last (TINY's 3-step epochs leave a window of about a second)
        f"train.stage_epochs=[1, 0, {EPOCHS - 1}]",
        "train.steps_per_epoch=30",
        f"tune.asha_grace_period={EPOCHS}",
        f"tune.mlflow_uri={mlflow_uri}",
    ]
    return [
        "python", "-m", "hmss_ray.tune", "--config", "configs/demo.yaml",
        "--space", "tune_spaces/demo.yaml", "--shards", f"{bucket}/shards",
        "--storage", f"{bucket}/tune", "-o", f"{bucket}/registry", "--name", SEARCH,
        *[arg for item in sets for arg in ("--set", item)],
    ]  # fmt: skip


def _keys(uri: str) -> list[str]:
    fs, path = storage.resolve(uri)
    from pyarrow import fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    return [i.path[len(path) + 1 :] for i in infos if i.type == pafs.FileType.File]


def _checkpointed_running(bucket: str) -> set[str]:
    """Trials that wrote their first epoch's checkpoint to the bucket but not their last
    (checkpoints are named by 0-based epoch)."""
    keys = _keys(f"{bucket}/tune/{SEARCH}/train_runs")
    first = {k.split("/")[0] for k in keys if "/epoch_0000/" in k}
    return first - {k.split("/")[0] for k in keys if f"/epoch_{EPOCHS - 1:04d}/" in k}


def _kill_a_training_node(rehearsal, bucket: str, job) -> str:
    """Once every Train worker alive belongs to a trial with a checkpoint, lose its node."""

    def ready() -> bool:
        if job.done():  # the search ended (or failed) before a node could be lost
            result = job.result()
            raise AssertionError(f"the job ended first: {result.output[-6000:]}")
        alive = actor_nodes(rehearsal, "RayTrainWorker", alive=True)
        return 0 < len(alive) <= len(_checkpointed_running(bucket))

    wait_until(ready, 420, "a Train worker whose trial has a checkpoint", interval=0.5)
    node = actor_nodes(rehearsal, "RayTrainWorker", alive=True)[0]
    assert kill_node(rehearsal, node) > 0, f"no process of node {node} found"
    return node


def test_search_job_autoscales_from_zero_survives_a_lost_node_with_all_state_on_s3(
    rehearsal, s3_shards, s3_bucket, tmp_path
):
    s3_env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    mlflow_uri = f"sqlite:///{tmp_path}/mlflow.db"
    with NodeSampler(rehearsal) as nodes, ThreadPoolExecutor(1) as pool:
        assert nodes.sample().workers == 0, "the rehearsal must start without worker nodes"
        job = pool.submit(submit, rehearsal, _tune(s3_bucket, mlflow_uri), s3_env, timeout=600)
        killed = _kill_a_training_node(rehearsal, s3_bucket, job)
        search = job.result()
        assert search.succeeded, search.output[-6000:]
        try:
            scale_down_s = wait_until(lambda: not rehearsal.workers(), 120, "0 worker nodes")
        except RehearsalError as exc:
            raise AssertionError(f"{exc}; still held: {node_holders(rehearsal)}") from exc
    peak = max(nodes.samples, key=lambda s: s.workers)
    print(
        f"search {search.seconds:.0f} s, peak {peak.by_type}, back to 0 {scale_down_s:.0f} s after"
    )

    # the trials' Train workers ran on at least two autoscaled worker nodes, never on the head;
    # the lost node's worker was replaced on another node
    train_nodes = actor_nodes(rehearsal, "RayTrainWorker")
    workers = {n.node_id for n in rehearsal.nodes() if not n.is_head}
    assert len(set(train_nodes)) >= 2 and set(train_nodes) <= workers, (train_nodes, workers)
    assert len(train_nodes) > TRIALS and killed in train_nodes
    assert killed not in {n.node_id for n in rehearsal.workers()}
    assert nodes.peak >= 2

    # all state on S3: Tune's experiment state, every trial's checkpoints, report and registry
    tune_keys = _keys(f"{s3_bucket}/tune/{SEARCH}")
    assert any(k.startswith("experiment_state") for k in tune_keys), tune_keys[:20]
    trial_checkpoints = {k.split("/")[1] for k in tune_keys if "/epoch_" in k}
    assert len(trial_checkpoints) == TRIALS, tune_keys[:40]
    rows = storage.read_text(f"{s3_bucket}/tune/{SEARCH}/report/results.csv").splitlines()
    assert len(rows) == 1 + TRIALS, rows  # no trial failed or went missing
    found = resolve(f"{s3_bucket}/registry/{SEARCH}")  # its production alias: the first version
    assert found is not None
    entry = found.uri
    winner = json.loads(storage.read_text(f"{entry}/winner.json"))
    assert "generator.safetensors" in _keys(entry)
    assert winner["data_manifest_hash"] == read_manifest(s3_shards).data_hash

    _check_mlflow(mlflow_uri, found, winner)


def _check_mlflow(uri: str, found: Resolved, winner: dict) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name(SEARCH)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == TRIALS and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        assert set(winner["params"]) <= set(run.data.params), run.data.params  # dotted keys
        epochs = client.get_metric_history(run.info.run_id, "score")
        assert sorted(m.step for m in epochs) == list(range(1, EPOCHS + 1))  # one per epoch
    # the trial whose node was lost went on from its checkpoint, not from step 0
    resumed = [
        m.value
        for run in runs
        for m in client.get_metric_history(run.info.run_id, "start_step")
        if m.value > 0
    ]
    assert resumed, "no trial resumed from a checkpoint after its node was lost"
    (version,) = client.search_model_versions(f"name = '{SEARCH}'")
    assert version.source == found.pinned  # MLflow and the registry name the same bytes
    assert version.tags["registry_version"] == found.version
    assert version.tags["registry_digest"] == found.digest
    assert version.tags["data_manifest_hash"] == winner["data_manifest_hash"]
    assert version.tags["trial_id"] == winner["trial_id"]
    run = client.get_run(version.run_id)
    assert run.data.tags["hmss.trial_id"] == winner["trial_id"]
