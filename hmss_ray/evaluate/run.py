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
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from hmss_ray import metrics
from hmss_ray.config import Edition, ExperimentConfig, UserError, load_config, parse_overrides
from hmss_ray.data import preprocess, synthrad
from hmss_ray.data.manifest import read_manifest
from hmss_ray.data.synthrad import AFFINE_TOLERANCE_MM
from hmss_ray.evaluate import challenge, figures, report
from hmss_ray.inference.synthesizer import Synthesizer, synthesize_volume
from hmss_ray.io import read_volume, write_volume
from hmss_ray.io.align import align_to
from hmss_ray.io.formats import find_volume
from hmss_ray.metrics.features import Kind, describe, fid_features, load_extractor
from hmss_ray.metrics.segmentation import Segmenter, make_segmenter
from hmss_ray.models import checkpoint as ckpt
from hmss_ray.models.factory import resolve_device

OVERALL = "all"
SLICE_BATCH = 32  # slices per forward pass of the feature extractors: bounded memory


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


class NothingEvaluated(RuntimeError):
    """No case of the split could be evaluated."""


class Scorers(NamedTuple):
    """The frozen feature extractors, on the evaluation device."""

    vgg: torch.nn.Module
    inception: torch.nn.Module
    device: torch.device
    segmenter: Segmenter | None = None  # for SynthRAD2025 cases' Dice and HD95


def select_cases(
    data_dir: str, split: str, shards: str | None, regions: Sequence[str]
) -> tuple[list[synthrad.CaseRef], list[tuple[str, str]]]:
    """The split's case folders, and ``(case id, reason)`` for each case left out."""
    found = {str(ref.id): ref for ref in synthrad.find_cases(data_dir)}
    skipped: list[tuple[str, str]] = []
    if shards:
        manifest = read_manifest(shards)
        wanted = set(manifest.case_ids(split))
        # cases prepare skipped still belong to the split: try them, so the report lists them
        wanted |= {s.case_id for s in manifest.skipped if s.split == split}
        skipped += [(c, f"not found under {data_dir}") for c in sorted(wanted - set(found))]
        refs = [found[c] for c in sorted(wanted & set(found))]
    else:
        refs = [ref for ref in found.values() if ref.id.region in regions]
    no_ct = "MR only (no {}): no reference CT to score against"
    skipped += [(str(r.id), no_ct.format(r.expected_name("ct"))) for r in refs if not r.paired]
    return [r for r in refs if r.paired], skipped


def prediction_path(sct_dir: Path, case_id: synthrad.CaseId) -> Path:
    """The case's sCT in ``sct_dir`` in any readable format (``<case_id>.nii.gz``, ``.mha``,
    ``.nrrd``, a DICOM series as ``<case_id>.zip`` or folder ``<case_id>/``); when there is none,
    the name the case's release uses (``.nii.gz`` for 2023, ``.mha`` for 2025)."""
    found = find_volume(sct_dir, str(case_id))
    return found or sct_dir / f"{case_id}{synthrad.SUFFIXES[case_id.edition][0]}"


def read_prediction(path: Path, case: synthrad.Case) -> np.ndarray:
    """An sCT on the case's grid (same voxels in world space; any storage order)."""
    if not path.exists():
        raise FileNotFoundError(f"no prediction {path}")
    try:
        volume = read_volume(path)
    except UserError as exc:
        raise ValueError(f"prediction {path.name} unreadable ({exc})") from exc
    sct = np.asarray(volume.array, dtype=np.float32)
    if not np.isfinite(sct).all():
        raise ValueError(f"prediction {path.name} has non-finite voxels")
    try:
        aligned = align_to(volume.like(sct), case.affine, case.mr.shape, AFFINE_TOLERANCE_MM)
    except UserError as exc:
        raise ValueError(f"prediction {path.name}: {exc} (the MR's grid)") from exc
    return aligned.array


def slice_stack(volume: np.ndarray, keep: np.ndarray) -> torch.Tensor:
    """(H, W, Z) -> (N, 1, H, W) float32 of the kept axial slices."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(volume[:, :, keep], 2, 0)[:, None]))


def patient_metrics(
    case: synthrad.Case, sct: np.ndarray, cfg: ExperimentConfig, scorers: Scorers
) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    """One patient's metrics, and its [-1, 1] CT and sCT slices (for the split's FID).

    The 3D metrics are on the case's own (CT) grid. The slices are those the shards hold for this
    case (its region's geometry contract, same canvas, same mask fraction rule), so the slice
    metrics match what training validation measures.
    """
    assert case.ct is not None  # select_cases keeps paired cases only
    row = challenge.challenge_metrics(case, sct, cfg, scorers.segmenter)
    on_contract = (case.mask, case.affine, cfg.data, case.id.region)
    reference = preprocess.prepare_case(case.mr, case.ct, *on_contract)
    predicted = preprocess.prepare_case(case.mr, sct, *on_contract)
    ct_s = slice_stack(reference.ct, reference.keep)
    sct_s = slice_stack(predicted.ct, reference.keep)
    mask_s = slice_stack(reference.mask.astype(np.float32), reference.keep)
    row["slices"] = float(len(reference.keep))
    row.update(slice_mse=np.nan, slice_ssim=np.nan, vgg=np.nan)
    if len(ct_s):
        pooled = metrics.SliceMetrics(cfg.data.hu_range, vgg=scorers.vgg)
        for start in range(0, len(ct_s), SLICE_BATCH):
            part = slice(start, start + SLICE_BATCH)
            batch = [t[part].to(scorers.device) for t in (ct_s, sct_s, mask_s)]
            pooled.update(*batch)
        out = pooled.compute()
        row.update(slice_mse=out["mse"], slice_ssim=out["ssim"], vgg=out["perceptual"])
    return row, ct_s, sct_s


def update_fid(stats: Sequence[metrics.FeatureStats], scorers: Scorers, x: torch.Tensor) -> None:
    """Add the FID features of (N, 1, H, W) slices to every one of ``stats``."""
    for start in range(0, len(x), SLICE_BATCH):
        feats = fid_features(scorers.inception, x[start : start + SLICE_BATCH].to(scorers.device))
        for s in stats:
            s.update(feats)


def summarise(per_patient: pd.DataFrame, fids: dict[str, float]) -> pd.DataFrame:
    """Mean and std (over patients) per centre, per region when there are several, and overall.

    ``*_pooled`` are the slice metrics over all the group's slices (slice-weighted means: exactly
    what one ``SliceMetrics`` over the pooled slices gives), the notebooks' way of reporting.
    """
    groups = [(g, df) for g, df in per_patient.groupby("group", sort=True)]
    if per_patient["region"].nunique() > 1:
        groups += [(r, df) for r, df in per_patient.groupby("region", sort=True)]
    groups.append((OVERALL, per_patient))
    rows = []
    for name, df in groups:
        row: dict[str, object] = {
            "group": name,
            "patients": len(df),
            "slices": int(df["slices"].sum()),
        }
        for col in report.present(per_patient):  # a release's metrics: NaN for the other's
            row[f"{col}_mean"], row[f"{col}_std"] = df[col].mean(), df[col].std()
        weights = df["slices"].where(df["slices"] > 0)
        for col in ("slice_mse", "slice_ssim", "vgg"):
            row[f"{col}_pooled"] = (
                float((df[col] * weights).sum() / weights.sum()) if weights.sum() else np.nan
            )
        row["fid"] = fids.get(str(name), np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def sct_for(
    ref: synthrad.CaseRef, case: synthrad.Case, sct_dir: Path, synth: Synthesizer | None = None
) -> np.ndarray:
    """The case's sCT in HU: read from ``sct_dir``, or synthesised and saved there first.

    Synthesis goes through :func:`synthesize_volume`, the code path the HTTP endpoint runs, so a
    model evaluated here and the same model served give the same sCT.
    """
    path = prediction_path(sct_dir, case.id)
    if synth is not None:
        mr, mask = read_volume(ref.file("mr")), read_volume(ref.file("mask"))
        write_volume(synthesize_volume(synth, mr, mask, region=case.id.region), path)
    return read_prediction(path, case)


def evaluate_cases(
    refs: Sequence[synthrad.CaseRef],
    cfg: ExperimentConfig,
    sct_dir: Path,
    scorers: Scorers,
    skipped: list[tuple[str, str]],
    synth: Synthesizer | None = None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-patient rows, and FID per group over the group's slices; failures go to ``skipped``."""
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
) -> None:
    """The CSVs, the figures and ``report.md`` under ``job.out``."""
    out = job.out
    per_patient, fids = results
    summary = summarise(per_patient, fids)
    per_patient.to_csv(out / "per_patient.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    written = figures.write_figures(per_patient, load_pair, out)
    context = {
        "model": job.model or "(none: predictions only)",
        "sCT": f"read from {job.predictions}" if job.predictions else f"synthesised -> {out}/sct",
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
    results = evaluate_cases(refs, cfg, sct_dir, scorers, skipped, synth)
    if results[0].empty:
        raise NothingEvaluated(f"none of the {len(refs)} case(s) could be evaluated")
    by_id = {str(r.id): r for r in refs}

    def load_pair(case_id: str) -> tuple[synthrad.Case, np.ndarray]:
        case = synthrad.load_case(by_id[case_id], cfg.data)
        return case, read_prediction(prediction_path(sct_dir, case.id), case)

    write_outputs(job, cfg, results, skipped, load_pair, scorers)
    return results[0]
