"""Test-time augmentation and checkpoint ensembles: one sCT from several generator passes.

A :class:`Predictor` holds one or more generators (the registry winner and, with
``inference.ensemble``, the other members the entry holds under ``members/``) and the TTA flips
of ``inference.tta``. Every generator runs on every flipped copy of the batch, each output is
flipped back and mapped to HU, and the sCT is their mean in HU.

The members are gathered when the search writes the registry entry (:func:`write_members`):
``search`` takes the best checkpoint of each of the top trials, ``run`` the best checkpoints the
winner's Ray Train run kept (``train.keep_checkpoints`` of them, by validation score). The entry
then holds ``members/<i>/{generator.safetensors, checkpoint.json}`` and ``ensemble.json`` (where
each member came from, its score and weights version), so inference needs nothing else.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hmss_ray import storage
from hmss_ray.config import TTA, EnsembleSource, ExperimentConfig
from hmss_ray.data.intensity import unit_to_ct
from hmss_ray.models import checkpoint as ckpt

ENSEMBLE_FILE = "ensemble.json"
MEMBERS_DIR = "members"

# flipped in-plane axes of a (B, C, S, S) batch per pass: -2 is left-right, -1 anterior-posterior
FLIPS: dict[TTA, tuple[tuple[int, ...], ...]] = {
    TTA.NONE: ((),),
    TTA.FLIP_LR: ((), (-2,)),
    TTA.FLIPS: ((), (-2,), (-1,), (-2, -1)),
}


@dataclass(frozen=True)
class Member:
    """One ensemble member as ``ensemble.json`` records it."""

    checkpoint: str  # the training checkpoint it was copied from
    score: float | None  # its validation score (lower is better)
    trial_id: str | None
    version: str  # the first 12 hex digits of its generator weights' sha256


@dataclass
class Predictor:
    """Generators and TTA flips; ``predictor(x)``: a (B, C, S, S) batch -> float32 HU (B, S, S)."""

    generators: Sequence[torch.nn.Module]
    tta: TTA
    hu_range: tuple[float, float]

    @property
    def passes(self) -> int:
        return len(self.generators) * len(FLIPS[self.tta])

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> np.ndarray:
        return self.mean_and_spread(x)[0]

    @torch.no_grad()
    def mean_and_spread(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """float32 HU (B, S, S): the mean over every generator and flip, and the voxel-wise
        standard deviation of the passes around it (0 with a single pass): where the members
        and flips disagree, the model is unsure."""
        total: np.ndarray | None = None
        squares: np.ndarray | None = None
        for generator in self.generators:
            for dims in FLIPS[self.tta]:
                xi = torch.flip(x, dims) if dims else x
                high = generator(xi)["high"][:, 0].float()
                high = torch.flip(high, dims) if dims else high  # (B, S, S): same in-plane axes
                hu = unit_to_ct(high.cpu().numpy(), self.hu_range)  # averaged in HU
                total = hu if total is None else total + hu
                # float64: E[x^2] - E[x]^2 of values near 1000 HU cancels badly in float32
                square = np.square(hu, dtype=np.float64)
                squares = square if squares is None else squares + square
        assert total is not None and squares is not None
        mean = total / np.float32(self.passes)
        variance = squares / self.passes - np.square(mean, dtype=np.float64)
        return mean, np.sqrt(np.maximum(variance, 0.0)).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        """What inference does, for the model info (``/v1/model``) and logs."""
        return {"tta": str(self.tta), "members": len(self.generators), "passes": self.passes}


def load_predictor(
    directory: Path,
    generator: torch.nn.Module,
    cfg: ExperimentConfig,
    device: torch.device,
    tta: TTA | str | None = None,
) -> Predictor:
    """The winner ``generator`` plus the members ``directory`` holds when ``cfg`` asks for them.

    Args:
        directory: the local registry entry or checkpoint.
        generator: the winner, loaded already.
        cfg: the winner's config (``inference`` section).
        device: where the members go.
        tta: overrides ``cfg.inference.tta`` when given.
    """
    generators = [generator]
    if cfg.inference.ensemble != EnsembleSource.NONE:
        for path in member_dirs(directory)[: cfg.inference.ensemble_size - 1]:
            generators.append(ckpt.load_generator(path, device)[0])
    chosen = TTA(cfg.inference.tta if tta is None else tta)
    return Predictor(generators, chosen, tuple(cfg.data.hu_range))


def member_dirs(directory: Path) -> list[Path]:
    """The member folders of an entry, in ``ensemble.json`` order (none without that file)."""
    index = Path(directory) / ENSEMBLE_FILE
    if not index.exists():
        return []
    count = len(json.loads(index.read_text())["members"])
    return [Path(directory) / MEMBERS_DIR / str(i) for i in range(1, count)]


def _version(directory: Path) -> str:
    return hashlib.sha256((directory / ckpt.GENERATOR_FILE).read_bytes()).hexdigest()[:12]


def run_checkpoints(checkpoint_uri: str) -> list[tuple[str, float | None]]:
    """(checkpoint, score) of every checkpoint beside ``checkpoint_uri`` in its run, best first."""
    parent = checkpoint_uri.rstrip("/").rsplit("/", 1)[0]
    found = []
    for name in storage.listdir(parent):
        uri = storage.join(parent, name)
        meta_uri = storage.join(uri, ckpt.META_FILE)
        if storage.exists(meta_uri):
            score = storage.read_json(meta_uri).get("metrics", {}).get("score")
            found.append((uri, None if score is None else float(score)))
    return sorted(found, key=lambda item: (item[1] is None, item[1] or 0.0))


def write_members(
    entry_uri: str, cfg: ExperimentConfig, ranked: Sequence[tuple[str, float | None, str | None]]
) -> list[Member]:
    """Copy the ensemble members into the registry entry and write ``ensemble.json``.

    Args:
        entry_uri: the registry entry (its generator is member 0).
        cfg: the search's config (``inference`` says which members and how many).
        ranked: (checkpoint, score, trial id) of the search's trials, best first; the first is
            the winner.
    """
    source, size = cfg.inference.ensemble, cfg.inference.ensemble_size
    if source == EnsembleSource.NONE or not ranked:
        return []
    winner = ranked[0]
    if source == EnsembleSource.SEARCH:
        chosen = list(ranked[:size])
    else:
        others = [(u, s, winner[2]) for u, s in run_checkpoints(winner[0]) if u != winner[0]]
        chosen = [winner, *others[: size - 1]]
    members = []
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / MEMBERS_DIR
        for i, (uri, score, trial) in enumerate(chosen):
            local = ckpt.localize(uri, files=ckpt.GENERATOR_FILES)
            members.append(Member(uri, score, trial, _version(local)))
            if i:  # member 0 is the entry's own generator
                shutil.copytree(local, staged / str(i), ignore=_only(ckpt.GENERATOR_FILES))
        if staged.exists():
            storage.copy_dir(str(staged), storage.join(entry_uri, MEMBERS_DIR))
    record = {"source": str(source), "tta": str(cfg.inference.tta)}
    record["members"] = [asdict(m) for m in members]
    storage.write_json(storage.join(entry_uri, ENSEMBLE_FILE), record)
    return members


def _only(names: Sequence[str]):
    return lambda _dir, present: [n for n in present if n not in names]
