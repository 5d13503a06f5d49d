"""Validation image metrics as the challenges compute them: body only, in HU, per patient.

:class:`PatientMetrics` accumulates, per patient (``case_id``), sums over the slices it sees:

- MAE: ``sum |ct - sct|`` over body pixels / body pixels, unclipped (SynthRAD2023 and 2025).
- PSNR: both clipped to ``hu_range`` (the challenge's range), MSE over body pixels,
  ``10 log10(width^2 / MSE)``.
- SSIM: both clipped, **set to the range's low end (air) outside the body** (as the challenges
  do before any image metric), shifted to start at 0; a 7-pixel uniform-window SSIM map per slice
  (K1 0.01, K2 0.03, sample covariance, data range = width), its 3-pixel border cropped, averaged
  over the body pixels of the cropped mask of all the patient's slices.

Each patient's MAE and PSNR are exactly the challenges' per-volume values over the slices seen
(sums of the same voxels). SSIM is the 2D slice-wise analogue of the challenges' 3D SSIM (2023)
and MS-SSIM (2025): validation slices are 2D and may not form whole volumes, so the 7x7x7 window
becomes 7x7; it shares their masking, so nothing outside the body moves it. The reported values
are means over patients, as the challenges rank.

Sums are kept in a fixed ``(patients, 5)`` table when the patient list is given, so several
workers' tables merge by adding them (an all-reduce); no Ray here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from hmss_ray.metrics.slices import ssim_map, to_hu
from hmss_ray.metrics.synthrad2023 import SSIM_CROP, SSIM_WIN, psnr_from_mse

FIELDS = ("pixels", "abs_hu", "sq_hu", "ssim_sum", "ssim_pixels")
SINGLE = "__all__"  # the one patient of batches that carry no case ids


def masked_hu(
    ct: torch.Tensor, sct: torch.Tensor, mask: torch.Tensor, hu_range: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[-1, 1] images -> (ct, sct) in HU (float64) with the outside of the body set to air
    (``hu_range[0]``), and the boolean body mask."""
    inside = mask > 0.5
    air = float(hu_range[0])
    ct_hu = torch.where(inside, to_hu(ct.double(), hu_range), air)
    sct_hu = torch.where(inside, to_hu(sct.double(), hu_range), air)
    return ct_hu, sct_hu, inside


def slice_sums(
    ct: torch.Tensor, sct: torch.Tensor, mask: torch.Tensor, hu_range: Sequence[float]
) -> torch.Tensor:
    """(B, 5) float64 per-slice sums (``FIELDS``) of [-1, 1] (B, 1, H, W) images."""
    lo, hi = float(hu_range[0]), float(hu_range[1])
    ct_hu, sct_hu, inside = masked_hu(ct, sct, mask, hu_range)
    body = inside.double()
    dims = (1, 2, 3)
    abs_hu = ((sct_hu - ct_hu).abs() * body).sum(dims)  # unclipped, as the challenge's MAE
    a, b = ct_hu.clamp(lo, hi) - lo, sct_hu.clamp(lo, hi) - lo  # background exactly 0
    sq_hu = ((a - b).square() * body).sum(dims)
    c = SSIM_CROP
    if min(ct.shape[-2:]) > 2 * c:
        kept = body[..., c:-c, c:-c]
        smap = ssim_map(a, b, hi - lo, SSIM_WIN)
        ssim_sum, ssim_pixels = (smap * kept).sum(dims), kept.sum(dims)
    else:  # too small for the window: no SSIM from this slice
        ssim_sum = ssim_pixels = torch.zeros_like(abs_hu)
    return torch.stack([body.sum(dims), abs_hu, sq_hu, ssim_sum, ssim_pixels], dim=1)


class PatientMetrics:
    """Per-patient MAE, PSNR and SSIM sums over batches of slices; see the module docstring.

    Args:
        hu_range: the CT range of the data (``data.hu_range``), the challenge's clip range.
        cases: every patient id the split holds, in one order for all workers (fixed table,
            mergeable); None grows the table as patients come (one process only).
    """

    def __init__(self, hu_range: Sequence[float], cases: Sequence[str] | None = None) -> None:
        self.hu_range = (float(hu_range[0]), float(hu_range[1]))
        self.fixed = cases is not None
        self.cases: list[str] = list(cases or [])
        self.table = torch.zeros(len(self.cases), len(FIELDS), dtype=torch.float64)

    def _row(self, case: str) -> int:
        try:
            return self.cases.index(case)
        except ValueError:
            if self.fixed:
                raise KeyError(f"patient {case!r} is not in the validation split's list") from None
            self.cases.append(case)
            self.table = torch.cat([self.table, torch.zeros(1, len(FIELDS), dtype=torch.float64)])
            return len(self.cases) - 1

    @torch.no_grad()
    def update(
        self,
        ct: torch.Tensor,
        sct: torch.Tensor,
        mask: torch.Tensor,
        case_ids: Sequence[str] | None = None,
    ) -> None:
        """Add a batch of [-1, 1] slices; ``case_ids`` names each slice's patient (None: one)."""
        sums = slice_sums(ct, sct, mask, self.hu_range).cpu()
        ids = [SINGLE] * len(sums) if case_ids is None else [str(c) for c in case_ids]
        for case, row in zip(ids, sums, strict=True):
            index = self._row(case)  # may grow the table: look it up before indexing
            self.table[index] += row

    def packed(self) -> torch.Tensor:
        """The table as one float64 vector of sums (merge several workers' by adding)."""
        return self.table.flatten().clone()

    def load_packed(self, vector: torch.Tensor) -> None:
        self.table = vector.detach().double().cpu().reshape(len(self.cases), len(FIELDS)).clone()

    def per_patient(self) -> dict[str, dict[str, float]]:
        """``{case: {"mae_hu", "psnr", "ssim"}}`` of every patient with body pixels."""
        width = self.hu_range[1] - self.hu_range[0]
        out = {}
        for case, row in zip(self.cases, self.table.tolist(), strict=True):
            pixels, abs_hu, sq_hu, ssim_sum, ssim_pixels = row
            if pixels <= 0:
                continue
            out[case] = {
                "mae_hu": abs_hu / pixels,
                "psnr": psnr_from_mse(sq_hu / pixels, width),
                "ssim": ssim_sum / ssim_pixels if ssim_pixels > 0 else math.nan,
            }
        return out

    def compute(self) -> dict[str, float]:
        """Means over patients of ``mae_hu``, ``psnr`` (finite values) and ``ssim``."""
        rows = self.per_patient()
        if not rows:
            raise ValueError("no body pixel was seen in the validation slices")
        out: dict[str, float] = {"patients": float(len(rows))}
        for key in ("mae_hu", "psnr", "ssim"):
            values = np.array([r[key] for r in rows.values()], dtype=np.float64)
            finite = values[np.isfinite(values)]
            out[key] = float(finite.mean()) if finite.size else math.nan
        return out
