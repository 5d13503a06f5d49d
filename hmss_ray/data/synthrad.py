"""SynthRAD2023 cases: ids, finding case folders, loading and validating them.

Layout: ``Task1/{brain,pelvis}/<id>/{mr,ct,mask}.nii.gz`` (``.nii`` too); ``overview/`` folders are
ignored. A case without ``ct`` is MR-only (the validation release ships that way): it is an
inference case, not an error. Every problem is reported as a :class:`Problem` naming the case.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from hmss_ray.config import DataConfig, UserError

REGIONS = {"B": "brain", "P": "pelvis"}
REGION_LETTERS = {name: letter for letter, name in REGIONS.items()}
SPLITS = ("train", "val", "test")
MODALITIES = ("mr", "ct", "mask")
_ID_RE = re.compile(r"^(?P<task>[12])(?P<region>[BP])(?P<centre>[A-Z])(?P<number>\d{3,})$")
AFFINE_TOLERANCE_MM = 1e-3


@dataclass(frozen=True, order=True)
class CaseId:
    """A SynthRAD case id such as ``1BA001``: task 1, brain, centre A, number 1."""

    task: int
    region: str
    centre: str
    number: int

    @classmethod
    def parse(cls, text: str) -> CaseId:
        match = _ID_RE.match(str(text).strip())
        if not match:
            raise ValueError(
                f"case id {text!r} does not parse: expected <task 1|2><region B|P>"
                "<centre letter><number>, e.g. 1BA001"
            )
        return cls(
            task=int(match["task"]),
            region=REGIONS[match["region"]],
            centre=match["centre"],
            number=int(match["number"]),
        )

    def __str__(self) -> str:
        return f"{self.task}{REGION_LETTERS[self.region]}{self.centre}{self.number:03d}"


@dataclass(frozen=True)
class CaseRef:
    """A case folder found on disk (nothing loaded yet)."""

    id: CaseId
    path: Path

    def file(self, modality: str) -> Path | None:
        """``<modality>.nii.gz`` or ``<modality>.nii`` in the folder, or None."""
        for suffix in (".nii.gz", ".nii"):
            candidate = self.path / f"{modality}{suffix}"
            if candidate.is_file():
                return candidate
        return None

    @property
    def paired(self) -> bool:
        """True when a CT is present (a training pair); False for an MR-only case."""
        return self.file("ct") is not None


@dataclass(frozen=True)
class Problem:
    case_id: str
    reason: str

    def __str__(self) -> str:
        return f"{self.case_id}: {self.reason}"


class CaseError(UserError):
    """A case failed validation; ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class Case:
    """A loaded case: float32 volumes on one grid (ct None for MR-only), uint8 mask, 4x4 affine."""

    id: CaseId
    mr: np.ndarray
    ct: np.ndarray | None
    mask: np.ndarray
    affine: np.ndarray
    path: Path


def find_cases(root: str | Path, regions: Iterable[str] | None = None) -> list[CaseRef]:
    """Case folders under a ``Task1`` folder, a folder holding ``Task1``, or one region folder.

    Folders whose name is not a case id (``overview/``, hidden ones) are ignored. Sorted by id.
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    if (base / "Task1").is_dir():
        base = base / "Task1"
    region_dirs = [base / r for r in REGION_LETTERS if (base / r).is_dir()] or [base]
    wanted = set(regions) if regions is not None else set(REGION_LETTERS)
    found: dict[CaseId, CaseRef] = {}
    for region_dir in region_dirs:
        for child in sorted(region_dir.iterdir()):
            if not child.is_dir() or child.name.startswith("."):
                continue
            try:
                case_id = CaseId.parse(child.name)
            except ValueError:
                continue  # overview/ and anything else that is not a case folder
            if case_id.region in wanted:
                found.setdefault(case_id, CaseRef(case_id, child))
    return [found[k] for k in sorted(found)]


def _unreadable(path: Path, exc: Exception) -> str:
    if isinstance(exc, (EOFError, zlib.error, OSError)):
        return f"{path.name}: unreadable (truncated or corrupt gzip: {exc})"
    return f"{path.name}: unreadable ({type(exc).__name__}: {exc})"


def _read(path: Path, problems: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """Fully read one NIfTI (so truncation shows now, not later); record why it failed."""
    try:
        image = nib.load(path)
        data = np.asanyarray(image.dataobj).astype(np.float32, copy=False)
        affine = np.asarray(image.affine, dtype=np.float64)
    except Exception as exc:
        problems.append(_unreadable(path, exc))
        return None
    if data.ndim != 3:
        problems.append(f"{path.name}: not 3D (shape {tuple(data.shape)})")
        return None
    n_bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if n_bad:
        problems.append(f"{path.name}: {n_bad} non-finite voxels (NaN or inf)")
    return data, affine


def _check_grid(grids: dict[str, tuple[tuple[int, ...], np.ndarray]], problems: list[str]) -> None:
    """Shapes and affines (name -> (shape, affine)) must agree between mr, ct and mask."""
    shapes = {name: shape for name, (shape, _) in grids.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        problems.append(f"shape mismatch: {listed}")
    if "mr" not in grids:
        return
    reference = grids["mr"][1]
    for name, (_, affine) in grids.items():
        diff = float(np.max(np.abs(affine - reference)))
        if diff > AFFINE_TOLERANCE_MM:
            problems.append(f"affine mismatch: {name} differs from mr by up to {diff:g} mm")


def inspect_case(ref: CaseRef, cfg: DataConfig | None = None) -> tuple[Case | None, list[Problem]]:
    """Load and validate one case; the case is None when there is any problem.

    Checks: missing mr/mask, unreadable or truncated files, not 3D, shapes or affines that differ
    between mr/ct/mask, non-finite voxels, an empty mask, CT outside ``[min_ct_hu, max_ct_hu]``.
    """
    cfg = cfg or DataConfig()
    reasons: list[str] = []
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for modality in MODALITIES:
        path = ref.file(modality)
        if path is None:
            if modality != "ct":  # no CT = an MR-only inference case, not a problem
                reasons.append(f"missing {modality}.nii.gz")
            continue
        loaded = _read(path, reasons)
        if loaded is not None:
            arrays[modality] = loaded
    _check_grid({k: (a.shape, affine) for k, (a, affine) in arrays.items()}, reasons)
    if "mask" in arrays and not np.any(arrays["mask"][0] > 0):
        reasons.append("mask: empty (no voxel > 0)")
    if "ct" in arrays:
        ct = arrays["ct"][0]
        finite = ct[np.isfinite(ct)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if lo < cfg.min_ct_hu or hi > cfg.max_ct_hu:
            reasons.append(
                f"ct: HU outside the plausible range [{cfg.min_ct_hu:g}, {cfg.max_ct_hu:g}]"
                f" (min {lo:g}, max {hi:g})"
            )
    problems = [Problem(str(ref.id), reason) for reason in reasons]
    if problems:
        return None, problems
    ct = arrays["ct"][0] if "ct" in arrays else None
    mask = (arrays["mask"][0] > 0).astype(np.uint8)
    case = Case(ref.id, arrays["mr"][0], ct, mask, arrays["mr"][1], ref.path)
    return case, []


def validate_case(path: str | Path | CaseRef, cfg: DataConfig | None = None) -> list[Problem]:
    """Every problem of one case (empty when it is usable)."""
    return inspect_case(_as_ref(path), cfg)[1]


def load_case(path: str | Path | CaseRef, cfg: DataConfig | None = None) -> Case:
    """Load one validated case; raises :class:`CaseError` listing every problem."""
    case, problems = inspect_case(_as_ref(path), cfg)
    if case is None:
        raise CaseError(problems)
    return case


def _as_ref(path: str | Path | CaseRef) -> CaseRef:
    if isinstance(path, CaseRef):
        return path
    folder = Path(path)
    return CaseRef(CaseId.parse(folder.name), folder)
