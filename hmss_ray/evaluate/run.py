"""Evaluation: per-patient SynthRAD metrics, tables and figures of one split.

For every case of the split (from the shard manifest, else every paired case under ``--data``) the
sCT is read from ``--predictions/<case_id>.nii.gz`` (or ``.mha``) or synthesised with the model,
then scored: the challenge metrics of the case's release (SynthRAD2023 MAE / PSNR / SSIM, or
SynthRAD2025 MAE / PSNR / MS-SSIM / Dice / HD95: :mod:`.challenge`), bone Dice, and the
notebooks' slice metrics (MSE on [-1, 1], per-slice SSIM, VGG distance; FID over all the split's
slices). Writes ``per_patient.csv``, ``summary.csv`` (per centre and overall), ``report.md`` and PNG
figures.
Every metric comes from :mod:`hmss_ray.metrics`; this module only chooses the data and tabulates.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hmss_ray import metrics, storage
from hmss_ray.config import Edition, ExperimentConfig, UserError, load_config, parse_overrides
from hmss_ray.data import synthrad
from hmss_ray.dose import parse_modalities
from hmss_ray.dose.engine import require_engine
from hmss_ray.evaluate import challenge, figures, report
from hmss_ray.evaluate.cases import prediction_path, read_prediction, sct_for, select_cases
from hmss_ray.evaluate.dose import DoseJob, try_dose
from hmss_ray.evaluate.scoring import (
    OVERALL,
    SLICE_BATCH,
    Scorers,
    patient_metrics,
    slice_stack,
    summarise,
    update_fid,
)
from hmss_ray.inference.synthesizer import Synthesizer
from hmss_ray.metrics.features import Kind, describe, load_extractor
from hmss_ray.metrics.segmentation import make_segmenter
from hmss_ray.models import checkpoint as ckpt
from hmss_ray.models.factory import resolve_device

# the seams this module was split along (cases.py, scoring.py) keep their old import path
__all__ = [
    "OVERALL", "SLICE_BATCH", "EvaluationJob", "NothingEvaluated", "Scorers", "evaluate",
    "evaluate_cases", "evaluation_config", "patient_metrics", "prediction_path", "read_prediction",
    "sct_for", "select_cases", "slice_stack", "summarise", "update_fid", "write_outputs",
]  # fmt: skip


@dataclass(frozen=True)
class EvaluationJob:
    """What to evaluate and where the report goes (``out`` a local folder)."""

    data: str
    out: Path
    split: str = "test"
    model: str | None = None
    shards: str | None = None
    predictions: str | None = None
    device: str = "auto"
    segmentation: str = "auto"  # SynthRAD2025 Dice/HD95: auto, totalsegmentator or thresholds
    dose: tuple[str, ...] = ()  # photon and/or proton: the CT plan recomputed on the sCT
    final: str | None = None  # where the report ends up, when ``out`` is its staging folder


class NothingEvaluated(RuntimeError):
    """No case of the split could be evaluated."""


def evaluate_cases(
    refs: Sequence[synthrad.CaseRef],
    cfg: ExperimentConfig,
    sct_dir: Path,
    scorers: Scorers,
    skipped: list[tuple[str, str]],
    synth: Synthesizer | None = None,
    dose: DoseJob | None = None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-patient rows, and FID per group over the group's slices; failures go to ``skipped``.

    With ``dose``, each patient's row also holds its dose check (:mod:`.dose`)."""
    rows = []
    stats: dict[str, tuple[metrics.FeatureStats, metrics.FeatureStats]] = defaultdict(
        lambda: (metrics.FeatureStats(), metrics.FeatureStats())
    )
    for n, ref in enumerate(refs, start=1):
        try:
            case = synthrad.load_case(ref, cfg.data)
            sct = sct_for(ref, case, sct_dir, synth)
            row, ct_s, sct_s = patient_metrics(case, sct, cfg, scorers)
        except (ValueError, OSError, EOFError) as exc:  # one bad case must not stop the others
            why = exc.problems if isinstance(exc, synthrad.CaseError) else []
            reason = "; ".join(p.reason for p in why) or str(exc)
            skipped.append((str(ref.id), reason))
            print(f"[hmss] ({n}/{len(refs)}) {ref.id}: skipped: {reason}", flush=True)
            continue
        group = f"{case.id.region} {case.id.centre}"
        keys = (group, case.id.region, OVERALL)
        update_fid([stats[k][0] for k in keys], scorers, ct_s)
        update_fid([stats[k][1] for k in keys], scorers, sct_s)
        rows.append({"case_id": str(case.id), "region": case.id.region,
                     "centre": case.id.centre, "group": group, **row})  # fmt: skip
        line = challenge.summary_line(row)
        print(f"[hmss] ({n}/{len(refs)}) {case.id} {group}: {line}", flush=True)
        if dose is not None:
            rows[-1].update(try_dose(ref, case, sct, dose))
    fids = {
        key: metrics.fid(real, fake) if min(real.n, fake.n) >= 2 else float("nan")
        for key, (real, fake) in stats.items()
    }
    return pd.DataFrame(rows), fids


def evaluation_config(
    model: str | None, config: str | None = None, overrides: Sequence[str] = ()
) -> ExperimentConfig:
    """``config`` when given, else the model's own config (its hu_range made its sCTs)."""
    if config:
        return load_config(config, list(overrides))
    base = ckpt.read_meta(ckpt.localize(model)).cfg if model else ExperimentConfig()
    return base.replace(parse_overrides(list(overrides))) if overrides else base


def write_outputs(
    job: EvaluationJob,
    cfg: ExperimentConfig,
    results: tuple[pd.DataFrame, dict[str, float]],
    skipped: list[tuple[str, str]],
    load_pair: Callable[[str], tuple[synthrad.Case, np.ndarray]],
    scorers: Scorers,
    dose_figures: Sequence[tuple[str, str]] = (),
) -> None:
    """The CSVs, the figures (``dose_figures`` already written) and ``report.md`` under
    ``job.out``."""
    out = job.out
    per_patient, fids = results
    summary = summarise(per_patient, fids)
    per_patient.to_csv(out / "per_patient.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    written = [*figures.write_figures(per_patient, load_pair, out), *dose_figures]
    context = {
        "model": job.model or "(none: predictions only)",
        "sCT": f"read from {job.predictions}"
        if job.predictions
        else f"synthesised -> {job.final or out}/sct",
        "data": job.data,
        "split": f"{job.split} (from {job.shards})" if job.shards else "all paired cases",
        "slice metrics": f"HU mapped from data.hu_range {list(cfg.data.hu_range)} to [-1, 1]",
    }
    editions = sorted({synthrad.CaseId.parse(c).edition for c in per_patient["case_id"]})
    context["edition"] = ", ".join(f"SynthRAD{e}" for e in editions) + " (from the layout)"
    if scorers.segmenter is not None and "dice" in per_patient:
        context["Dice/HD95 segmentation"] = scorers.segmenter.description
    labels = describe(scorers.vgg, "VGG distance"), describe(scorers.inception, "FID")
    text = report.markdown_report(
        context, per_patient, summary, skipped, written, *labels,
        definitions=challenge.definitions(editions),
    )  # fmt: skip
    (out / "report.md").write_text(text)


def check_output(output: str, predictions: str | None) -> None:
    """Refuse a report folder that holds what evaluate did not write (it is replaced whole),
    or that holds the predictions being scored."""
    if storage.is_remote(output) or not Path(output).is_dir():
        return
    out = Path(output).resolve()
    inside = predictions and not storage.is_remote(predictions)
    if inside and Path(predictions).resolve().is_relative_to(out):  # type: ignore[arg-type]
        raise UserError(
            f"--predictions {predictions} lies inside the report folder {output}, which a new "
            "report replaces: choose another -o"
        )
    if any(out.iterdir()) and not (out / "report.md").is_file():
        raise UserError(
            f"-o {output} holds files evaluate did not write (no report.md): choose an empty "
            "or new folder"
        )


def evaluate(job: EvaluationJob, cfg: ExperimentConfig) -> pd.DataFrame:
    """Score every case of the split and write the report; returns the per-patient table."""
    refs, skipped = select_cases(job.data, job.split, job.shards, cfg.data.regions)
    print(f"[hmss] {len(refs)} case(s) in split {job.split!r} to evaluate, {len(skipped)} left out")
    device = resolve_device(job.device)
    needs_segmenter = any(r.id.edition is Edition.SYNTHRAD2025 for r in refs)
    scorers = Scorers(
        load_extractor(Kind.VGG_DISTANCE, cfg.metrics.vgg_weights).to(device),
        load_extractor(Kind.INCEPTION, cfg.metrics.inception_weights).to(device),
        device,
        make_segmenter(job.segmentation, cfg.metrics.bone_threshold_hu, str(device))
        if needs_segmenter
        else None,
    )
    synth, sct_dir = None, Path(job.predictions or job.out / "sct")
    if not job.predictions:
        if not job.model:
            raise ValueError("evaluate needs a model to synthesise with, or predictions to score")
        synth = Synthesizer.from_uri(job.model, device=str(device))
        sct_dir.mkdir(parents=True, exist_ok=True)
    dose = None
    if job.dose:
        require_engine()  # before any case: a missing extra is one line, not N skipped cases
        dose = DoseJob(parse_modalities(job.dose), job.out)
    results = evaluate_cases(refs, cfg, sct_dir, scorers, skipped, synth, dose)
    if results[0].empty:
        raise NothingEvaluated(f"none of the {len(refs)} case(s) could be evaluated")
    by_id = {str(r.id): r for r in refs}

    def load_pair(case_id: str) -> tuple[synthrad.Case, np.ndarray]:
        case = synthrad.load_case(by_id[case_id], cfg.data)
        return case, read_prediction(prediction_path(sct_dir, case.id), case)

    write_outputs(job, cfg, results, skipped, load_pair, scorers, dose.figures if dose else ())
    return results[0]
