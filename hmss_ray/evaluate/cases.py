"""Which cases an evaluation scores and where each one's sCT comes from (read or synthesised)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hmss_ray.config import UserError
from hmss_ray.data import synthrad
from hmss_ray.data.manifest import read_manifest
from hmss_ray.data.synthrad import AFFINE_TOLERANCE_MM
from hmss_ray.inference.synthesizer import Synthesizer, synthesize_volume
from hmss_ray.io import read_volume, write_volume
from hmss_ray.io.align import align_to
from hmss_ray.io.formats import find_volume


def select_cases(
    data_dir: str, split: str, shards: str | None, regions: Sequence[str]
) -> tuple[list[synthrad.CaseRef], list[tuple[str, str]]]:
    """The split's case folders, and ``(case id, reason)`` for each case left out."""
    found = {str(ref.id): ref for ref in synthrad.find_cases(data_dir)}
    skipped: list[tuple[str, str]] = []
    if shards:
        manifest = read_manifest(shards)
        wanted = set(manifest.case_ids(split))
        # cases prepare skipped still belong to the split: try them, so the report lists them
        wanted |= {s.case_id for s in manifest.skipped if s.split == split}
        skipped += [(c, f"not found under {data_dir}") for c in sorted(wanted - set(found))]
        refs = [found[c] for c in sorted(wanted & set(found))]
    else:
        refs = [ref for ref in found.values() if ref.id.region in regions]
    no_ct = "MR only (no {}): no reference CT to score against"
    skipped += [(str(r.id), no_ct.format(r.expected_name("ct"))) for r in refs if not r.paired]
    return [r for r in refs if r.paired], skipped


def prediction_path(sct_dir: Path, case_id: synthrad.CaseId) -> Path:
    """The case's sCT in ``sct_dir`` in any readable format (``<case_id>.nii.gz``, ``.mha``,
    ``.nrrd``, a DICOM series as ``<case_id>.zip`` or folder ``<case_id>/``); when there is none,
    the name the case's release uses (``.nii.gz`` for 2023, ``.mha`` for 2025)."""
    found = find_volume(sct_dir, str(case_id))
    return found or sct_dir / f"{case_id}{synthrad.SUFFIXES[case_id.edition][0]}"


def read_prediction(path: Path, case: synthrad.Case) -> np.ndarray:
    """An sCT on the case's grid (same voxels in world space; any storage order)."""
    if not path.exists():
        raise FileNotFoundError(f"no prediction {path}")
    try:
        volume = read_volume(path)
    except UserError as exc:
        raise ValueError(f"prediction {path.name} unreadable ({exc})") from exc
    sct = np.asarray(volume.array, dtype=np.float32)
    if not np.isfinite(sct).all():
        raise ValueError(f"prediction {path.name} has non-finite voxels")
    try:
        aligned = align_to(volume.like(sct), case.affine, case.mr.shape, AFFINE_TOLERANCE_MM)
    except UserError as exc:
        raise ValueError(f"prediction {path.name}: {exc} (the MR's grid)") from exc
    return aligned.array


def sct_for(
    ref: synthrad.CaseRef, case: synthrad.Case, sct_dir: Path, synth: Synthesizer | None = None
) -> np.ndarray:
    """The case's sCT in HU: read from ``sct_dir``, or synthesised and saved there first.

    Synthesis goes through :func:`synthesize_volume`, the code path the HTTP endpoint runs, so a
    model evaluated here and the same model served give the same sCT.
    """
    path = prediction_path(sct_dir, case.id)
    if synth is not None:
        mr, mask = read_volume(ref.file("mr")), read_volume(ref.file("mask"))
        write_volume(synthesize_volume(synth, mr, mask, region=case.id.region), path)
    return read_prediction(path, case)
