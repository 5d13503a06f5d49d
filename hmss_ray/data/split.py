"""The patient-level split: stratified by (region, centre), deterministic for the seed."""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from hmss_ray.config import DataConfig
from hmss_ray.data.synthrad import CaseId


def _stratum_rng(seed: int, region: str, centre: str) -> np.random.Generator:
    # one generator per stratum: adding cases to one centre leaves the others' order unchanged
    return np.random.default_rng([seed, zlib.crc32(f"{region}/{centre}".encode())])


def _allocate(sizes: list[int], fractions: Sequence[float]) -> list[list[int]]:
    """(val, test) counts per stratum: region totals on target, each slot to the stratum furthest
    below its share, never taking a stratum's last training patient while another has spare."""
    total = sum(sizes)
    counts = [[0, 0] for _ in sizes]
    for j, frac in enumerate(fractions[1:]):
        target = int(np.floor(total * frac + 0.5))
        if frac > 0 and total >= 3:  # 3+ patients: always a val and a test patient
            target = max(target, 1)
        for _ in range(target):
            left = [size - sum(c) for size, c in zip(sizes, counts, strict=True)]
            spare = [i for i, n in enumerate(left) if n > 1] or [i for i, n in enumerate(left) if n]
            if not spare:
                break
            best = max(spare, key=lambda i: (sizes[i] * frac - counts[i][j], left[i], -i))
            counts[best][j] += 1
    return counts


def split_cases(ids: Iterable[CaseId], cfg: DataConfig | None = None) -> dict[str, str]:
    """Patient-level split, stratified by (region, centre), deterministic for ``cfg.split_seed``.

    Returns ``{case id: "train" | "val" | "test" | "unused"}``; "unused" marks training patients
    dropped by ``balance_centres`` (every centre of a region keeps as many as the smallest).
    """
    cfg = cfg or DataConfig()
    strata: dict[str, dict[str, list[CaseId]]] = defaultdict(lambda: defaultdict(list))
    for case_id in sorted(set(ids)):
        strata[case_id.region][case_id.centre].append(case_id)
    out: dict[str, str] = {}
    for region, centres in sorted(strata.items()):
        names = sorted(centres)
        counts = _allocate([len(centres[c]) for c in names], cfg.split_fractions)
        train: dict[str, list[CaseId]] = {}
        for centre, (n_val, n_test) in zip(names, counts, strict=True):
            order = list(centres[centre])
            _stratum_rng(cfg.split_seed, region, centre).shuffle(order)
            for case_id in order[:n_val]:
                out[str(case_id)] = "val"
            for case_id in order[n_val : n_val + n_test]:
                out[str(case_id)] = "test"
            train[centre] = order[n_val + n_test :]
        keep = min((len(v) for v in train.values() if v), default=0)
        for members in train.values():
            for rank, case_id in enumerate(members):
                dropped = cfg.balance_centres and rank >= keep
                out[str(case_id)] = "unused" if dropped else "train"
    return out
