"""Test data in the SynthRAD2025 task-1 layout, written case by case.

``Task1/{HN,TH,AB}/<id>/{mr,ct,mask}.mha``: real MetaImage files written by ``hmss_ray.io``, ids
``1HNA001`` and on, centres A-E in turn, an ``overviews/`` folder per region and one beside the
regions (both must be skipped). The anatomy is the 2025 phantoms' (head-neck, thorax, abdomen) at
any shape; ``python -m hmss_ray.phantom --edition 2025`` writes whole data sets, this writes the
odd case a test needs (MR-only, a chosen shape).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hmss_ray.data.phantom import EDITIONS, make_case
from hmss_ray.data.synthrad import CENTRES_2025, CaseId
from hmss_ray.io import Volume, write_volume

REGIONS_2025 = tuple(EDITIONS["2025"])


def render(case_id: CaseId, shape: tuple[int, int, int], seed: int = 0):
    """The 2025 phantom of this case, its whole field of view in ``shape`` voxels."""
    return make_case(case_id, seed=seed, shape=shape)


def write_case(
    folder: Path, case_id: CaseId, shape: tuple[int, int, int], seed: int = 0, with_ct: bool = True
) -> Path:
    """``mr.mha``, ``mask.mha`` (and ``ct.mha``) of one case into ``folder``."""
    case = render(case_id, shape, seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"mr": case.mr, "mask": case.mask}
    if with_ct:
        arrays["ct"] = case.ct
    for name, array in arrays.items():
        write_volume(Volume(np.asarray(array), case.affine), folder / f"{name}.mha")
    return folder


def write_layout(
    root: Path,
    per_region: int = 2,
    regions: tuple[str, ...] = REGIONS_2025,
    shape: tuple[int, int, int] = (40, 40, 12),
    mr_only: int = 0,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Paired and MR-only cases per region; returns ``{"paired": ids, "mr_only": ids}``."""
    written: dict[str, list[str]] = {"paired": [], "mr_only": []}
    task1 = root / "Task1"
    for region in regions:
        for n in range(1, per_region + mr_only + 1):
            case_id = CaseId(1, region, CENTRES_2025[(n - 1) % len(CENTRES_2025)], n)
            paired = n <= per_region
            write_case(task1 / region / str(case_id), case_id, shape, seed, with_ct=paired)
            written["paired" if paired else "mr_only"].append(str(case_id))
        overviews = task1 / region / "overviews"
        overviews.mkdir(parents=True, exist_ok=True)
        (overviews / f"1_{region}_train.csv").write_text("case_id,centre\n")
    (task1 / "overviews").mkdir(exist_ok=True)
    return written
