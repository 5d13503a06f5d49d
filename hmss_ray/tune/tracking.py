"""Experiment tracking with MLflow (optional: ``tune.mlflow_uri``; off when null).

Through Ray's integration: :class:`TrialRuns`, a ``MLflowLoggerCallback`` on the Tune driver,
makes one MLflow run per trial, with the trial's parameters under their dotted config keys
(``loss.lambda_l1``) and every epoch's metrics at step = epoch. After the search,
:func:`register_winner` adds the winner as a new version of the registered model named after
the registry entry; the version's source is the registry version's URI
(``<registry>/<name>@<version>``) and its tags carry the registry version id and digest (the sha256
over the version's files), the data manifest hash, the trial and the score, so MLflow and the
registry name the same bytes.

Only the Tune driver talks to MLflow, so one machine can use a ``sqlite:///`` (or ``file://``)
store; on a cluster whose driver may move, use a tracking server (``http://...``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback

from hmss_ray.config import ExperimentConfig, UserError

TRIAL_TAG = "hmss.trial_id"
# Tune's bookkeeping in every result: not a metric of the model
SKIPPED_RESULT_KEYS = ("config", "timestamp", "pid")


@dataclass(frozen=True)
class ModelVersion:
    """The MLflow model version a search's winner became."""

    name: str
    version: str
    run_id: str | None
    source: str


class TrialRuns(MLflowLoggerCallback):
    """One MLflow run per trial, tagged with its Tune trial id so the winner's run can be found."""

    def __init__(self, tracking_uri: str, experiment_name: str, tags: dict[str, str]) -> None:
        super().__init__(tracking_uri=tracking_uri, experiment_name=experiment_name, tags=tags)
        self._base_tags = dict(tags)

    def log_trial_start(self, trial: Any) -> None:
        self.tags = {**self._base_tags, TRIAL_TAG: trial.trial_id}
        super().log_trial_start(trial)

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        metrics = {k: v for k, v in result.items() if k not in SKIPPED_RESULT_KEYS}
        super().log_trial_result(iteration, trial, metrics)


def experiment_name(cfg: ExperimentConfig, search_name: str) -> str:
    return cfg.tune.mlflow_experiment or search_name


def callbacks(cfg: ExperimentConfig, search_name: str, data_uri: str) -> list:
    """The Tune callbacks for ``cfg``: ``[TrialRuns]`` when tracking is on, else ``[]``."""
    if not cfg.tune.mlflow_uri:
        return []
    _require_mlflow()
    tags = {"hmss.search": search_name, "hmss.config": cfg.name, "hmss.data": data_uri}
    return [TrialRuns(cfg.tune.mlflow_uri, experiment_name(cfg, search_name), tags)]


def _require_mlflow() -> None:
    try:
        import mlflow  # noqa: F401
    except ImportError as exc:
        raise UserError(
            "tune.mlflow_uri is set but MLflow is not installed: pip install 'hmss-ray[tracking]'"
        ) from exc


def register_winner(
    cfg: ExperimentConfig,
    search_name: str,
    trial_id: str,
    entry_uri: str,
    entry_name: str,
    extra_tags: dict[str, str],
) -> ModelVersion | None:
    """Register the search's winner as a new version of the MLflow model ``entry_name``.

    Args:
        trial_id: the winning Tune trial; its MLflow run becomes the version's run.
        entry_uri: the registry entry, the version's source.
        extra_tags: more tags for the version (data manifest hash, score, ...).

    Returns None when tracking is off.
    """
    if not cfg.tune.mlflow_uri:
        return None
    _require_mlflow()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=cfg.tune.mlflow_uri, registry_uri=cfg.tune.mlflow_uri)
    run_id = winner_run_id(client, experiment_name(cfg, search_name), trial_id)
    try:
        client.create_registered_model(
            entry_name, description="hmss-ray search winners; a version's source: a registry entry"
        )
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    tags = {"registry_entry": entry_uri, "trial_id": trial_id, "search": search_name, **extra_tags}
    version = client.create_model_version(entry_name, source=entry_uri, run_id=run_id, tags=tags)
    if run_id:
        client.set_tag(run_id, "hmss.winner", "true")
    return ModelVersion(entry_name, str(version.version), run_id, entry_uri)


def winner_run_id(client: Any, experiment: str, trial_id: str) -> str | None:
    """The MLflow run of Tune trial ``trial_id`` (the newest, if it was resumed), or None."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None
