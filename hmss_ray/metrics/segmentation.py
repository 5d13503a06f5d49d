"""SynthRAD2025's geometric metrics: Dice and HD95 between segmentations of the CT and the sCT.

The organisers segment the CT and the sCT with TotalSegmentator (``fast=True``) and score them with
MONAI's ``DiceMetric`` and ``HausdorffDistanceMetric(percentile=95)`` (mm). Since 2025-04-16
(their ``segmentation_metrics.py``, SynthRAD2025/evaluation) each region has a list of classes
(:data:`CLASSES_2025`); each class present in the CT's segmentation is scored separately as a
one-hot volume, absent classes are skipped, background never counts, and the patient's Dice and
HD95 are MONAI's mean over the scored classes (NaN skipped); a patient with none of its region's
classes scores 0 and 0.

TotalSegmentator is an optional extra (``pip install 'hmss-ray[totalseg]'``) and its weights are
a download: it is used only when it is installed *and* its fast model's weights are already on
disk, so nothing is ever fetched at run time. Otherwise both volumes are segmented by HU
thresholds inside the body mask (bone, air), with the same MONAI metrics and the same averaging;
:attr:`Segmenter.description` says which, and the evaluation report prints it.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from hmss_ray.config import SegmentationMethod, UserError

# the organisers' TotalSegmentator classes per SynthRAD2025 region (segmentation_metrics.py)
_TRUNK = (2, 3, 5, 6, *range(10, 15), *range(26, 51), 51, 79, *range(92, 116), 116)
CLASSES_2025: dict[str, tuple[int, ...]] = {
    "HN": (15, 16, 17, *range(26, 51), 79, 90, 91),
    "TH": _TRUNK,
    "AB": _TRUNK,
}
TS_FAST_DATASET = "Dataset297_"  # TotalSegmentator's "total" task, fast (3 mm) model
TS_INSTALL = "pip install 'hmss-ray[totalseg]'"


class Segmenter(Protocol):
    """HU volume (and body mask, affine) -> integer label volume on the same grid."""

    description: str
    names: dict[int, str]  # labels worth a column of their own; {} when there are too many

    def __call__(self, hu: np.ndarray, mask: np.ndarray, affine: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ThresholdSegmenter:
    """Bone (``HU >= bone_hu``) and air (``HU <= air_hu``: lungs, airway, bowel gas) inside the
    body mask; everything else is background (label 0)."""

    bone_hu: float = 250.0
    air_hu: float = -400.0
    reason: str = ""  # why thresholds are used (when TotalSegmentator could not be)
    names: dict[int, str] = field(default_factory=lambda: {0: "background", 1: "bone", 2: "air"})

    @property
    def description(self) -> str:
        text = (
            f"HU thresholds inside the body mask: bone >= {self.bone_hu:g} HU, "
            f"air <= {self.air_hu:g} HU, background the rest"
        )
        return f"{text} ({self.reason})" if self.reason else text

    def __call__(self, hu: np.ndarray, mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
        hu, inside = np.asarray(hu), np.asarray(mask) > 0
        labels = np.zeros(hu.shape, dtype=np.uint8)
        labels[inside & (hu >= self.bone_hu)] = 1
        labels[inside & (hu <= self.air_hu)] = 2
        return labels


@dataclass(frozen=True)
class TotalSegmentatorSegmenter:
    """TotalSegmentator's ``total`` task, fast model, multi-label, on the whole volume (as the
    organisers run it); the device is TotalSegmentator's name for it (``gpu``, ``cpu``)."""

    device: str = "cpu"
    names: dict[int, str] = field(default_factory=dict)  # 117 structures: only the means

    @property
    def description(self) -> str:
        return "TotalSegmentator (task total, fast model, all structures)"

    def __call__(self, hu: np.ndarray, mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
        import nibabel as nib
        from totalsegmentator.python_api import totalsegmentator

        image = nib.Nifti1Image(np.asarray(hu, dtype=np.float32), np.asarray(affine))
        with torch.no_grad():
            result = totalsegmentator(
                input=image, output=None, ml=True, fast=True, skip_saving=True, quiet=True,
                nr_thr_resamp=1, nr_thr_saving=1, device=self.device,
            )  # fmt: skip
        return np.asarray(result.dataobj).astype(np.uint8)


def totalsegmentator_weights_dir() -> Path:
    """Where TotalSegmentator looks for its weights (its own rules, without importing it)."""
    if "TOTALSEG_WEIGHTS_PATH" in os.environ:
        return Path(os.environ["TOTALSEG_WEIGHTS_PATH"])
    home = Path(os.environ.get("TOTALSEG_HOME_DIR") or Path.home() / ".totalsegmentator")
    return home / "nnunet" / "results"


def totalsegmentator_status() -> tuple[bool, str]:
    """``(usable, why not)``: installed, and the fast model's weights on disk (never fetched)."""
    if importlib.util.find_spec("totalsegmentator") is None:
        return False, f"TotalSegmentator is not installed: {TS_INSTALL}"
    weights = totalsegmentator_weights_dir()
    if not weights.is_dir() or not any(weights.glob(f"{TS_FAST_DATASET}*")):
        return False, (
            f"TotalSegmentator's fast model is not in {weights} and would be downloaded: "
            "fetch it once with `totalseg_download_weights -t total_fast`"
        )
    return True, ""


def make_segmenter(
    method: str | SegmentationMethod = SegmentationMethod.AUTO,
    bone_hu: float = 250.0,
    device: str = "cpu",
) -> Segmenter:
    """The segmenter for the geometric metrics.

    Args:
        method: ``auto`` (TotalSegmentator if usable, else thresholds), ``totalsegmentator``
            (a :class:`UserError` when it is not usable) or ``thresholds``.
        bone_hu: the bone threshold of the threshold segmenter.
        device: ``cpu`` or ``cuda[:N]`` for TotalSegmentator.
    """
    method = SegmentationMethod(method)
    if method is SegmentationMethod.THRESHOLDS:
        return ThresholdSegmenter(bone_hu=bone_hu)
    usable, why = totalsegmentator_status()
    if usable:
        return TotalSegmentatorSegmenter(device="gpu" if device.startswith("cuda") else "cpu")
    if method is SegmentationMethod.TOTALSEGMENTATOR:
        raise UserError(f"--segmentation totalsegmentator: {why}")
    return ThresholdSegmenter(bone_hu=bone_hu, reason=why)


def classes_for(region: str, segmenter: Segmenter) -> tuple[int, ...] | None:
    """The organisers' class list for a SynthRAD2025 ``region`` when ``segmenter`` gives
    TotalSegmentator labels; None (every non-zero label) otherwise (e.g. HU thresholds)."""
    if isinstance(segmenter, TotalSegmentatorSegmenter):
        return CLASSES_2025.get(region)
    return None


def spacing_of(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size (mm) along each array axis of a 4x4 affine."""
    zooms = np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))
    return (float(zooms[0]), float(zooms[1]), float(zooms[2]))


def overlap_metrics(
    reference: np.ndarray,
    predicted: np.ndarray,
    spacing: tuple[float, ...],
    names: dict[int, str] | None = None,
    classes: tuple[int, ...] | None = None,
) -> dict[str, float]:
    """Dice and HD95 (mm) of ``predicted`` against ``reference`` label volumes, the organisers' way.

    Each class of ``classes`` (default: every non-zero label of ``reference``) that ``reference``
    holds is scored on its own one-hot volume with MONAI's ``DiceMetric`` and
    ``HausdorffDistanceMetric(percentile=95)``; ``dice`` and ``hd95`` are MONAI's mean over those
    (a class the sCT lacks: Dice 0, HD95 NaN, which the mean skips). None present: 0 and 0, as
    the organisers. ``dice_<name>``, ``hd95_<name>`` for the labels ``names`` lists (NaN when
    the reference lacks it; background is never in the mean, but may be named).
    """
    from monai.metrics import DiceMetric, HausdorffDistanceMetric

    reference, predicted = np.asarray(reference), np.asarray(predicted)
    if reference.shape != predicted.shape:
        raise ValueError(f"segmentations differ in shape: {reference.shape} vs {predicted.shape}")
    present = set(np.unique(reference).tolist())
    wanted = [c for c in (classes or sorted(present - {0})) if c in present]
    dice = DiceMetric(include_background=True, reduction="mean", get_not_nans=False)
    hd95 = HausdorffDistanceMetric(include_background=True, reduction="mean", percentile=95,
                                   get_not_nans=False)  # fmt: skip
    mm = [float(s) for s in spacing]
    side_dice, side_hd95 = (
        DiceMetric(include_background=True),
        HausdorffDistanceMetric(include_background=True, percentile=95),
    )  # named labels outside the mean (background): reported, not aggregated
    by_label: dict[int, tuple[float, float]] = {}
    with warnings.catch_warnings():  # a class the sCT lacks is scored (Dice 0), not warned about
        warnings.simplefilter("ignore")
        for label in sorted(set(wanted) | (set(names or {}) & present)):
            ref = torch.from_numpy(reference == label)[None, None].float()
            pred = torch.from_numpy(predicted == label)[None, None].float()
            d_metric, h_metric = (dice, hd95) if label in wanted else (side_dice, side_hd95)
            d = d_metric(pred, ref)  # also kept in the metric's buffer for aggregate()
            h = h_metric(pred, ref, spacing=mm)
            by_label[label] = (float(d.double()), float(h.double()))
        row = {"dice": 0.0, "hd95": 0.0}
        if wanted:
            row = {"dice": float(dice.aggregate()), "hd95": float(hd95.aggregate())}
    for label, name in (names or {}).items():
        d, h = by_label.get(label, (np.nan, np.nan))
        row[f"dice_{name}"], row[f"hd95_{name}"] = d, h
    return row
