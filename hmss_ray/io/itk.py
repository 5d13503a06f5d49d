"""MetaImage (``.mha``, ``.mhd``) and NRRD through SimpleITK, geometry converted LPS <-> RAS.

ITK describes a grid in LPS+ world coordinates (origin, spacing, direction); NIfTI affines and
:class:`~hmss_ray.io.volume.Volume` use RAS+. Flipping the x and y axes converts one to the other:
``affine = F @ [direction @ diag(spacing) | origin]`` with ``F = diag(-1, -1, 1)``.

The header is read first (``ReadImageInformation``) and checked against the ``io`` limits; only
then does ITK allocate and inflate the voxels, into a buffer of the size the header declared.
An upload's header is never given to ITK as sent: see :func:`itk_from_bytes`.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np

from hmss_ray.config import IOConfig
from hmss_ray.io.limits import MAX_DEFLATE_RATIO, check_voxels
from hmss_ray.io.text_header import MAX_HEADER_BYTES, metaimage_text, parse_metaimage, parse_nrrd
from hmss_ray.io.volume import UnreadableVolume, Volume, library_failure

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")


def affine_from_itk(image) -> np.ndarray:
    """The RAS+ 4x4 affine of a SimpleITK image or reader (voxel index (x, y, z) -> world mm)."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = LPS_TO_RAS @ direction @ np.diag(spacing)
    affine[:3, 3] = LPS_TO_RAS @ np.asarray(image.GetOrigin(), dtype=np.float64)
    return affine


def set_itk_geometry(image, affine: np.ndarray) -> None:
    """Give a SimpleITK image the grid of a RAS+ affine (origin, spacing, direction in LPS)."""
    linear = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)[:3, :3]
    spacing = np.sqrt((linear**2).sum(axis=0))
    image.SetSpacing([float(v) for v in spacing])
    image.SetDirection([float(v) for v in (linear / spacing).ravel()])
    image.SetOrigin([float(v) for v in LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)[:3, 3]])


def read_itk(path: str | Path, limits: IOConfig, what: str | None = None) -> Volume:
    """A MetaImage or NRRD file as a :class:`Volume` (array in (x, y, z) order).

    For the commands' own files (``.mhd``/``.nhdr`` find their data file next to them); uploads
    go through :func:`itk_from_bytes`, which never lets ITK see their header.

    Args:
        path: the file.
        limits: the ``io`` section; the header's grid is checked before the data is read.
        what: names the input in messages (default: the path).
    """
    return _read(path, limits, what or str(path), None)


def _read(path: str | Path, limits: IOConfig, what: str, io_name: str | None) -> Volume:
    """ITK's reader on ``path`` (with ``io_name``'s ImageIO only, when given), within limits."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    if io_name:  # no other ImageIO may claim the file by its first bytes
        reader.SetImageIO(io_name)
    unreadable = f"{what}: not a readable volume (MetaImage/NRRD header refused by ITK)"
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:  # SimpleITK reports every reader failure as RuntimeError
        raise library_failure(unreadable, exc) from None
    size, components = tuple(reader.GetSize()), reader.GetNumberOfComponents()
    if len(size) != 3 or components != 1:
        raise UnreadableVolume(
            f"{what} is not a 3D scalar volume ({len(size)}D, {components} component(s) per voxel)"
        )
    check_voxels(size, _itemsize(reader.GetPixelID()), limits, what)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise library_failure(f"{what}: its voxel data is truncated or corrupt", exc) from None
    # (z, y, x) ITK buffer -> (x, y, z): one copy, Fortran-ordered as NIfTI's
    array = sitk.GetArrayViewFromImage(image).transpose(2, 1, 0).copy(order="K")
    return Volume(array, affine_from_itk(image))


def itk_from_bytes(data: bytes, suffix: str, limits: IOConfig, what: str = "volume") -> Volume:
    """A MetaImage (``.mha``) or NRRD (``.nrrd``) upload as a :class:`Volume`.

    The header is parsed whole and rewritten (:mod:`hmss_ray.io.text_header`): ITK reads our
    header and the upload's inline data, never a file the upload names. The declared grid is
    checked against ``limits``, and uncompressed data against the bytes sent, before ITK runs.
    """
    nrrd = suffix == ".nrrd"
    header = (parse_nrrd if nrrd else parse_metaimage)(bytes(data[: MAX_HEADER_BYTES + 1]))
    check_voxels(header.shape, header.itemsize, limits, what)
    sent = len(data) - header.data_offset
    needed = math.prod(header.shape) * header.itemsize  # ITK allocates this before it inflates
    if needed > (sent * MAX_DEFLATE_RATIO + 1024 if header.compressed else sent):
        raise UnreadableVolume(f"the {what} is truncated: its data is shorter than its header says")
    text = header.text if nrrd else metaimage_text(header, sent)
    with tempfile.TemporaryDirectory(prefix="hmss-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        with path.open("wb") as handle:
            handle.write(text)
            handle.write(memoryview(data)[header.data_offset :])  # no copy of the upload
        return _read(path, limits, f"the {what}", "NrrdImageIO" if nrrd else "MetaImageIO")


def write_itk(volume: Volume, path: str | Path, compress: bool = True) -> Path:
    """Write ``volume`` as MetaImage or NRRD (chosen by the suffix), geometry kept."""
    import SimpleITK as sitk

    zyx = np.ascontiguousarray(np.asarray(volume.array).transpose(2, 1, 0))
    image = sitk.GetImageFromArray(zyx)
    set_itk_geometry(image, volume.affine)
    sitk.WriteImage(image, str(path), useCompression=compress)
    return Path(path)


def itk_bytes(volume: Volume, suffix: str) -> bytes:
    """``volume`` as the bytes of one compressed ``.mha`` or ``.nrrd`` file."""
    with tempfile.TemporaryDirectory(prefix="hmss-out-") as tmp:
        return write_itk(volume, Path(tmp) / f"sct{suffix}").read_bytes()


def _itemsize(pixel_id: int) -> int:
    import SimpleITK as sitk

    probe = sitk.Image([1, 1, 1], pixel_id)
    return int(sitk.GetArrayViewFromImage(probe).dtype.itemsize)
