"""Which format a path or an upload is, and the one read/write entry point for each.

| format | read | write |
|---|---|---|
| NIfTI | ``.nii``, ``.nii.gz`` | ``.nii``, ``.nii.gz`` |
| MetaImage | ``.mha``, ``.mhd`` | ``.mha``, ``.mhd`` |
| NRRD | ``.nrrd``, ``.nhdr`` | ``.nrrd``, ``.nhdr`` |
| DICOM | a folder, a ``.zip``, a ``.dcm`` file | a CT series: a folder or a ``.zip`` |

A path with another suffix is recognised by its first bytes when it can be; uploads (bytes) always
are. Every read takes the ``io`` limits (the defaults when none are given).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from hmss_ray.config import IOConfig, UserError
from hmss_ray.io.volume import UnreadableVolume, Volume

if TYPE_CHECKING:
    from hmss_ray.io.dicom_select import SeriesRule
    from hmss_ray.io.dicom_write import SeriesInfo


class Format(StrEnum):
    NIFTI = "nifti"
    MHA = "mha"  # MetaImage
    NRRD = "nrrd"
    DICOM = "dicom"  # a series: folder or zip in, CT series out


SUFFIXES = {
    ".nii.gz": Format.NIFTI,
    ".nii": Format.NIFTI,
    ".mha": Format.MHA,
    ".mhd": Format.MHA,
    ".nrrd": Format.NRRD,
    ".nhdr": Format.NRRD,
    ".zip": Format.DICOM,
    ".dcm": Format.DICOM,
}
# what an upload answer is sent as, and the file name it suggests
MEDIA_TYPES = {
    Format.NIFTI: ("application/gzip", "sct.nii.gz"),
    Format.MHA: ("application/octet-stream", "sct.mha"),
    Format.NRRD: ("application/octet-stream", "sct.nrrd"),
    Format.DICOM: ("application/zip", "sct_dicom.zip"),
}
SUPPORTED = (
    "NIfTI (.nii, .nii.gz), MetaImage (.mha, .mhd), NRRD (.nrrd, .nhdr), DICOM (folder, .zip)"
)


def sniff(prefix: bytes) -> Format | None:
    """The format of bytes from their first ~1 KB, or None. A gzip is taken for NIfTI."""
    if prefix[:2] == b"\x1f\x8b" or prefix[344:348] in (b"n+1\0", b"ni1\0"):
        return Format.NIFTI
    if prefix[4:8] == b"n+2\0" or prefix[:4] in (b"\x1c\x02\0\0", b"\0\0\x02\x1c"):
        return Format.NIFTI  # NIfTI-2: magic at byte 4, sizeof_hdr 540 in either byte order
    if prefix[:2] == b"PK" or prefix[128:132] == b"DICM":
        return Format.DICOM
    if prefix[:7] == b"NRRD000":
        return Format.NRRD
    text = prefix[:256].lstrip()
    if text.startswith((b"ObjectType", b"NDims", b"ObjectSubType", b"Comment")):
        return Format.MHA
    if prefix[:4] in (b"\x5c\x01\0\0", b"\0\0\x01\x5c"):  # NIfTI-1 sizeof_hdr 348
        return Format.NIFTI
    return None


def format_to_read(path: str | Path) -> Format:
    """The format of an input path: a folder is a DICOM series, else the suffix or first bytes."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "no such file or folder", str(path))
    if path.is_dir():
        return Format.DICOM
    found = _by_suffix(path)
    if found is None:
        with path.open("rb") as handle:
            found = sniff(handle.read(1024))
    if found is None:
        raise UnreadableVolume(f"{path}: not a recognised volume format; supported: {SUPPORTED}")
    return found


def format_to_write(path: str | Path) -> Format:
    """The format an output path asks for: its suffix; a folder (or no suffix) is a DICOM series."""
    text = str(path)
    path = Path(text)
    if path.is_dir() or text.endswith(("/", "\\")) or not path.suffix:
        return Format.DICOM
    found = _by_suffix(path)
    if found is None or path.suffix.lower() == ".dcm":
        raise UserError(
            f"cannot tell the output format of {text!r}: end it in .nii, .nii.gz, .mha, .mhd, "
            ".nrrd or .nhdr, or give a folder or a .zip for a DICOM CT series"
        )
    return found


def read_volume(
    path: str | Path, limits: IOConfig | None = None, series: SeriesRule | None = None
) -> Volume:
    """A volume file or DICOM series with its data and geometry, within ``limits``.

    Args:
        path: a NIfTI, MetaImage or NRRD file, or a DICOM folder / ``.zip`` / ``.dcm``.
        limits: the ``io`` config section (default: its defaults).
        series: which series of a DICOM study to read (default: the only series, or of several
            the only MR volume; :mod:`hmss_ray.io.dicom_select`).
    """
    limits = limits or IOConfig()
    fmt = format_to_read(path)
    if fmt is Format.DICOM:
        from hmss_ray.io.dicom_read import read_dicom

        return read_dicom(path, limits, series)
    if fmt is Format.NIFTI:
        from hmss_ray.io.nifti import read_nifti

        return read_nifti(path, limits)
    from hmss_ray.io.itk import read_itk

    return read_itk(path, limits)


def write_volume(volume: Volume, path: str | Path, *, series: SeriesInfo | None = None) -> Path:
    """Write ``volume`` in the format ``path`` asks for (see :func:`format_to_write`).

    Args:
        volume: the image; an int16 sCT on its grid.
        path: the output file, or a folder / ``.zip`` for a DICOM CT series.
        series: :class:`~hmss_ray.io.dicom_write.SeriesInfo` for a DICOM series (patient,
            description); by default what ``volume.meta["dicom"]`` carries, else new and empty.
    """
    fmt = format_to_write(path)
    if fmt is Format.DICOM:
        from hmss_ray.io.dicom_write import write_dicom_series

        return write_dicom_series(volume, path, series)
    if fmt is Format.NIFTI:
        from hmss_ray.io.nifti import write_nifti

        return write_nifti(volume, path)
    from hmss_ray.io.itk import write_itk

    return write_itk(volume, path)


def volume_from_bytes(data: bytes, limits: IOConfig, what: str = "MR") -> Volume:
    """An upload: NIfTI (gzipped or not), MetaImage ``.mha``, NRRD, or a zipped DICOM series."""
    if not data:
        raise UnreadableVolume(f"the {what} is empty")
    fmt = sniff(bytes(data[:1024]))  # data may be a memoryview (a part of a multipart body)
    if fmt is Format.NIFTI:
        from hmss_ray.io.nifti import nifti_from_bytes

        return nifti_from_bytes(data, limits, what)
    if fmt is Format.DICOM:
        from hmss_ray.io.dicom_read import dicom_from_bytes

        return dicom_from_bytes(data, limits, what)
    if fmt in (Format.MHA, Format.NRRD):
        from hmss_ray.io.itk import itk_from_bytes

        return itk_from_bytes(data, ".mha" if fmt is Format.MHA else ".nrrd", limits, what)
    raise UnreadableVolume(
        f"the {what} is not a recognised volume: send NIfTI (.nii, .nii.gz), MetaImage (.mha), "
        "NRRD (.nrrd) or a zip of one DICOM series"
    )


def volume_to_bytes(
    volume: Volume, fmt: Format | str, series: SeriesInfo | None = None, compresslevel: int = 1
) -> bytes:
    """``volume`` as the bytes of one file: ``.nii.gz``, ``.mha``, ``.nrrd`` or a DICOM zip.

    ``compresslevel`` is the ``.nii.gz``'s gzip level (0: stored, no compression time).
    """
    fmt = Format(fmt)
    if fmt is Format.DICOM:
        from hmss_ray.io.dicom_write import dicom_series_bytes

        return dicom_series_bytes(volume, series)
    if fmt is Format.NIFTI:
        from hmss_ray.io.nifti import nifti_bytes

        return nifti_bytes(volume, compresslevel)
    from hmss_ray.io.itk import itk_bytes

    return itk_bytes(volume, ".mha" if fmt is Format.MHA else ".nrrd")


def find_volume(folder: str | Path, stem: str) -> Path | None:
    """``<folder>/<stem>`` in any readable format (``.nii.gz`` first), or a folder ``stem``."""
    folder = Path(folder)
    for suffix in SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return folder / stem if (folder / stem).is_dir() else None


def _by_suffix(path: Path) -> Format | None:
    name = path.name.lower()
    for suffix, fmt in SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    return None
