"""Reading and writing volumes with their geometry: one module for every command and Serve.

A :class:`Volume` is a 3D voxel array with the 4x4 affine that maps voxel indices to RAS+ world
millimetres (NIfTI's convention). :func:`read_volume` takes NIfTI, MetaImage, NRRD and DICOM
series (folder or zip) within the ``io`` limits; :func:`write_volume` writes NIfTI, MetaImage,
NRRD or a DICOM CT series, geometry kept. Uploads go through :func:`volume_from_bytes`.
"""

from hmss_ray.io.formats import (
    Format,
    format_to_read,
    format_to_write,
    read_volume,
    volume_from_bytes,
    volume_to_bytes,
    write_volume,
)
from hmss_ray.io.volume import LimitExceeded, SeriesError, UnreadableVolume, Volume

__all__ = [
    "Format",
    "LimitExceeded",
    "SeriesError",
    "UnreadableVolume",
    "Volume",
    "format_to_read",
    "format_to_write",
    "read_volume",
    "volume_from_bytes",
    "volume_to_bytes",
    "write_volume",
]
