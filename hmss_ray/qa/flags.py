"""Automatic checks of an sCT against its MR's body outline, and the uncertainty summary.

Each flag is a measured fraction compared with a stated limit, so a physicist sees the number and
not only a verdict:

- ``air_in_body``: body voxels below -950 HU (away from the outline) - air where the MR has
  tissue. Lungs are about -850 HU, so a thorax passes; bowel gas can raise it.
- ``bone_at_outline``: voxels of the body's outer 2-voxel shell above ``bone_hu`` - bone where
  there should be skin.
- ``hu_at_limits``: body voxels at the model's HU range ends (clipped output).
- ``outline_dice``: Dice of the sCT's own body outline (above -500 HU, holes filled) with the MR's.
- ``spread_*``: the TTA/ensemble spread inside the body: mean, and the fraction above
  ``spread_hu``.
- ``ct_*`` (when a CT is given): the mean absolute sCT - CT difference inside the body where the
  CT covers it, and the fraction of the body it covers. Reported, not flagged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

AIR_HU = -950.0
OUTLINE_HU = -500.0


@dataclass(frozen=True)
class Limits:
    air_in_body: float = 0.02
    bone_at_outline: float = 0.02
    hu_at_limits: float = 0.001
    outline_dice: float = 0.95
    spread_fraction: float = 0.05
    spread_hu: float = 100.0
    bone_hu: float = 250.0


@dataclass(frozen=True)
class QAResult:
    values: dict[str, float]
    flags: list[str] = field(default_factory=list)  # the checks that failed, in words

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(
    sct: np.ndarray,
    body: np.ndarray,
    hu_range: tuple[float, float],
    spread: np.ndarray | None = None,
    limits: Limits | None = None,
    ct: np.ndarray | None = None,
) -> QAResult:
    """The flags of one sCT (int16 HU) and its MR body mask, on the same grid; ``ct``: a CT on
    that grid (float HU, NaN outside its field of view) to measure the sCT against."""
    limits = limits or Limits()
    body = np.asarray(body) > 0
    if not body.any():
        return QAResult({}, ["the body mask is empty"])
    inner = ndimage.binary_erosion(body, iterations=2)
    shell = body & ~inner
    values = {
        "air_in_body": _fraction(sct[inner] < AIR_HU) if inner.any() else 0.0,
        "bone_at_outline": _fraction(sct[shell] > limits.bone_hu),
        "hu_at_limits": _fraction((sct[body] <= hu_range[0]) | (sct[body] >= hu_range[1])),
        "outline_dice": _dice(_outline(sct), body),
    }
    if spread is not None:
        values.update(spread_summary(spread, body, limits.spread_hu))
    if ct is not None:
        values.update(ct_summary(sct, ct, body))
    return QAResult(values, _verdicts(values, limits))


def ct_summary(sct: np.ndarray, ct: np.ndarray, body: np.ndarray) -> dict[str, float]:
    """MAE (HU) of the sCT against the CT inside the body where the CT has values, and the
    fraction of body voxels it has values for."""
    body = np.asarray(body) > 0
    covered = body & np.isfinite(ct)
    if not covered.any():
        return {"ct_mae_hu": float("nan"), "ct_coverage": 0.0}
    error = np.abs(sct[covered].astype(np.float64) - ct[covered])
    return {"ct_mae_hu": float(error.mean()), "ct_coverage": _fraction(covered[body])}


def spread_summary(
    spread: np.ndarray, body: np.ndarray, spread_hu: float = Limits.spread_hu
) -> dict[str, float]:
    """The spread inside the body: its mean (HU), and the fraction of voxels above ``spread_hu``."""
    inside = spread[np.asarray(body) > 0]
    if not inside.size:
        return {"spread_mean_hu": 0.0, "spread_fraction": 0.0}
    return {
        "spread_mean_hu": float(inside.mean()),
        "spread_fraction": _fraction(inside > spread_hu),
    }


def _verdicts(values: dict[str, float], limits: Limits) -> list[str]:
    flags = []
    for key, words in (
        ("air_in_body", "air inside the body outline"),
        ("bone_at_outline", "bone at the body outline"),
        ("hu_at_limits", "HU at the ends of the model's range"),
    ):
        if values[key] > getattr(limits, key):
            flags.append(f"{words}: {values[key]:.1%} of voxels (limit {getattr(limits, key):.1%})")
    if values["outline_dice"] < limits.outline_dice:
        flags.append(
            f"sCT body outline differs from the MR's: Dice {values['outline_dice']:.3f} "
            f"(limit {limits.outline_dice})"
        )
    if values.get("spread_fraction", 0.0) > limits.spread_fraction:
        flags.append(
            f"model unsure: {values['spread_fraction']:.1%} of body voxels spread over "
            f"{limits.spread_hu:g} HU (limit {limits.spread_fraction:.1%})"
        )
    return flags


def _fraction(selected: np.ndarray) -> float:
    return float(np.count_nonzero(selected)) / max(selected.size, 1)


def _outline(sct: np.ndarray) -> np.ndarray:
    outline = sct > OUTLINE_HU
    for z in range(outline.shape[2]):
        outline[:, :, z] = ndimage.binary_fill_holes(outline[:, :, z])
    return outline


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = np.count_nonzero(a) + np.count_nonzero(b)
    return 1.0 if total == 0 else 2.0 * np.count_nonzero(a & b) / total
