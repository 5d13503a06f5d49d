"""Capacity plan for the full SynthRAD2023 task 1: slices per epoch, shard bytes, epoch time.

The one measured input is ``T``, training throughput in slices per second on one GPU (from the
training benchmark). Everything else follows from the data set and a scaling efficiency:

    train_slices  = round(patients * train_fraction) * slices_per_patient
    slice_bytes   = S^2 * 4 * (2k + 1)  +  S^2 * 4  +  S^2 * 1      (mr, ct float32; mask uint8)
    epoch_seconds = train_slices / (G * T * e(G))
    read_rate     = G * T * e(G) * slice_bytes                      (bytes/s the data path feeds)

with S = data.image_size, k = data.context_slices, G GPUs and e(G) the data-parallel scaling
efficiency (1 for one GPU; placeholders 0.9 within an 8-GPU node, 0.8 across nodes, to be
replaced by measured values).

    python -m infra.capacity --slices-per-s 120
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Region:
    """One task-1 region: patients released with a CT, and typical axial slices per patient."""

    name: str
    patients: int
    slices_per_patient: int
    slice_mm: float


# 180 training patients per region are released with CT (30 validation and 60 test ship without
# it). Slices per patient are typical counts after the organisers' crop to the body mask:
# brain 1 mm slices, 150-250 per head (200 assumed); pelvis 2.5 mm, 90-140 (115 assumed).
REGIONS = (Region("brain", 180, 200, 1.0), Region("pelvis", 180, 115, 2.5))
TRAIN_FRACTION = 0.7  # data.split_fractions[0]: the rest is our own validation and test split
GPU_COUNTS = (1, 8, 32)
# As in configs/brain.yaml and configs/pelvis.yaml: 2.5D with one neighbour each side, 16 per step.
CONTEXT_SLICES = 1
BATCH_SIZE = 16


def default_efficiency(gpus: int) -> float:
    """Placeholder scaling efficiency: 1 GPU, within one NVLink node, across nodes."""
    if gpus == 1:
        return 1.0
    return 0.9 if gpus <= 8 else 0.8


def slice_bytes(image_size: int = 256, context_slices: int = 0) -> int:
    """Uncompressed bytes of one training slice: MR (2k+1 channels) and CT float32, mask uint8."""
    if image_size < 1 or context_slices < 0:
        raise ValueError("image_size must be >= 1 and context_slices >= 0")
    pixels = image_size * image_size
    return (2 * context_slices + 1) * pixels * 4 + pixels * 4 + pixels


def train_slices(region: Region, train_fraction: float = TRAIN_FRACTION) -> int:
    """Slices in one training epoch (every slice of every training patient, once)."""
    if not 0.0 < train_fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
    return round(region.patients * train_fraction) * region.slices_per_patient


def epoch_seconds(slices: int, gpus: int, slices_per_s: float, efficiency: float) -> float:
    """Seconds for one epoch of ``slices`` on ``gpus`` GPUs at ``slices_per_s`` per GPU."""
    if slices_per_s <= 0:
        raise ValueError(f"slices per second per GPU must be > 0, got {slices_per_s}")
    if gpus < 1:
        raise ValueError(f"gpus must be >= 1, got {gpus}")
    if not 0.0 < efficiency <= 1.0:
        raise ValueError(f"efficiency must be in (0, 1], got {efficiency}")
    return slices / (gpus * slices_per_s * efficiency)


@dataclass(frozen=True)
class Row:
    region: str
    gpus: int
    slices: int
    shard_gib: float
    steps: int
    epoch_s: float
    read_mib_s: float


def plan(
    slices_per_s: float,
    gpus: Sequence[int] = GPU_COUNTS,
    train_fraction: float = TRAIN_FRACTION,
    image_size: int = 256,
    context_slices: int = CONTEXT_SLICES,
    batch_size: int = BATCH_SIZE,
    efficiency: dict[int, float] | None = None,
) -> list[Row]:
    """One row per region and GPU count. ``steps`` are optimiser steps per epoch per worker."""
    per_slice = slice_bytes(image_size, context_slices)
    rows = []
    for region in REGIONS:
        slices = train_slices(region, train_fraction)
        for g in gpus:
            eff = (efficiency or {}).get(g, default_efficiency(g))
            rows.append(
                Row(
                    region=region.name,
                    gpus=g,
                    slices=slices,
                    shard_gib=slices * per_slice / 2**30,
                    steps=math.ceil(slices / (g * batch_size)),
                    epoch_s=epoch_seconds(slices, g, slices_per_s, eff),
                    read_mib_s=g * slices_per_s * eff * per_slice / 2**20,
                )
            )
    return rows


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_table(rows: Sequence[Row], slices_per_s: float, context_slices: int) -> str:
    """A Markdown table of ``rows``, headed by the assumptions it rests on."""
    lines = [
        f"T = {slices_per_s:g} slices/s per GPU, data.context_slices = {context_slices}",
        "",
        "| region | GPUs | train slices/epoch | train shards (raw GiB) | steps/epoch/worker "
        "| epoch time | data read (MiB/s, raw) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.region} | {r.gpus} | {r.slices:,} | {r.shard_gib:.1f} | {r.steps:,} "
            f"| {_duration(r.epoch_s)} | {r.read_mib_s:,.0f} |"
        )
    return "\n".join(lines)


def _efficiency(text: str) -> dict[int, float]:
    try:
        pairs = [item.split("=") for item in text.split(",") if item]
        return {int(g): float(e) for g, e in pairs}
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected GPUS=EFF[,GPUS=EFF...]") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.capacity",
        description="Epoch time per GPU count for full SynthRAD2023 task 1 (brain, pelvis).",
        epilog="example: python -m infra.capacity --slices-per-s 120 --efficiency 8=0.9,32=0.75",
    )
    parser.add_argument("--slices-per-s", type=float, required=True, help="T, per GPU (bench)")
    parser.add_argument("--gpus", type=int, nargs="+", default=list(GPU_COUNTS))
    parser.add_argument("--train-fraction", type=float, default=TRAIN_FRACTION)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument(
        "--context-slices", type=int, default=CONTEXT_SLICES, help="k: 2k+1 MR channels"
    )
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="per worker")
    parser.add_argument("--efficiency", type=_efficiency, default=None, help="e.g. 8=0.9,32=0.8")
    args = parser.parse_args(argv)
    try:
        rows = plan(
            args.slices_per_s,
            gpus=args.gpus,
            train_fraction=args.train_fraction,
            image_size=args.image_size,
            context_slices=args.context_slices,
            batch_size=args.batch_size,
            efficiency=args.efficiency,
        )
    except ValueError as exc:
        parser.error(str(exc))
    print(format_table(rows, args.slices_per_s, args.context_slices))
    return 0


if __name__ == "__main__":
    sys.exit(main())
