"""Batch prediction on Ray Data: the studies listed, read, synthesised and written by Ray, the
model in an actor pool (one model per actor, loaded once), sized to the GPUs or CPUs.

Each actor runs exactly the local path's :func:`~hmss_ray.inference.batch.predict_study` on the
studies it is handed, so a study's outputs are the same files whichever path wrote them; the
driver gathers the rows, writes ``summary.json`` and the QA PDF, and reports the throughput.
On a cluster (``RAY_ADDRESS``, ``ray job submit``) the input and output must be on storage every
node sees (a shared file system here; object storage is read through the same URIs).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hmss_ray.inference.batch import (
    BatchOptions,
    Study,
    StudyResult,
    finish_batch,
    predict_study,
)


@dataclass(frozen=True)
class PoolSize:
    actors: int
    num_gpus: float  # per actor
    num_cpus: float  # per actor


def pool_size(resources: dict[str, float], studies: int) -> PoolSize:
    """One actor per GPU; else one per two CPUs (a volume's inference uses its threads), at
    least one, never more than there are studies."""
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return PoolSize(max(1, min(gpus, studies)), 1.0, 1.0)
    cpus = int(resources.get("CPU", 1))
    return PoolSize(max(1, min(cpus // 2 or 1, studies)), 0.0, float(min(2, max(cpus, 1))))


class _Predictor:
    """A Ray Data actor: one loaded model; a batch of study rows -> their result rows."""

    def __init__(self, model: str, device: str, tta: str | None, options: dict[str, Any]):
        from hmss_ray.inference.synthesizer import Synthesizer

        self.synth = Synthesizer.from_uri(model, device=device, tta=tta)
        self.options = BatchOptions.from_dict(options)

    def __call__(self, rows: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, list] = {"row": []}
        for name, path, ct, target, output in zip(
            rows["name"], rows["path"], rows["ct"], rows["target"], rows["output"], strict=True
        ):
            study = Study(name, Path(path), Path(ct) if ct else None,
                          Path(target) if target else None)  # fmt: skip
            out["row"].append(asdict(predict_study(self.synth, study, Path(output), self.options)))
        return out


def predict_batch_ray(
    model: str,
    studies: list[Study],
    output: Path,
    options: BatchOptions,
    device: str = "auto",
    tta: str | None = None,
) -> tuple[list[StudyResult], dict[str, float]]:
    """The studies through Ray Data; the results in the studies' order, and the throughput."""
    import ray

    from hmss_ray.cluster import init_ray

    init_ray()
    output.mkdir(parents=True, exist_ok=True)
    size = pool_size(ray.cluster_resources(), len(studies))
    items = [
        {
            "name": s.name,
            "path": str(s.path),
            "ct": str(s.ct or ""),
            "target": str(s.target or ""),
            "output": str(output),
        }
        for s in studies
    ]
    start = time.perf_counter()
    rows = (
        ray.data.from_items(items, override_num_blocks=len(items))
        .map_batches(
            _Predictor,
            fn_constructor_kwargs={
                "model": model, "device": device, "tta": tta, "options": options.to_dict(),
            },
            batch_size=1,
            concurrency=size.actors,
            num_gpus=size.num_gpus,
            num_cpus=size.num_cpus,
        )
        .take_all()
    )  # fmt: skip
    seconds = time.perf_counter() - start
    by_name = {row["row"]["study"]: StudyResult(**row["row"]) for row in rows}
    results = [by_name[s.name] for s in studies]
    finish_batch(results, output, options, {"uri": model})
    stats = {"seconds": seconds, "studies_per_min": 60.0 * len(studies) / seconds}
    stats["actors"] = float(size.actors)
    return results, stats
