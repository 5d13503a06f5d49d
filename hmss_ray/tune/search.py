"""Ray Tune + Optuna over the cascade; the winner goes to the registry.

Each trial is one full Ray Train run (the Train V2 "driver function" pattern). The objective is
``score`` = ``tune.metric`` (the body-masked combined objective or the challenge MAE:
:mod:`hmss_ray.metrics.objective`, weights in ``tune``), minimised, with ASHA
stopping weak trials early, at rungs counted in epochs and aligned with the staged schedule
(:func:`hmss_ray.train.schedule.asha_rungs`: the first cut after the HRG stage, never on the
untrained HRG of the LRG-only stage). Re-running the same command resumes an interrupted search;
finished trials are not rerun; the same name with other data or settings is refused
(:mod:`hmss_ray.tune.identity`).
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from typing import Any

from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.search.optuna import OptunaSearch

from hmss_ray import storage
from hmss_ray.config import ExperimentConfig
from hmss_ray.data.manifest import read_manifest
from hmss_ray.inference import ensemble
from hmss_ray.metrics.features import missing_weights
from hmss_ray.models import checkpoint as ckpt
from hmss_ray.registry import names
from hmss_ray.registry.entry import publish
from hmss_ray.train.trainer import build_trainer
from hmss_ray.tune import identity, release, tracking
from hmss_ray.tune import report as search_report
from hmss_ray.tune.report import TrialRow
from hmss_ray.tune.scheduler import asha_scheduler
from hmss_ray.tune.space import SearchSpace, validate_space


@dataclass
class SearchResult:
    """What a finished search leaves: the winner, its registry entry, the report, every trial."""

    winner: TrialRow
    registry_entry: str
    report: str
    rows: list[TrialRow]


HEAD_NODE_RESOURCE = "node:__internal_head__"  # Ray gives the head node 1 of it


class SearchInterrupted(RuntimeError):
    """The search stopped before every trial finished; its state is saved for a resume."""


def to_ray_space(space: SearchSpace) -> dict[str, Any]:
    makers = {
        "uniform": lambda v: tune.uniform(v[0], v[1]),
        "loguniform": lambda v: tune.loguniform(v[0], v[1]),
        "int": lambda v: tune.randint(v[0], v[1] + 1),  # inclusive upper bound in our YAML
        "choice": lambda v: tune.choice(list(v)),
    }
    return {p.key: makers[p.kind](p.values) for p in space.params}


def train_driver(params: dict[str, Any], base: dict, data_uri: str, storage_uri: str) -> None:
    """One trial: build the trial's config and fit a TorchTrainer that reports back to Tune."""
    cfg = ExperimentConfig.from_dict(base).replace(params)
    trial_id = tune.get_context().get_trial_id()
    # the same Train run name on restore, so an interrupted trial resumes its own checkpoints
    trainer = build_trainer(
        cfg, data_uri, storage_uri, name=f"trial-{trial_id}", callbacks=[TuneReportCallback()]
    )
    release.remember(trainer.train_run_context.run_id)  # see hmss_ray/tune/release.py
    trainer.fit()


def _searcher(cfg: ExperimentConfig):
    import optuna

    t = cfg.tune
    sampler = (
        optuna.samplers.TPESampler(seed=t.seed, n_startup_trials=max(2, t.num_samples // 3))
        if t.sampler == "tpe"
        else optuna.samplers.RandomSampler(seed=t.seed)
    )
    if t.multi_objective:
        return OptunaSearch(metric=["mae_hu", "kid"], mode=["min", "min"], sampler=sampler)
    return OptunaSearch(metric="score", mode="min", sampler=sampler)


def build_tuner(
    cfg: ExperimentConfig, space: SearchSpace, data_uri: str, storage_uri: str, name: str
) -> tune.Tuner:
    fs, path = storage.resolve(storage_uri)
    trainable = _trainable(cfg, data_uri, storage.join(storage_uri, name, "train_runs"))
    search_uri = storage.join(storage_uri, name)
    ident = identity.identity(cfg, space, read_manifest(data_uri).data_hash)
    if tune.Tuner.can_restore(f"{path}/{name}", storage_filesystem=fs):
        identity.check_resume(search_uri, ident, name)
        print(f"[hmss] resuming search {name} from {storage_uri}")
        return tune.Tuner.restore(
            f"{path}/{name}", trainable=trainable, resume_errored=True, storage_filesystem=fs
        )
    identity.record(search_uri, ident)
    t = cfg.tune
    scheduler = asha_scheduler(cfg)
    return tune.Tuner(
        trainable,
        param_space=to_ray_space(space),
        tune_config=tune.TuneConfig(
            search_alg=_searcher(cfg),
            scheduler=scheduler,
            num_samples=t.num_samples,
            max_concurrent_trials=t.max_concurrent_trials,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=path,
            storage_filesystem=fs,
            callbacks=tracking.callbacks(cfg, name, data_uri),
        ),
    )


def _fit(tuner: tune.Tuner) -> tuple[Any, bool]:
    """``Tuner.fit()`` and whether Ctrl-C interrupted it.

    Tune swaps in its own SIGINT handler for the search and puts the previous one back only when
    it caught the signal; fit() itself returns normally either way.
    """
    tune_catches = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") == "0"
    if not tune_catches or threading.current_thread() is not threading.main_thread():
        return tuner.fit(), False
    before = signal.getsignal(signal.SIGINT)
    grid = tuner.fit()
    interrupted = signal.getsignal(signal.SIGINT) is before
    signal.signal(signal.SIGINT, before)
    return grid, interrupted


def _trainable(cfg: ExperimentConfig, data_uri: str, train_storage: str):
    fn = tune.with_parameters(
        train_driver, base=cfg.to_dict(), data_uri=data_uri, storage_uri=train_storage
    )
    # The driver only waits on its TorchTrainer, whose workers ask for their own resources. It
    # runs on the head (every Ray has one; Tune refuses an empty request): Ray Train's controller
    # and Ray Data's coordinators and detached singletons follow the driver's node, and on a
    # worker node they would keep it from ever going idle, so the autoscaler could not remove it.
    return tune.with_resources(release.releasing(fn), {"CPU": 0, HEAD_NODE_RESOURCE: 0.01})


def run_search(
    cfg: ExperimentConfig,
    space: SearchSpace,
    data_uri: str,
    storage_uri: str,
    name: str,
    registry_uri: str,
    entry_name: str,
) -> SearchResult:
    """Run (or resume) the search, write the results table, plot and registry entry."""
    validate_space(space, cfg)
    names.entry_name(name)  # both become paths: neither may climb out of its root
    names.entry_name(entry_name)
    tuner = build_tuner(cfg, space, data_uri, storage_uri, name)
    grid, interrupted = _fit(tuner)
    reported = sum(1 for r in grid if r.metrics_dataframe is not None and len(r.metrics_dataframe))
    if interrupted or reported < cfg.tune.num_samples:
        # Ctrl-C: Tune saved its state, and a partial search must not name a winner
        raise SearchInterrupted(
            f"search {name} stopped with {reported} of {cfg.tune.num_samples} trials reported; "
            "run the same command again to resume it"
        )
    rows = search_report.trial_rows(grid, [p.key for p in space.params], storage_uri)
    if not rows:
        raise RuntimeError(f"search {name}: no trial reported a validation score")
    out_uri = storage.join(storage_uri, name, "report")
    written = search_report.write_report(rows, out_uri, cfg)
    winner = rows[0]  # sorted by score
    manifest = read_manifest(data_uri)
    ranked = [(r.checkpoint_path, r.score, r.trial_id) for r in rows]
    version = publish(
        ckpt.localize(winner.checkpoint_path, files=ckpt.GENERATOR_FILES),
        registry_uri,
        entry_name,
        metrics=winner.metrics(),
        winner={
            "trial_id": winner.trial_id,
            "objective": search_report.objective_text(cfg),
            "score": winner.score,
            "params": winner.params,
            "space": space.to_dict(),
            "parent": cfg.train.init_from,
            # the full training checkpoint (with the discriminator): --init-from it to fine-tune
            # both networks; the version itself holds the generator only
            "checkpoint": winner.checkpoint_path,
            "search": storage.join(storage_uri, name),
            "data": data_uri,
            "data_manifest_hash": manifest.data_hash,
        },
        facts={"centres": manifest.counts, "pretrained_features": not missing_weights(cfg)},
        # inference.ensemble: the other members (top trials, or the winner run's best
        # checkpoints) go into the version, so that Serve and the CLI need nothing outside it
        extra=lambda staged: ensemble.write_members(str(staged), cfg, ranked),
        note=f"search {name} winner {winner.trial_id}",
        auto_promote=cfg.tune.registry_auto_promote,  # the first version serves at once
    )
    entry = f"{storage.join(registry_uri, entry_name)}@{version.id}"
    tags = {"data_manifest_hash": manifest.data_hash, "score": f"{winner.score:.6g}",
            "registry_version": version.id, "registry_digest": version.digest}  # fmt: skip
    tracked = tracking.register_winner(cfg, name, winner.trial_id, entry, entry_name, tags)
    if tracked:
        print(f"[hmss] MLflow: model {tracked.name} version {tracked.version} <- {entry}")
    return SearchResult(winner, entry, written, rows)
