"""Writing a phantom data set in a SynthRAD layout, with MR-only and corrupt cases.

2023: ``<out>/Task1/{brain,pelvis}/<id>/{mr,ct,mask}.nii.gz`` and ``<region>/overview/``.
2025: ``<out>/Task1/{HN,TH,AB}/<id>/{mr,ct,mask}.mha`` and ``<region>/overviews/``.
Beside them each case has ``labels`` (the tissue of every voxel, see :class:`~.tissues.T`),
which data-set readers ignore; the overview folder holds ``tissues.csv`` (label -> name, HU, MR).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from hmss_ray.data.phantom.corrupt import CORRUPTIONS, corrupt_case
from hmss_ray.data.phantom.ids import PhantomId
from hmss_ray.data.phantom.regions import EDITIONS, OVERVIEW_DIRS, SUFFIXES
from hmss_ray.data.phantom.render import PhantomCase, case_ids, make_case
from hmss_ray.data.phantom.tissues import tissue_table
from hmss_ray.io import Volume, write_volume


@dataclass
class PhantomSummary:
    """What :func:`write_dataset` wrote: ids by role, and the damage done to each corrupt case."""

    root: Path
    edition: str = "2023"
    paired: list[str] = field(default_factory=list)
    mr_only: list[str] = field(default_factory=list)
    corrupt: dict[str, str] = field(default_factory=dict)


def write_case(
    folder: Path,
    case: PhantomCase,
    with_ct: bool = True,
    suffix: str = ".nii.gz",
    labels: bool = True,
) -> Path:
    """Write ``mr``/``ct``/``mask`` (and ``labels``) into ``folder`` in the format of
    ``suffix`` (``.nii.gz`` or ``.mha``); no ct for an MR-only case."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"mr": case.mr, "mask": case.mask, "ct": case.ct, "labels": case.labels}
    for name, array in arrays.items():
        path = folder / f"{name}{suffix}"
        if (name == "ct" and not with_ct) or (name == "labels" and not labels):
            path.unlink(missing_ok=True)
        else:
            write_volume(Volume(array, case.affine), path)
    return folder


def _plan(
    cases: int, regions: Sequence[str], corrupt: int, mr_only: int
) -> list[tuple[PhantomId, str, str]]:
    """(id, role, corruption) for every case to write, in id order per region."""
    plan = []
    for name in regions:
        ids = case_ids(name, cases + mr_only)
        plan += [(cid, "paired" if i < cases else "mr_only", "") for i, cid in enumerate(ids)]
    for i in range(corrupt):  # corrupt cases follow the others, regions and kinds in turn
        name = regions[i % len(regions)]
        (cid,) = case_ids(name, 1, first=cases + mr_only + 1 + i // len(regions))
        plan.append((cid, "corrupt", CORRUPTIONS[i % len(CORRUPTIONS)]))
    return plan


def check_regions(edition: str, regions: Sequence[str] | None) -> tuple[str, ...]:
    """The regions to write (the edition's own by default); a ValueError names bad ones."""
    if edition not in EDITIONS:
        raise ValueError(f"unknown edition {edition!r}; choose from: {', '.join(EDITIONS)}")
    chosen = tuple(regions) if regions else EDITIONS[edition]
    wrong = [r for r in chosen if r not in EDITIONS[edition]]
    if wrong or not chosen:
        raise ValueError(
            f"regions {wrong or list(chosen)} are not in SynthRAD{edition}; choose from: "
            + ", ".join(EDITIONS[edition])
        )
    return chosen


def write_dataset(
    out: str | Path,
    cases: int = 6,
    regions: Sequence[str] | None = None,
    seed: int = 0,
    corrupt: int = 0,
    mr_only: int = 0,
    shape: Sequence[int] | None = None,
    progress: bool = False,
    edition: str = "2023",
    spacing: Sequence[float] | None = None,
    labels: bool = True,
) -> PhantomSummary:
    """Write a phantom data set in the SynthRAD layout of ``edition`` (see the module doc).

    Args:
        cases: paired cases per region (the region's centres in turn: brain A/B/C, pelvis A/C,
            HN/TH/AB A-E).
        regions: default: every region of the edition.
        corrupt: extra deliberately broken cases (kinds of :data:`CORRUPTIONS` in turn).
        mr_only: extra cases without CT per region (like SynthRAD's validation release).
        shape: fit each region's field of view into at most this many voxels (X, Y, Z).
        spacing: voxel size (mm) for every region; default: the data set's (full resolution).
        labels: also write the tissue-label volume of each case.
    """
    chosen = check_regions(edition, regions)
    suffix = SUFFIXES[edition]
    summary = PhantomSummary(root=Path(out) / "Task1", edition=edition)
    overview: dict[str, list[str]] = {r: ["case_id,centre,sequence,role"] for r in chosen}
    for cid, role, kind in tqdm(
        _plan(cases, chosen, corrupt, mr_only), disable=not progress, desc="phantom", unit="case"
    ):
        case = make_case(cid, seed, shape=shape, spacing=spacing)
        folder = summary.root / cid.region / str(cid)
        write_case(folder, case, with_ct=role != "mr_only", suffix=suffix, labels=labels)
        if role == "corrupt":
            corrupt_case(folder, kind)
            summary.corrupt[str(cid)] = kind
        else:
            getattr(summary, role).append(str(cid))
        overview[cid.region].append(f"{cid},{cid.centre},{case.sequence},{kind or role}")
    for name, lines in overview.items():
        folder = summary.root / name / OVERVIEW_DIRS[edition]  # as in SynthRAD; readers skip it
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"1_{name}_phantom.csv").write_text("\n".join(lines) + "\n")
        (folder / "tissues.csv").write_text(tissue_table())
    return summary


def summary_table(summary: PhantomSummary) -> str:
    """Cases written per region and centre, by kind, then the corrupt ones and what is wrong."""
    rows: Counter[tuple[str, str, str]] = Counter()
    for kind, ids in (("paired", summary.paired), ("mr_only", summary.mr_only)):
        for text in ids:
            case_id = PhantomId.parse(text)
            rows[case_id.region, case_id.centre, kind] += 1
    for text in summary.corrupt:
        case_id = PhantomId.parse(text)
        rows[case_id.region, case_id.centre, "corrupt"] += 1
    lines = [f"{'region':<7} {'centre':<6} {'paired':>6} {'mr_only':>7} {'corrupt':>7}"]
    for name, centre in sorted({(r, c) for r, c, _ in rows}):
        counts = [rows[name, centre, kind] for kind in ("paired", "mr_only", "corrupt")]
        lines.append(f"{name:<7} {centre:<6} {counts[0]:>6} {counts[1]:>7} {counts[2]:>7}")
    lines.append(
        f"{'total':<14} {len(summary.paired):>6} {len(summary.mr_only):>7}"
        f" {len(summary.corrupt):>7}"
    )
    lines += [f"  corrupt {case_id}: {kind}" for case_id, kind in summary.corrupt.items()]
    return "\n".join(lines)
