"""The challenge metrics of a case's own release, chosen by the case (one call site in run.py).

SynthRAD2023 cases (brain, pelvis) get MAE, PSNR and SSIM on [-1024, 3000] HU; SynthRAD2025
cases (HN, TH, AB) get MAE, PSNR and masked MS-SSIM on [-1024, 3071] HU, and Dice and HD95 of
segmentations of the CT and the sCT. Every case also gets this project's bone Dice. Which columns
a report shows follows from the cases it holds.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from hmss_ray import metrics
from hmss_ray.config import Edition, ExperimentConfig
from hmss_ray.data import synthrad
from hmss_ray.metrics.segmentation import Segmenter, classes_for, spacing_of

COLUMNS = {
    Edition.SYNTHRAD2023: ("mae", "psnr", "ssim"),
    Edition.SYNTHRAD2025: ("mae", "psnr", "ms_ssim", "dice", "hd95"),
}
DEFINITIONS = {
    Edition.SYNTHRAD2023: (
        "SynthRAD2023 cases: MAE, PSNR, SSIM per patient, 3D, in HU inside the body mask (PSNR "
        "and SSIM on [-1024, 3000] HU, data range 4024)."
    ),
    Edition.SYNTHRAD2025: (
        "SynthRAD2025 cases: MAE, PSNR and masked 5-level MS-SSIM per patient, 3D, in HU inside "
        "the body mask (PSNR and MS-SSIM on [-1024, 3071] HU, data range 4095); Dice and HD95 (mm) "
        "with MONAI's DiceMetric and HausdorffDistanceMetric(percentile=95) between segmentations "
        "of the CT and the sCT, each class separately and averaged: the organisers' class list "
        "per region with TotalSegmentator (absent classes skipped), every non-background label "
        "with HU thresholds; background never counts."
    ),
}


def challenge_metrics(
    case: synthrad.Case,
    sct: np.ndarray,
    cfg: ExperimentConfig,
    segmenter: Segmenter | None = None,
) -> dict[str, float]:
    """One patient's challenge metrics (its release's definitions) and bone Dice.

    Args:
        case: a paired case (its CT is the reference).
        sct: the synthetic CT in HU on the case's grid.
        cfg: for ``metrics.bone_threshold_hu``.
        segmenter: segments CT and sCT for Dice/HD95 (SynthRAD2025 cases; thresholds if None).
    """
    assert case.ct is not None  # only paired cases are scored
    if case.id.edition is Edition.SYNTHRAD2025:
        row = dict(metrics.synthrad2025_metrics(case.ct, sct, case.mask))
        seg = segmenter or metrics.ThresholdSegmenter(bone_hu=cfg.metrics.bone_threshold_hu)
        reference = seg(case.ct, case.mask, case.affine)
        predicted = seg(sct, case.mask, case.affine)
        row.update(
            metrics.overlap_metrics(
                reference,
                predicted,
                spacing_of(case.affine),
                seg.names,
                classes=classes_for(case.id.region, seg),
            )
        )
    else:
        row = dict(metrics.synthrad_metrics(case.ct, sct, case.mask))
    hu = [torch.from_numpy(np.asarray(v, dtype=np.float32)) for v in (case.ct, sct, case.mask)]
    row["bone_dice"] = metrics.bone_dice(*hu, threshold_hu=cfg.metrics.bone_threshold_hu)
    return row


def summary_line(row: dict[str, float]) -> str:
    """The progress line of one patient: its release's metrics and bone Dice."""
    parts = [f"MAE {row['mae']:.1f} HU", f"PSNR {row['psnr']:.2f} dB"]
    if "ms_ssim" in row:
        parts += [f"MS-SSIM {row['ms_ssim']:.4f}", f"Dice {row['dice']:.3f}"]
        parts.append(f"HD95 {row['hd95']:.2f} mm")
    else:
        parts.append(f"SSIM {row['ssim']:.4f}")
    parts.append(f"bone Dice {row['bone_dice']:.3f}")
    return ", ".join(parts)


def definitions(found: Iterable[Edition]) -> str:
    """The definitions of the metrics of the releases present, one paragraph each."""
    return "\n".join(DEFINITIONS[e] for e in sorted(set(found)))
