"""``manifest.json``: what a shard root holds, as typed records, written last and read by everyone.

The manifest lists every shard (so readers never list a folder and never see a half-written file),
every case with where it came from and how it was mapped onto the slices, the cases skipped with
their reasons, and the hashes that tie shards to the config that made them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from hmss_ray import storage

FORMAT = "hmss-ray-shards/2"  # 2: slices on the geometry contract grid
MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test", "infer")


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    return split


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class ShardEntry:
    """One Parquet file: ``<split>/part-<seq>-<sha256[:16]>.parquet``."""

    path: str
    split: str
    rows: int
    bytes: int
    sha256: str
    cases: list[str]


@dataclass(frozen=True)
class CaseEntry:
    """One prepared case: its split, where it came from, and how it became slices.

    ``source_grid`` is the grid of the case's files; ``grid`` the contract grid its slices come
    from (``slice_indices`` index its axis 2, ``crop_box`` is the canvas on it). Body voxels are
    counted on the contract grid; ``body_voxels_lost`` of them lie outside the canvas.
    """

    split: str
    region: str
    centre: str
    paired: bool
    source: str
    slices: int
    slice_indices: list[int]
    crop_box: dict[str, Any]
    mr_norm: dict[str, float]
    source_grid: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, Any] = field(default_factory=dict)
    body_voxels: int = 0
    body_voxels_lost: int = 0
    body_fraction_lost: float = 0.0


@dataclass(frozen=True)
class SkippedCase:
    """A case left out, with every reason (split ``none`` when it failed validation)."""

    case_id: str
    split: str
    source: str
    reasons: list[str]


@dataclass(frozen=True)
class Manifest:
    """Everything a shard root holds; ``cases`` maps case id -> :class:`CaseEntry`."""

    data_hash: str
    data_config: dict[str, Any]
    content_hash: str
    source: str
    image_size: int
    context_slices: int
    in_channels: int
    hu_range: list[float]
    columns: dict[str, Any]
    counts: dict[str, Any]
    shards: list[ShardEntry]
    cases: dict[str, CaseEntry]
    inference_only: list[str] = field(default_factory=list)
    skipped: list[SkippedCase] = field(default_factory=list)
    unused: list[dict[str, str]] = field(default_factory=list)
    # the contract the slices follow: orientation, spacing per prepared region, max_body_loss
    geometry: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT

    def shards_of(self, split: str) -> list[ShardEntry]:
        """The shards of ``split`` in the order they were written."""
        return [s for s in self.shards if s.split == check_split(split)]

    def slices_in(self, split: str) -> int:
        return sum(s.rows for s in self.shards_of(split))

    def case_ids(self, split: str) -> list[str]:
        """Ids of the cases prepared into ``split``, sorted."""
        return sorted(k for k, v in self.cases.items() if v.split == split)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        data = dict(data)
        data["shards"] = [_from_dict(ShardEntry, s) for s in data.get("shards", [])]
        data["cases"] = {k: _from_dict(CaseEntry, v) for k, v in data.get("cases", {}).items()}
        data["skipped"] = [_from_dict(SkippedCase, s) for s in data.get("skipped", [])]
        return _from_dict(cls, data)


def count_slices(cases: dict[str, CaseEntry]) -> dict[str, Any]:
    """``{split: {region: {centre: {"cases": n, "slices": n}}}}`` from the case entries."""
    counts: dict[str, Any] = {}
    for info in cases.values():
        cell = (
            counts.setdefault(info.split, {})
            .setdefault(info.region, {})
            .setdefault(info.centre, {"cases": 0, "slices": 0})
        )
        cell["cases"] += 1
        cell["slices"] += info.slices
    return counts


def write_manifest(root_uri: str, manifest: Manifest) -> bool:
    """Write ``manifest.json`` unless identical bytes are there already; True when written."""
    uri = storage.join(root_uri, MANIFEST)
    text = json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n"
    if storage.exists(uri) and storage.read_text(uri) == text:
        return False
    storage.write_text(uri, text)
    return True


def read_manifest(root_uri: str) -> Manifest:
    """The manifest of a shard root; FileNotFoundError says how to make one."""
    uri = storage.join(root_uri, MANIFEST)
    if not storage.exists(uri):
        raise FileNotFoundError(
            f"no {MANIFEST} under {root_uri}: run `hmss-ray prepare -o {root_uri}`"
        )
    return Manifest.from_dict(storage.read_json(uri))


def summary_table(manifest: Manifest) -> str:
    """The summary prepare prints: cases and slices per split/region/centre, then the rest."""
    lines = [f"{'split':<6} {'region':<7} {'centre':<6} {'cases':>6} {'slices':>7}"]
    total_cases = total_slices = 0
    for split in SPLITS:
        for region, centres in sorted(manifest.counts.get(split, {}).items()):
            for centre, cell in sorted(centres.items()):
                lines.append(
                    f"{split:<6} {region:<7} {centre:<6} {cell['cases']:>6} {cell['slices']:>7}"
                )
                total_cases += cell["cases"]
                total_slices += cell["slices"]
    lines.append(f"{'total':<22} {total_cases:>6} {total_slices:>7}")
    lines.append(f"shards: {len(manifest.shards)}, data_hash {manifest.data_hash}")
    if manifest.geometry:
        lines.append(geometry_line(manifest))
    if manifest.inference_only:
        lines.append(
            f"inference-only (MR only, split 'infer'): {', '.join(manifest.inference_only)}"
        )
    if manifest.unused:
        lines.append(
            f"unused by balance_centres: {', '.join(u['case_id'] for u in manifest.unused)}"
        )
    lines.append(f"skipped: {len(manifest.skipped)} case(s)" + (":" if manifest.skipped else ""))
    for entry in manifest.skipped:
        lines += [f"  {entry.case_id}  {reason}" for reason in entry.reasons]
    return "\n".join(lines)


def geometry_line(manifest: Manifest) -> str:
    """``geometry: RAS, brain 1x1x1 mm, ...; canvas 256 px; body voxels lost: 0 of N``."""
    geo = manifest.geometry
    spacing = ", ".join(
        f"{region} {'x'.join(f'{v:g}' for v in mm)} mm"
        for region, mm in sorted(geo.get("spacing", {}).items())
    )
    body = sum(c.body_voxels for c in manifest.cases.values())
    lost = sum(c.body_voxels_lost for c in manifest.cases.values())
    return (
        f"geometry: {geo.get('orientation')}, {spacing}; canvas {manifest.image_size} px; "
        f"body voxels lost to the canvas: {lost} of {body}"
    )
