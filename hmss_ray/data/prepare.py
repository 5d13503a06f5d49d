"""Preparing shards: SynthRAD folders (or the phantom) -> Parquet slice shards + manifest.

Finds the cases, splits paired ones by patient (stratified by centre), validates and preprocesses
one case at a time (optionally in a process pool, with identical output), writes shards and then
``manifest.json`` to a local path or ``s3://``. Bad cases are skipped and listed with their reasons.

Every case is read twice: a validation pass (so that only usable patients are split and the
``data.max_train_slices`` cap is exact), then the pass that writes the shards; the two passes over
one case are :mod:`hmss_ray.data.prepare_case`, this module plans and writes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from hmss_ray.config import DataConfig, ExperimentConfig, UserError, data_hash, stable_hash
from hmss_ray.data import shards
from hmss_ray.data.manifest import (
    SPLITS,
    CaseEntry,
    Manifest,
    ShardEntry,
    SkippedCase,
    count_slices,
    write_manifest,
)
from hmss_ray.data.pool import case_pool, map_cases
from hmss_ray.data.prepare_case import CaseCheck, CaseJob, CaseResult, check_case, process_case
from hmss_ray.data.split import split_cases
from hmss_ray.data.synthrad import CaseRef, find_cases

__all__ = [
    "CaseCheck",
    "CaseJob",
    "CaseResult",
    "PrepareError",
    "PrepareReport",
    "check_case",
    "prepare_dataset",
    "process_case",
    "train_quotas",
]

UNUSED = "balance_centres: more training patients than the smallest centre of the region"


class PrepareError(UserError):
    """Nothing usable to prepare (no cases, or every paired case is bad)."""


@dataclass
class PrepareReport:
    """What a run did; ``manifest`` is None when ``strict`` stopped it."""

    manifest: Manifest | None
    skipped: list[SkippedCase]
    written: int = 0
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)


def _progress(items: Iterable[Any], total: int, desc: str, enabled: bool) -> Iterable[Any]:
    return tqdm(items, total=total, disable=not enabled, desc=desc, unit="case")


def train_quotas(
    checks: Iterable[CaseCheck], split: dict[str, str], cfg: DataConfig
) -> dict[str, int]:
    """Per training case, how many slices it may give so the total is ``max_train_slices``:
    shared equally between (region, centre) when ``balance_centres``, and in proportion to each
    case's usable slices inside a group."""
    if cfg.max_train_slices is None:
        return {}
    groups: dict[Any, list[CaseCheck]] = defaultdict(list)
    for check in checks:
        if split.get(str(check.ref.id)) == "train":
            key = (check.ref.id.region, check.ref.id.centre) if cfg.balance_centres else "all"
            groups[key].append(check)
    share, extra = divmod(cfg.max_train_slices, max(len(groups), 1))
    quotas = {}
    for i, (_, members) in enumerate(sorted(groups.items())):
        budget = share + (1 if i < extra else 0)
        total = max(sum(c.slices for c in members), 1)
        for check in members:
            quotas[str(check.ref.id)] = budget * check.slices // total
    return quotas


class _Run:
    """Collects case results in order: shards per split, manifest entries, skipped cases."""

    def __init__(self, out_uri: str, cfg: DataConfig) -> None:
        self.out_uri, self.cfg = out_uri, cfg
        self.writers: dict[str, shards.ShardWriter] = {}
        self.cases: dict[str, CaseEntry] = {}
        self.skipped: list[SkippedCase] = []

    def skip(self, ref: CaseRef, split: str, reasons: list[str]) -> None:
        source = f"{ref.id.region}/{ref.path.name}"
        self.skipped.append(SkippedCase(str(ref.id), split, source, reasons))
        self.skipped.sort(key=lambda e: e.case_id)

    def add(self, result: CaseResult) -> None:
        job = result.job
        if result.problems:
            self.skip(job.ref, job.split, result.problems)
            return
        if job.split not in self.writers:
            self.writers[job.split] = shards.ShardWriter(
                self.out_uri, job.split, self.cfg.slices_per_shard
            )
        meta = {"case_id": str(job.ref.id), "centre": job.ref.id.centre}
        meta.update(region=job.ref.id.region, split=job.split)
        rows = result.rows or {}
        table = shards.slices_table(rows["mr"], rows["ct"], rows["mask"], rows["slice_index"], meta)
        self.writers[job.split].add(table)
        assert result.info is not None  # a result without problems carries its entry
        self.cases[str(job.ref.id)] = result.info

    def close(self) -> list[ShardEntry]:
        """Flush every split; the shard entries in split order."""
        return [s for name in SPLITS if name in self.writers for s in self.writers[name].close()]


def _manifest(
    run: _Run, entries: list[ShardEntry], cfg: ExperimentConfig, source: Path, split: dict
) -> Manifest:
    d = cfg.data
    regions = sorted({c.region for c in run.cases.values()})
    return Manifest(
        data_hash=data_hash(cfg),
        data_config=cfg.to_dict()["data"],
        content_hash=stable_hash([s.sha256 for s in entries]),
        source=str(source),
        image_size=d.image_size,
        context_slices=d.context_slices,
        in_channels=cfg.in_channels,
        hu_range=list(d.hu_range),
        columns={
            "mr": {"dtype": "float32", "shape": [cfg.in_channels, d.image_size, d.image_size]},
            "ct": {"dtype": "float32", "shape": [1, d.image_size, d.image_size]},
            "mask": {"dtype": "uint8", "shape": [1, d.image_size, d.image_size]},
        },
        counts=count_slices(run.cases),
        shards=entries,
        cases=run.cases,
        inference_only=sorted(k for k, v in run.cases.items() if v.split == "infer"),
        skipped=run.skipped,
        unused=[
            {"case_id": k, "reason": UNUSED} for k, v in sorted(split.items()) if v == "unused"
        ],
        geometry={
            "orientation": d.orientation,
            "spacing": {r: list(d.spacing[r]) for r in regions},
            "max_body_loss": d.max_body_loss,
        },
    )


def _split_jobs(checks: list[CaseCheck], cfg: DataConfig) -> tuple[list[CaseJob], dict[str, str]]:
    """Split the usable cases (MR-only ones go to 'infer') and order the jobs by split, id."""
    split = split_cases([c.ref.id for c in checks if c.ref.paired], cfg)
    split.update({str(c.ref.id): "infer" for c in checks if not c.ref.paired})
    quotas = train_quotas(checks, split, cfg)
    jobs = [CaseJob(c.ref, split[str(c.ref.id)], quotas.get(str(c.ref.id))) for c in checks]
    jobs = [j for j in jobs if j.split != "unused"]
    return sorted(jobs, key=lambda j: (SPLITS.index(j.split), j.ref.id)), split


def _nothing_found(data_dir: str | Path, regions: Iterable[str]) -> str:
    """Why no case was found: no case folder at all, or none of the configured regions."""
    present = sorted({ref.id.region for ref in find_cases(data_dir)})
    if present:
        return (
            f"no case of data.regions {list(regions)} under {data_dir} "
            f"(found: {', '.join(present)}; set data.regions to use them)"
        )
    return (
        f"no SynthRAD case folders under {data_dir} (like Task1/brain/1BA001/mr.nii.gz of "
        "SynthRAD2023 or Task1/HN/1HNA001/mr.mha of SynthRAD2025)"
    )


def prepare_dataset(
    data_dir: str | Path,
    out_uri: str,
    cfg: ExperimentConfig | None = None,
    *,
    workers: int = 1,
    ray_tasks: bool = False,
    strict: bool = False,
    progress: bool = False,
) -> PrepareReport:
    """Prepare every case under ``data_dir`` into shards + manifest at ``out_uri``.

    Args:
        workers: processes for validation and preprocessing (1 = in this process); with
            ``ray_tasks``, up to 2 x ``workers`` cases in flight at once.
        ray_tasks: run each case as a Ray task on the Ray this process joined (a cluster's
            nodes); the output is byte-identical to the process pool's.
        strict: any problem fails the run before anything is written; ``report.manifest`` is
            None then.
    """
    cfg = cfg or ExperimentConfig()
    refs = find_cases(data_dir, cfg.data.regions)
    if not refs:
        raise PrepareError(_nothing_found(data_dir, cfg.data.regions))
    run = _Run(out_uri, cfg.data)
    pool = case_pool(workers, ray_tasks)
    try:
        # pass 1 validates every case, so only usable patients are split and the cap is exact
        checked = map_cases(partial(check_case, cfg=cfg.data), refs, pool, 2 * workers)
        checks = list(_progress(checked, len(refs), "validate", progress))
        for check in checks:
            if check.problems:
                run.skip(check.ref, "none", check.problems)
        if strict and run.skipped:
            return PrepareReport(None, run.skipped)
        jobs, split = _split_jobs([c for c in checks if not c.problems], cfg.data)
        results = map_cases(partial(process_case, cfg=cfg.data), jobs, pool, 2 * workers)
        for result in _progress(results, len(jobs), "write", progress):
            run.add(result)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    shard_entries = run.close()
    if not any(info.paired for info in run.cases.values()):
        raise PrepareError(f"none of the {len(refs)} cases under {data_dir} is a usable MR/CT pair")
    manifest = _manifest(run, shard_entries, cfg, Path(data_dir).resolve(), split)
    write_manifest(out_uri, manifest)  # last: readers only ever see complete shards
    removed = shards.remove_stale(out_uri, manifest)
    written = sum(w.written for w in run.writers.values())
    unchanged = sum(w.unchanged for w in run.writers.values())
    return PrepareReport(manifest, run.skipped, written, unchanged, removed)
