"""The search objective (``score``, minimised) from validation metrics: docs/selection.md."""

from __future__ import annotations

import math
from collections.abc import Mapping

from hmss_ray.config import TuneConfig, TuneMetric


def objective(metrics: Mapping[str, float], tune: TuneConfig) -> float:
    """``tune.metric`` of body-masked, per-patient validation metrics (mae_hu, ssim, kid).

    ``combined``: ``w_mae * mae_hu / mae_ref + w_ssim * (1 - ssim) + w_kid * kid / kid_ref``; a
    term whose weight is 0 is left out (a NaN KID with ``w_kid: 0`` does not poison the score).
    ``mae_hu``: the challenge MAE alone.
    """
    if tune.metric is TuneMetric.MAE:
        return float(metrics["mae_hu"])
    terms = (
        (tune.w_mae, metrics.get("mae_hu", math.nan) / tune.mae_ref),
        (tune.w_ssim, 1.0 - metrics.get("ssim", math.nan)),
        (tune.w_kid, metrics.get("kid", math.nan) / tune.kid_ref),
    )
    return float(sum(w * v for w, v in terms if w))


def objective_text(tune: TuneConfig) -> str:
    """The objective as a formula with its weights, for reports."""
    if tune.metric is TuneMetric.MAE:
        return "score = MAE (HU, body, mean over patients) (minimised)"
    return (
        f"score = {tune.w_mae:g} * MAE / {tune.mae_ref:g} HU + {tune.w_ssim:g} * (1 - SSIM) "
        f"+ {tune.w_kid:g} * KID / {tune.kid_ref:g} (body-masked, per patient; minimised)"
    )
