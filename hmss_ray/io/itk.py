"""MetaImage (``.mha``, ``.mhd``) and NRRD through SimpleITK, geometry converted LPS <-> RAS.

ITK describes a grid in LPS+ world coordinates (origin, spacing, direction); NIfTI affines and
:class:`~hmss_ray.io.volume.Volume` use RAS+. Flipping the x and y axes converts one to the other:
``affine = F @ [direction @ diag(spacing) | origin]`` with ``F = diag(-1, -1, 1)``.

The header is read first (``ReadImageInformation``) and checked against the ``io`` limits; only
then does ITK allocate and inflate the voxels, into a buffer of the size the header declared.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np

from hmss_ray.config import IOConfig
from hmss_ray.io.limits import check_voxels
from hmss_ray.io.volume import UnreadableVolume, Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
HEADER_BYTES = 65536  # a MetaImage / NRRD text header is far shorter
_DETACHED_NRRD = re.compile(rb"^\s*data\s*file\s*:", re.IGNORECASE | re.MULTILINE)
_META_DATA_FILE = re.compile(rb"^\s*ElementDataFile\s*=\s*(\S+)", re.MULTILINE)


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

    Args:
        path: the file (``.mhd``/``.nhdr`` find their data file next to them).
        limits: the ``io`` section; the header's grid is checked before the data is read.
        what: names the input in messages (default: the path).
    """
    import SimpleITK as sitk

    what = what or str(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:  # SimpleITK reports every reader failure as RuntimeError
        raise UnreadableVolume(f"{what}: not a readable volume ({_last_line(exc)})") from None
    size, components = tuple(reader.GetSize()), reader.GetNumberOfComponents()
    if len(size) != 3 or components != 1:
        raise UnreadableVolume(
            f"{what}: not a 3D scalar volume ({len(size)}D, {components} component(s) per voxel)"
        )
    check_voxels(size, _itemsize(reader.GetPixelID()), limits, what)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise UnreadableVolume(f"{what}: not a readable volume ({_last_line(exc)})") from None
    array = np.ascontiguousarray(sitk.GetArrayFromImage(image).transpose(2, 1, 0))
    return Volume(array, affine_from_itk(image))


def itk_from_bytes(data: bytes, suffix: str, limits: IOConfig, what: str = "volume") -> Volume:
    """A MetaImage (``.mha``) or NRRD (``.nrrd``) upload as a :class:`Volume`.

    Only self-contained files are taken: a header that names another file for its data
    (``ElementDataFile = /some/path``, NRRD ``data file:``) could make the server read its own
    disk, and is refused.
    """
    head = data[:HEADER_BYTES]
    if suffix == ".nrrd":
        if _DETACHED_NRRD.search(head.split(b"\n\n", 1)[0]):
            raise UnreadableVolume(f"the {what} is a detached NRRD header: send one .nrrd file")
    else:
        found = _META_DATA_FILE.search(head)
        if found is None or found.group(1) != b"LOCAL":
            raise UnreadableVolume(
                f"the {what} is not a self-contained MetaImage: its header needs "
                "'ElementDataFile = LOCAL' (send a .mha, not a .mhd with a separate data file)"
            )
    with tempfile.TemporaryDirectory(prefix="hmss-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        return read_itk(path, limits, f"the {what}")


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


def _last_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else "unreadable"
