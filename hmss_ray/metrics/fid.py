"""Fréchet distance of feature statistics (FID), with running statistics of bounded memory."""

from __future__ import annotations

import torch


def frechet_distance(
    mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor
) -> float:
    """``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` in float64.

    The trace of the matrix square root is the sum of square roots of the eigenvalues of S1 S2
    (real and non-negative in exact arithmetic; round-off below zero is clamped).
    """
    mu1, mu2, s1, s2 = (t.double().cpu() for t in (mu1, mu2, sigma1, sigma2))
    eig = torch.linalg.eigvals(s1 @ s2).real.clamp(min=0)
    value = (mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * eig.sqrt().sum()
    return float(value.clamp(min=0))


class FeatureStats:
    """Running mean and covariance of feature vectors (float64), bounded memory."""

    def __init__(self) -> None:
        self.n = 0
        self.total: torch.Tensor | None = None
        self.outer: torch.Tensor | None = None

    def update(self, feats: torch.Tensor) -> None:
        feats = feats.detach().double().cpu()
        if self.total is None:
            self.total = torch.zeros(feats.shape[1], dtype=torch.float64)
            self.outer = torch.zeros(feats.shape[1], feats.shape[1], dtype=torch.float64)
        self.n += feats.shape[0]
        self.total += feats.sum(0)
        self.outer += feats.T @ feats

    def packed(self, dim: int) -> torch.Tensor:
        """``[n, total (dim), outer (dim * dim)]`` as one float64 vector (zeros when nothing was
        seen): plain sums, so the statistics of several workers merge by adding (an all-reduce)."""
        total = torch.zeros(dim, dtype=torch.float64) if self.total is None else self.total
        outer = torch.zeros(dim * dim, dtype=torch.float64) if self.outer is None else self.outer
        count = torch.tensor([float(self.n)], dtype=torch.float64)
        return torch.cat([count, total.flatten(), outer.flatten()])

    @classmethod
    def unpacked(cls, vector: torch.Tensor, dim: int) -> FeatureStats:
        """The statistics :meth:`packed` (or a sum of packed vectors) describes."""
        vector = vector.detach().double().cpu()
        stats = cls()
        stats.n = round(float(vector[0]))
        stats.total = vector[1 : 1 + dim].clone()
        stats.outer = vector[1 + dim : 1 + dim + dim * dim].reshape(dim, dim).clone()
        return stats

    def mean_cov(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.n < 2 or self.total is None or self.outer is None:
            raise ValueError("FID needs at least 2 slices on each side")
        mu = self.total / self.n
        cov = (self.outer - self.n * torch.outer(mu, mu)) / (self.n - 1)  # unbiased, as np.cov
        return mu, cov


def fid(stats_real: FeatureStats, stats_fake: FeatureStats) -> float:
    return frechet_distance(*stats_real.mean_cov(), *stats_fake.mean_cov())
