"""What a batch's studies are (:func:`find_studies`): the input itself when it is a file; a
folder with DICOM only, its slices at the top level (its other series may sit in subfolders); a
folder of DICOM subfolders all of one StudyInstanceUID. Otherwise every entry of the input folder
is a study: a volume file (NIfTI, MetaImage, NRRD), a DICOM ``.zip`` or ``.dcm`` (e.g. an
Enhanced MR), or a DICOM folder (its series anywhere below it). Hidden entries are ignored. A
study's CT and dose target, when given, are found by its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hmss_ray.config import UserError
from hmss_ray.io.formats import find_volume

DICOM_SUFFIXES = (".dcm", ".ima")


@dataclass(frozen=True)
class Study:
    name: str  # the output folder's name
    path: Path
    ct: Path | None = None  # a CT of the same patient and frame of reference, for QA
    target: Path | None = None  # a target mask for the dose check (with ct and options.dose)


def find_studies(root: Path, ct: Path | None = None, target: Path | None = None) -> list[Study]:
    """The studies under ``root`` (see the module docstring), sorted by name.

    Args:
        root: one study, or a folder of studies.
        ct: for one study, its CT (a volume file or DICOM folder/zip); for a folder of studies,
            a folder holding each study's CT under the study's name (``<ct>/<study>.nii.gz``,
            any readable suffix, or a DICOM folder ``<ct>/<study>/``); a study without one
            there has no CT.
        target: the dose check's target mask, the same way (a file, or a folder of masks by
            study name).
    """
    if not root.exists():
        raise UserError(f"{root}: no such file or folder")
    for path, flag in ((ct, "--ct"), (target, "--target")):
        if path is not None and not path.exists():
            raise UserError(f"{path}: no such file or folder ({flag})")
    if not is_batch(root):
        return [Study(_stem(root), root, ct, target)]
    for path, flag in ((ct, "--ct"), (target, "--target")):
        if path is not None and not path.is_dir():
            raise UserError(f"{flag} {path}: for a folder of studies, give a folder named by study")
    aside = {p.resolve() for p in (ct, target) if p is not None}  # inside the input: no study
    studies = [
        Study(
            _stem(p),
            p,
            None if ct is None else find_volume(ct, _stem(p)),
            None if target is None else find_volume(target, _stem(p)),
        )
        for p in sorted(root.iterdir())
        if not p.name.startswith(".") and p.resolve() not in aside
    ]
    if not studies:
        raise UserError(f"{root} holds no study")
    return studies


def is_batch(root: Path) -> bool:
    """Whether ``root`` is a folder of studies (not one volume file or one DICOM study)."""
    if not root.is_dir():
        return False
    entries = _visible(root)
    uids = {entry: _study_uid(entry) for entry in entries}
    if any(uid is None for uid in uids.values()):  # a NIfTI, MetaImage, NRRD or zip
        return True
    if any(entry.is_file() for entry in entries):  # DICOM slices at the top: one study
        return False
    return len(set(uids.values())) > 1  # DICOM folders: one study, or one each


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _study_uid(entry: Path) -> str | None:
    """The StudyInstanceUID of a DICOM file, or of the first DICOM file in a folder (searched
    in name order, a few hundred files at most); None for anything else."""
    files = [entry] if entry.is_file() else sorted(p for p in entry.rglob("*") if p.is_file())
    for path in files[:256]:
        if path.name.startswith(".") or not _is_dicom_file(path):
            continue
        import pydicom

        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
        except Exception:  # not readable: the study's own read says why
            return f"unreadable:{path}"
        return str(ds.get("StudyInstanceUID", f"none:{path}"))
    return None


def _is_dicom_file(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".zip", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return name
