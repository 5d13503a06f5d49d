"""The search's distribution term: unbiased KID (torchmetrics) on body-masked slices.

FID on a few hundred slices is mostly bias (two samples of one distribution score ~1.4 at
N = 512 and ~5.4 at N = 64); the kernel inception distance is an unbiased U-statistic, ~0 in
expectation for two samples of one distribution at any size (Binkowski et al. 2018). The
computation is torchmetrics' (``KernelInceptionDistance``: cubic polynomial kernel, gamma 1/d,
coef 1): its point estimate on all slices, and its subset sampling for the noise: the standard
deviation of KID over ``subsets`` random halves, divided by sqrt(2) (the U-statistic's variance
falls as 1/N), is reported as ``kid_std``, its sampling noise at the validation size.

Both images are masked first: pixels outside the body are set to air (-1) in CT and sCT, so
the background a model paints (inference overwrites it) cannot move the term.

Features: the standard FID InceptionV3 (torch-fidelity's ``pt_inception-2015-12-05`` weights,
through torchmetrics) when torch-fidelity and that file are in the torch hub cache; else the
extractor ``metrics.inception_weights`` names (torchvision's ImageNet InceptionV3), else the
seeded random-feature net (:mod:`hmss_ray.metrics.features`). Nothing is downloaded.

Features are kept in fixed slots indexed by the split position of the slice (at most
``max_slices``), so several workers' buffers merge by adding them (an all-reduce).
"""

from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path

import torch
from torch import nn
from torchmetrics.image.kid import KernelInceptionDistance, poly_mmd

from hmss_ray.metrics.features import Kind, fid_features, load_extractor

FID_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's file name
SEED = 0


class FidInception(nn.Module):
    """FID-standard InceptionV3 pool features (torchmetrics, torch-fidelity) of [-1, 1] images."""

    pretrained = True
    label = "InceptionV3 (FID standard)"
    num_features = 2048

    def __init__(self, weights: Path) -> None:
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.net = NoTrainInceptionV3(
            name="inception-v3-compat", features_list=["2048"],
            feature_extractor_weights_path=str(weights),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).repeat(1, 3, 1, 1)
        return self.net(rgb).reshape(len(x), -1)


@functools.lru_cache(maxsize=4)
def load_kid_extractor(configured: str | None = None) -> nn.Module:
    """The FID-standard Inception when available locally, else :func:`load_extractor`'s."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS
    if configured is None and cached.is_file():
        try:
            import torch_fidelity  # noqa: F401
        except ImportError:
            pass
        else:
            return FidInception(cached).eval().requires_grad_(False)
    return load_extractor(Kind.INCEPTION, configured)


def kid(real: torch.Tensor, fake: torch.Tensor, subsets: int = 50) -> tuple[float, float]:
    """(KID, its standard deviation at this size) of (N, F) feature sets; NaN below 2 + 2.

    The estimate is torchmetrics' unbiased MMD^2 over all rows; the spread comes from its
    ``KernelInceptionDistance`` over ``subsets`` random halves, seeded (the global RNG is left as
    it was, so validation does not change training's random stream).
    """
    n = min(len(real), len(fake))
    if n < 4:
        return math.nan, math.nan
    real, fake = real.detach().double(), fake.detach().double()
    value = float(poly_mmd(real, fake))
    with warnings.catch_warnings():  # "saves all features in buffer": a few hundred rows here
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(
            feature=nn.Identity(), subsets=subsets, subset_size=n // 2,
            sync_on_compute=False,  # the features are the whole split's already (all-reduced)
        )  # fmt: skip
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        _, half_std = metric.compute()
    return value, float(half_std) / math.sqrt(2)


class KidTerm:
    """Body-masked KID over the split's first ``max_slices`` slices; see the module docstring."""

    def __init__(self, extractor: nn.Module, max_slices: int) -> None:
        self.extractor = extractor
        self.max_slices = max_slices
        dim = extractor.num_features
        self.real = torch.zeros(max_slices, dim, dtype=torch.float64)
        self.fake = torch.zeros(max_slices, dim, dtype=torch.float64)
        self.filled = torch.zeros(max_slices, dtype=torch.float64)

    @torch.no_grad()
    def update(self, ct: torch.Tensor, sct: torch.Tensor, mask: torch.Tensor, first: int) -> None:
        """Add slices whose split positions start at ``first`` (those past ``max_slices`` are
        ignored); [-1, 1] images, set to -1 outside ``mask`` here."""
        take = min(len(ct), self.max_slices - first)
        if take <= 0:
            return
        inside = mask[:take] > 0.5
        air = torch.full_like(ct[:take], -1.0)
        for side, image in ((self.real, ct), (self.fake, sct)):
            masked = torch.where(inside, image[:take], air).float()
            side[first : first + take] = fid_features(self.extractor, masked).cpu()
        self.filled[first : first + take] = 1.0

    def packed(self) -> torch.Tensor:
        return torch.cat([self.filled, self.real.flatten(), self.fake.flatten()])

    def load_packed(self, vector: torch.Tensor) -> None:
        vector = vector.detach().double().cpu()
        n, dim = self.real.shape
        self.filled = vector[:n].clone()
        self.real = vector[n : n + n * dim].reshape(n, dim).clone()
        self.fake = vector[n + n * dim :].reshape(n, dim).clone()

    def compute(self) -> dict[str, float]:
        """``kid``, ``kid_std`` and ``kid_slices`` over the filled slots."""
        rows = self.filled > 0.5
        value, std = kid(self.real[rows], self.fake[rows])
        return {"kid": value, "kid_std": std, "kid_slices": float(rows.sum())}
