"""Which series of a DICOM study to synthesise from: rules, and the reason the choice was made.

A study as it arrives from a scanner or a PACS export holds several series: localisers, the MR
sequences, sometimes a CT or secondary captures. :func:`choose_series` keeps the series that can
be an MR volume (modality MR, one stack with consistent geometry, at least ``min_slices``
slices), then applies the user's rules (a SeriesInstanceUID, a SeriesDescription pattern). One
series left is chosen; several are refused with the list, so that a wrong sequence is never
synthesised silently. The reason is kept with the volume (``Volume.meta["series_choice"]``) and
printed by the commands.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from hmss_ray.io.dicom_series import SliceHeader, StackGeometry, stack_geometry
from hmss_ray.io.volume import SeriesError

MIN_SLICES = 3  # fewer is a localiser or a single slice, not a volume to plan on


@dataclass(frozen=True)
class SeriesRule:
    """How to choose among a study's series.

    Args:
        series_uid: the SeriesInstanceUID to take (exactly).
        description: a regular expression searched in SeriesDescription (case-insensitive).
        modality: the modality a candidate must have ("" accepts any).
        min_slices: fewer slices than this is not a volume.
    """

    series_uid: str | None = None
    description: str | None = None
    modality: str = "MR"
    min_slices: int = MIN_SLICES

    def __post_init__(self) -> None:
        if self.description is not None:
            try:
                re.compile(self.description)
            except re.error as exc:
                raise SeriesError(f"--series-description is not a valid pattern: {exc}") from None

    def describe(self) -> str:
        given = [f"SeriesInstanceUID {self.series_uid}"] if self.series_uid else []
        given += [f"SeriesDescription ~ /{self.description}/"] if self.description else []
        return " and ".join(given) or "the only candidate"


@dataclass(frozen=True)
class Choice:
    geometry: StackGeometry
    reason: str  # which rule picked it, and why the others were left


def choose_series(groups: dict[str, list[SliceHeader]], rule: SeriesRule, where: str) -> Choice:
    """The one series of ``groups`` (SeriesInstanceUID -> its slices) that ``rule`` picks."""
    candidates: dict[str, StackGeometry] = {}
    left: list[str] = []
    for uid, slices in sorted(groups.items()):
        why = _not_a_volume(slices, rule)
        if why is None:
            try:
                candidates[uid] = stack_geometry(slices, f"{where}, series {uid}")
                continue
            except SeriesError as exc:
                why = f"inconsistent geometry ({exc})" if len(groups) > 1 else None
                if why is None:
                    raise
        left.append(f"{_label(uid, slices)}: {why}")
    picked = {uid: g for uid, g in candidates.items() if _matches(g.slices[0], rule)}
    if len(picked) == 1:
        uid, geometry = next(iter(picked.items()))
        reason = f"series {_label(uid, geometry.slices)} chosen by {rule.describe()}"
        return Choice(geometry, reason + (f"; left: {'; '.join(left)}" if left else ""))
    listing = "; ".join(_label(uid, g.slices) for uid, g in (picked or candidates).items())
    if not picked and not candidates:
        raise SeriesError(f"{where} holds no {rule.modality or 'image'} volume: {'; '.join(left)}")
    if not picked:
        raise SeriesError(f"{where}: no series matches {rule.describe()}; candidates: {listing}")
    raise SeriesError(
        f"{where} holds {len(picked)} {rule.modality or 'image'} series: choose one with "
        f"--series-uid or --series-description: {listing}"
    )


def _not_a_volume(slices: list[SliceHeader], rule: SeriesRule) -> str | None:
    first = slices[0]
    if rule.modality and first.modality.upper() != rule.modality.upper():
        return f"modality {first.modality}"
    if len(slices) < rule.min_slices and rule.series_uid != first.series_uid:
        return f"{len(slices)} slice(s), not a volume"
    return None


def _matches(header: SliceHeader, rule: SeriesRule) -> bool:
    tests: list[Callable[[], bool]] = []
    if rule.series_uid:
        tests.append(lambda: header.series_uid == rule.series_uid)
    if rule.description:
        pattern = re.compile(rule.description, re.IGNORECASE)
        tests.append(lambda: pattern.search(header.description) is not None)
    return all(test() for test in tests)


def _label(uid: str, slices: list[SliceHeader]) -> str:
    return f"{uid} ({slices[0].describe()}, {len(slices)} slice(s))"
