"""SynthRAD cases of both releases: ids, finding case folders, loading and validating them.

Layouts (the edition follows from each case's region folder, so nothing needs to be told):

- SynthRAD2023: ``Task1/{brain,pelvis}/<id>/{mr,ct,mask}.nii.gz``, ids like ``1BA001`` (task,
  region letter B or P, centre letter, number), ``overview/`` folders beside the cases.
- SynthRAD2025: ``Task1/{HN,TH,AB}/<id>/{mr,ct,mask}.mha``, ids like ``1HNA001`` (task, region
  HN, TH or AB, centre A-E, number), ``overviews/`` folders beside the cases.

Files are read through :func:`hmss_ray.io.read_volume`, so either format works in either layout
(a folder's own format is looked for first). A case without ``ct`` is MR-only (the validation
releases ship that way): an inference case, not an error. Every problem is reported as a
:class:`Problem` naming the case.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hmss_ray.config import REGION_EDITIONS, DataConfig, Edition, UserError
from hmss_ray.io import read_volume

# the id's region code -> the region's name (its folder under Task1/)
REGION_CODES = {"B": "brain", "P": "pelvis", "HN": "HN", "TH": "TH", "AB": "AB"}
REGION_CODE = {name: code for code, name in REGION_CODES.items()}
CENTRES_2025 = "ABCDE"
SPLITS = ("train", "val", "test")
MODALITIES = ("mr", "ct", "mask")
# per edition, the file suffixes looked for; the first is the release's own format
SUFFIXES = {
    Edition.SYNTHRAD2023: (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd"),
    Edition.SYNTHRAD2025: (".mha", ".mhd", ".nii.gz", ".nii", ".nrrd"),
}
_ID_RE = re.compile(r"^(?P<task>[12])(?P<region>HN|TH|AB|B|P)(?P<centre>[A-Z])(?P<number>\d{3,})$")
AFFINE_TOLERANCE_MM = 1e-3


@dataclass(frozen=True, order=True)
class CaseId:
    """A SynthRAD case id: ``1BA001`` (task 1, brain, centre A, number 1) or ``1HNA001`` (task 1,
    head and neck, centre A, number 1). ``region`` is the region's name (:data:`REGION_CODES`)."""

    task: int
    region: str
    centre: str
    number: int

    @classmethod
    def parse(cls, text: str) -> CaseId:
        match = _ID_RE.match(str(text).strip())
        if not match:
            raise ValueError(
                f"case id {text!r} does not parse: expected <task 1|2><region B|P (SynthRAD2023)"
                " or HN|TH|AB (SynthRAD2025)><centre letter><number>, e.g. 1BA001 or 1HNA001"
            )
        region = REGION_CODES[match["region"]]
        if REGION_EDITIONS[region] is Edition.SYNTHRAD2025 and match["centre"] not in CENTRES_2025:
            raise ValueError(
                f"case id {text!r} does not parse: SynthRAD2025 centres are "
                f"{', '.join(CENTRES_2025)}, not {match['centre']}"
            )
        return cls(int(match["task"]), region, match["centre"], int(match["number"]))

    @property
    def edition(self) -> Edition:
        """The release the case's region belongs to (its layout, format and metrics)."""
        return REGION_EDITIONS[self.region]

    def __str__(self) -> str:
        return f"{self.task}{REGION_CODE[self.region]}{self.centre}{self.number:03d}"


@dataclass(frozen=True)
class CaseRef:
    """A case folder found on disk (nothing loaded yet)."""

    id: CaseId
    path: Path

    def file(self, modality: str) -> Path | None:
        """``<modality>.<suffix>`` in the folder (the release's own format first), or None."""
        for suffix in SUFFIXES[self.id.edition]:
            candidate = self.path / f"{modality}{suffix}"
            if candidate.is_file():
                return candidate
        return None

    def expected_name(self, modality: str) -> str:
        """The file name the release uses: ``mr.nii.gz`` (2023) or ``mr.mha`` (2025)."""
        return f"{modality}{SUFFIXES[self.id.edition][0]}"

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

    Both layouts are recognised (region folders of either release may even sit side by side).
    Folders whose name is not a case id (``overview/``, ``overviews/``, hidden ones) are ignored.
    Sorted by id.
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    if (base / "Task1").is_dir():
        base = base / "Task1"
    region_dirs = [base / r for r in REGION_EDITIONS if (base / r).is_dir()] or [base]
    wanted = set(regions) if regions is not None else set(REGION_EDITIONS)
    found: dict[CaseId, CaseRef] = {}
    for region_dir in region_dirs:
        for child in sorted(region_dir.iterdir()):
            if not child.is_dir() or child.name.startswith("."):
                continue
            try:
                case_id = CaseId.parse(child.name)
            except ValueError:
                continue  # overview(s)/ and anything else that is not a case folder
            if case_id.region in wanted:
                found.setdefault(case_id, CaseRef(case_id, child))
    return [found[k] for k in sorted(found)]


def editions(refs: Iterable[CaseRef]) -> list[Edition]:
    """The releases whose layout the cases come from (sorted; usually one)."""
    return sorted({ref.id.edition for ref in refs})


def _unreadable(path: Path, exc: Exception) -> str:
    detail = str(exc).strip()
    detail = detail.removeprefix(f"{path}: ").removeprefix(f"{path.name}: ")
    wrapper = "not a readable volume ("
    if detail.startswith(wrapper) and detail.endswith(")"):
        detail = detail[len(wrapper) : -1]  # "unreadable (not a readable volume (...))" reads badly
    if not detail or not isinstance(exc, UserError):
        detail = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return f"{path.name}: unreadable ({detail})"


def _read(path: Path, problems: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """Fully read one volume (so truncation shows now, not later); record why it failed."""
    try:
        volume = read_volume(path)
        data = np.asarray(volume.array).astype(np.float32, copy=False)
    except Exception as exc:  # a damaged file can fail in any of the readers' layers
        problems.append(_unreadable(path, exc))
        return None
    if data.ndim != 3:
        problems.append(f"{path.name}: not 3D (shape {tuple(data.shape)})")
        return None
    n_bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if n_bad:
        problems.append(f"{path.name}: {n_bad} non-finite voxels (NaN or inf)")
    return data, np.asarray(volume.affine, dtype=np.float64)


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
                reasons.append(f"missing {ref.expected_name(modality)}")
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
