"""MLflow tracking: a run per trial (dotted parameters, a metric point per epoch), the winner as a
model version pointing at its registry entry. A real MLflow store (SQLite in tmp_path) and Tune's
own Trial objects; no Tune run and no Ray cluster."""

from __future__ import annotations

import pytest

from hmss_ray.config import load_config
from hmss_ray.tune import tracking

mlflow = pytest.importorskip("mlflow")

ENTRY = "s3://models/registry/demo"


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


def _trial(trial_id: str, params: dict):
    from ray.tune.experiment import Trial

    return Trial("train_driver", config=params, trial_id=trial_id, stub=True)


def _search(uri: str, name: str, trials: dict[str, float]) -> None:
    """What Tune does with the callback during a search of ``trials`` (id -> final score)."""
    cfg = load_config(None, [f"tune.mlflow_uri={uri}"])
    (callback,) = tracking.callbacks(cfg, name, "s3://data/shards")
    callback.setup()
    for trial_id, score in trials.items():
        trial = _trial(trial_id, {"loss.lambda_l1": 7.5, "optim.lr_g": 1e-3})
        callback.log_trial_start(trial)
        for epoch in (1, 2):
            result = {
                "score": score + 1 / epoch,
                "ssim": 0.5,
                "training_iteration": epoch,
                "trial_id": trial_id,
                "config": trial.config,
            }
            callback.log_trial_result(epoch, trial, result)
        callback.log_trial_end(trial)


def test_tracking_is_off_by_default():
    cfg = load_config(None)
    assert tracking.callbacks(cfg, "s", "data") == []
    assert tracking.register_winner(cfg, "s", "t1", ENTRY, "demo", {}) is None


def test_one_run_per_trial_with_dotted_params_and_a_point_per_epoch(uri):
    _search(uri, "runs", {"aaa01": 0.3, "bbb02": 0.2})
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("runs")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags[tracking.TRIAL_TAG] for r in runs) == ["aaa01", "bbb02"]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.params == {"loss.lambda_l1": "7.5", "optim.lr_g": "0.001"}
        assert run.data.tags["hmss.data"] == "s3://data/shards"
        history = client.get_metric_history(run.info.run_id, "score")
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2]
        assert not any(k.startswith("config") for k in run.data.metrics)  # params stay params


def test_winner_becomes_a_version_pointing_at_the_registry_entry(uri):
    _search(uri, "win", {"ccc01": 0.4, "ddd02": 0.1})
    cfg = load_config(None, [f"tune.mlflow_uri={uri}"])
    first = tracking.register_winner(
        cfg, "win", "ddd02", ENTRY, "demo", {"data_manifest_hash": "h1"}
    )
    again = tracking.register_winner(
        cfg, "win", "ccc01", ENTRY, "demo", {"data_manifest_hash": "h2"}
    )
    assert (first.name, first.version, again.version) == ("demo", "1", "2")
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    version = client.get_model_version("demo", "1")
    assert version.source == ENTRY
    assert version.tags["registry_entry"] == ENTRY and version.tags["data_manifest_hash"] == "h1"
    run = client.get_run(version.run_id)
    assert run.data.tags[tracking.TRIAL_TAG] == "ddd02"
    assert run.data.tags["hmss.winner"] == "true"


def test_a_winner_without_a_tracked_run_still_gets_a_version(uri):
    cfg = load_config(None, [f"tune.mlflow_uri={uri}", "tune.mlflow_experiment=elsewhere"])
    version = tracking.register_winner(cfg, "nosearch", "zzz", ENTRY, "lonely", {})
    assert version.run_id is None and version.source == ENTRY
