"""The simple baseline the cascade must beat: a per-centre MR intensity -> CT lookup curve.

Fitted on training slices: inside the mask, the normalised MR of the centre slice is binned on
[-1, 1] and each bin predicts the mean CT of its pixels (both on the [-1, 1] scale); prediction
interpolates linearly between bin centres, and empty bins are skipped. One curve per centre
(SynthRAD centres differ in MR contrast) plus a pooled curve for centres never seen. Outside the
mask it predicts background (-1), as the data layer stores it. It cannot tell dark bone from dark
air, which is exactly what context-aware models are for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BACKGROUND = -1.0
POOLED = "*"


@dataclass
class IntensityBaseline:
    """Binned-mean regression of CT on MR, per centre. ``fit`` then ``predict``."""

    bins: int = 64
    sums: dict[str, np.ndarray] = field(default_factory=dict)
    counts: dict[str, np.ndarray] = field(default_factory=dict)

    def _edges(self) -> np.ndarray:
        return np.linspace(-1.0, 1.0, self.bins + 1)

    def update(self, mr: np.ndarray, ct: np.ndarray, mask: np.ndarray, centre: str) -> None:
        """Add slices: ``mr`` (N, C, S, S) (centre channel used), ``ct``/``mask`` (N, 1, S, S)."""
        mr_c = _centre_channel(mr)
        inside = np.asarray(mask)[:, 0] > 0.5
        x, y = mr_c[inside], np.asarray(ct, dtype=np.float64)[:, 0][inside]
        index = np.clip(np.digitize(x, self._edges()) - 1, 0, self.bins - 1)
        for key in (str(centre), POOLED):
            self.sums.setdefault(key, np.zeros(self.bins))
            self.counts.setdefault(key, np.zeros(self.bins))
            self.sums[key] += np.bincount(index, weights=y, minlength=self.bins)
            self.counts[key] += np.bincount(index, minlength=self.bins)

    def fit(self, batches: Iterable[Mapping[str, Any]]) -> IntensityBaseline:
        """Fit on batches from ``shards.iter_batches`` (they carry a ``centre`` per slice)."""
        for batch in batches:
            centres = np.asarray(batch.get("centre", [POOLED] * len(batch["mr"])), dtype=str)
            for centre in np.unique(centres):
                rows = centres == centre
                self.update(batch["mr"][rows], batch["ct"][rows], batch["mask"][rows], centre)
        if POOLED not in self.counts or not self.counts[POOLED].any():
            raise ValueError("no training pixel inside a mask: cannot fit the baseline")
        return self

    def curve(self, centre: str) -> tuple[np.ndarray, np.ndarray]:
        """(MR bin centres, mean CT) with data, for ``centre`` or the pooled curve."""
        key = str(centre) if str(centre) in self.counts else POOLED
        counts = self.counts[key]
        edges = self._edges()
        x = ((edges[:-1] + edges[1:]) / 2)[counts > 0]
        return x, self.sums[key][counts > 0] / counts[counts > 0]

    def predict(self, mr: np.ndarray, mask: np.ndarray, centre: str) -> np.ndarray:
        """sCT (N, 1, S, S) in [-1, 1] for MR (N, C, S, S) of one centre."""
        x, y = self.curve(centre)
        sct = np.interp(_centre_channel(mr), x, y).astype(np.float32)
        sct[np.asarray(mask)[:, 0] <= 0.5] = BACKGROUND
        return sct[:, None]

    def predict_batch(self, batch: Mapping[str, Any]) -> np.ndarray:
        """Like :meth:`predict` for a batch whose slices may come from several centres."""
        centres = np.asarray(batch.get("centre", [POOLED] * len(batch["mr"])), dtype=str)
        out = np.empty((len(centres), 1, *np.shape(batch["mr"])[-2:]), np.float32)
        for centre in np.unique(centres):
            rows = centres == centre
            out[rows] = self.predict(batch["mr"][rows], batch["mask"][rows], centre)
        return out


def _centre_channel(mr: np.ndarray) -> np.ndarray:
    """(N, C, S, S) -> (N, S, S) float64: the slice itself, without its 2.5D neighbours."""
    mr = np.asarray(mr, dtype=np.float64)
    return mr[:, mr.shape[1] // 2]
