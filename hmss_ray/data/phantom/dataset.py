"""Writing a phantom data set in the SynthRAD2023 layout, with MR-only and corrupt cases."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from hmss_ray.data.phantom.corrupt import CORRUPTIONS, corrupt_case, save_nifti
from hmss_ray.data.phantom.render import CENTRES, PhantomCase, case_ids, make_case
from hmss_ray.data.synthrad import CaseId


@dataclass
class PhantomSummary:
    """What :func:`write_dataset` wrote: ids by role, and the damage done to each corrupt case."""

    root: Path
    paired: list[str] = field(default_factory=list)
    mr_only: list[str] = field(default_factory=list)
    corrupt: dict[str, str] = field(default_factory=dict)


def write_case(folder: Path, case: PhantomCase, with_ct: bool = True) -> Path:
    """Write ``mr``/``ct``/``mask`` ``.nii.gz`` into ``folder`` (no ct for an MR-only case)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_nifti(folder / "mr.nii.gz", case.mr, case.affine)
    save_nifti(folder / "mask.nii.gz", case.mask, case.affine)
    if with_ct:
        save_nifti(folder / "ct.nii.gz", case.ct, case.affine)
    else:
        (folder / "ct.nii.gz").unlink(missing_ok=True)
    return folder


def _plan(
    cases: int, regions: Sequence[str], corrupt: int, mr_only: int
) -> list[tuple[CaseId, str, str]]:
    """(id, role, corruption) for every case to write, in id order per region."""
    plan = []
    for region in regions:
        ids = case_ids(region, cases + mr_only)
        plan += [(cid, "paired" if i < cases else "mr_only", "") for i, cid in enumerate(ids)]
    for i in range(corrupt):  # corrupt cases follow the others, regions and kinds in turn
        region = regions[i % len(regions)]
        (cid,) = case_ids(region, 1, first=cases + mr_only + 1 + i // len(regions))
        plan.append((cid, "corrupt", CORRUPTIONS[i % len(CORRUPTIONS)]))
    return plan


def write_dataset(
    out: str | Path,
    cases: int = 6,
    regions: Sequence[str] = ("brain", "pelvis"),
    seed: int = 0,
    corrupt: int = 0,
    mr_only: int = 0,
    shape: Sequence[int] | None = None,
    progress: bool = False,
) -> PhantomSummary:
    """Write ``<out>/Task1/<region>/<id>/{mr,ct,mask}.nii.gz`` plus an ``overview/`` per region.

    Args:
        cases: paired cases per region (centres in turn: brain A/B/C, pelvis A/C).
        corrupt: extra deliberately broken cases (kinds of :data:`CORRUPTIONS` in turn).
        mr_only: extra cases without CT per region (like SynthRAD's validation release).
        shape: volume shape (X, Y, Z) for every region; per-region defaults otherwise.
    """
    for region in regions:
        if region not in CENTRES:
            raise ValueError(f"unknown region {region!r}; choose from: {', '.join(CENTRES)}")
    summary = PhantomSummary(root=Path(out) / "Task1")
    overview: dict[str, list[str]] = {r: ["case_id,centre,sequence,role"] for r in regions}
    for cid, role, kind in tqdm(
        _plan(cases, regions, corrupt, mr_only), disable=not progress, desc="phantom", unit="case"
    ):
        case = make_case(cid, seed, shape)
        folder = write_case(summary.root / cid.region / str(cid), case, with_ct=role != "mr_only")
        if role == "corrupt":
            corrupt_case(folder, kind)
            summary.corrupt[str(cid)] = kind
        else:
            getattr(summary, role).append(str(cid))
        overview[cid.region].append(f"{cid},{cid.centre},{case.sequence},{kind or role}")
    for region, lines in overview.items():
        folder = summary.root / region / "overview"  # as in SynthRAD; readers must skip it
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"1_{region}_phantom.csv").write_text("\n".join(lines) + "\n")
    return summary


def summary_table(summary: PhantomSummary) -> str:
    """Cases written per region and centre, by kind, then the corrupt ones and what is wrong."""
    rows: Counter[tuple[str, str, str]] = Counter()
    for kind, ids in (("paired", summary.paired), ("mr_only", summary.mr_only)):
        for text in ids:
            case_id = CaseId.parse(text)
            rows[case_id.region, case_id.centre, kind] += 1
    for text in summary.corrupt:
        case_id = CaseId.parse(text)
        rows[case_id.region, case_id.centre, "corrupt"] += 1
    lines = [f"{'region':<7} {'centre':<6} {'paired':>6} {'mr_only':>7} {'corrupt':>7}"]
    for region, centre in sorted({(r, c) for r, c, _ in rows}):
        counts = [rows[region, centre, kind] for kind in ("paired", "mr_only", "corrupt")]
        lines.append(f"{region:<7} {centre:<6} {counts[0]:>6} {counts[1]:>7} {counts[2]:>7}")
    lines.append(
        f"{'total':<14} {len(summary.paired):>6} {len(summary.mr_only):>7}"
        f" {len(summary.corrupt):>7}"
    )
    lines += [f"  corrupt {case_id}: {kind}" for case_id, kind in summary.corrupt.items()]
    return "\n".join(lines)
