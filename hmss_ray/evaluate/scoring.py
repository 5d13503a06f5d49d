"""One patient's image metrics (challenge, bone Dice, slice metrics), FID pooling and the
per-centre summary of an evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from hmss_ray import metrics
from hmss_ray.config import ExperimentConfig
from hmss_ray.data import preprocess, synthrad
from hmss_ray.evaluate import challenge, report
from hmss_ray.metrics.features import fid_features
from hmss_ray.metrics.segmentation import Segmenter

OVERALL = "all"
SLICE_BATCH = 32  # slices per forward pass of the feature extractors: bounded memory


class Scorers(NamedTuple):
    """The frozen feature extractors, on the evaluation device."""

    vgg: torch.nn.Module
    inception: torch.nn.Module
    device: torch.device
    segmenter: Segmenter | None = None  # for SynthRAD2025 cases' Dice and HD95


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
