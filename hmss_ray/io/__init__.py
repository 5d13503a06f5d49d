"""Reading and writing volumes with their geometry: one module for every command and Serve.

A :class:`Volume` is a 3D voxel array with the 4x4 affine that maps voxel indices to RAS+ world
millimetres (NIfTI's convention). Readers fill it from a file; writers put it back in a format,
geometry kept.
"""

from hmss_ray.io.volume import UnreadableVolume, Volume, read_volume, write_volume

__all__ = ["UnreadableVolume", "Volume", "read_volume", "write_volume"]
