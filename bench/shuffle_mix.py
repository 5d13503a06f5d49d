"""How many patients a training batch mixes, by shard size and shuffle buffer (seconds, no Ray).

A simulation of the training stream's two shuffles: the per-epoch file order
(``hmss_ray.data.stream.epoch_order``) over shards that hold whole patients in split order, then
a local shuffle buffer of ``train.shuffle_buffer`` rows from which each batch is drawn at random
(Ray Data's ``local_shuffle_buffer_size``: batches come once the buffer holds that many rows; the
buffer is refilled as rows leave). Reports the mean number of distinct patients per batch.

    python -m bench.shuffle_mix --json /tmp/shuffle_mix.json
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from bench import command_line, write_json

# slices per patient on the region contracts: pelvis/brain (2023, 2.5-3 mm) ~100, 2025 ~200
CASES = {"2023 (100 slices/patient)": 100, "2025 (200 slices/patient)": 200}
SHARDS = (512, 256, 128, 64)


def patients_per_batch(slices: int, patients: int, per_shard: int, buffer: int, batch: int,
                       seed: int = 0) -> float:  # fmt: skip
    """Mean distinct patients per batch over one epoch of the simulated stream."""
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(patients), slices)  # split order: patient after patient
    shards = [rows[i : i + per_shard] for i in range(0, len(rows), per_shard)]
    stream = np.concatenate([shards[i] for i in rng.permutation(len(shards))])
    pool, pos, counts = list(stream[:buffer]), buffer, []
    while len(pool) >= batch:
        picked = rng.choice(len(pool), batch, replace=False)
        counts.append(len({pool[i] for i in picked}))
        for i in sorted(picked, reverse=True):
            pool.pop(i)
        pool.extend(stream[pos : pos + batch])
        pos += batch
    return float(np.mean(counts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--buffer", type=int, default=256, help="train.shuffle_buffer rows")
    parser.add_argument("--batch", type=int, default=16, help="train.batch_size")
    parser.add_argument("--patients", type=int, default=60)
    parser.add_argument("--json", help="write the results as JSON to this path")
    args = parser.parse_args(argv)
    result: dict = {"command": command_line(), "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                    "machine": platform.node() or "unknown", "buffer": args.buffer,
                    "batch": args.batch, "patients_per_batch": {}}  # fmt: skip
    for name, slices in CASES.items():
        row = {str(s): patients_per_batch(slices, args.patients, s, args.buffer, args.batch)
               for s in SHARDS}  # fmt: skip
        result["patients_per_batch"][name] = row
        print(name, " ".join(f"shard {k}: {v:.2f}" for k, v in row.items()))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
