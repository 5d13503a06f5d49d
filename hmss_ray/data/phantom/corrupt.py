"""Deliberately broken cases: how ``prepare`` and ``evaluate`` are shown to skip and report them.

Every kind works on both editions' files (``.nii.gz`` and ``.mha``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from hmss_ray.io import Volume, read_volume, write_volume

CORRUPTIONS = (
    "truncated_gzip",
    "not_gzip",
    "missing_mr",
    "missing_mask",
    "not_3d",
    "shape_mismatch",
    "affine_mismatch",
    "nan_voxels",
    "empty_mask",
    "ct_out_of_range",
)


def _write_4d(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    if path.name.endswith(".mha"):  # the MetaImage writer takes a 4D image as it is
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(3, 2, 1, 0)))
        sitk.WriteImage(image, str(path), useCompression=True)
    else:
        write_volume(Volume(data, affine), path)


def _resave(path: Path, change: Callable[[np.ndarray], np.ndarray], shift_mm: float = 0.0) -> None:
    volume = read_volume(path)
    data = change(np.asarray(volume.array))
    affine = volume.affine.copy()
    affine[:3, 3] += shift_mm
    if data.ndim == 4:
        _write_4d(path, data, affine)
    else:
        write_volume(Volume(data, affine), path)


def _with_nans(data: np.ndarray) -> np.ndarray:
    out = data.astype(np.float32)
    out[: out.shape[0] // 4, : out.shape[1] // 4, :2] = np.nan
    return out


def _too_bright(data: np.ndarray) -> np.ndarray:
    out = data.copy()
    out[out.shape[0] // 2, out.shape[1] // 2, :] = 12000  # far above any tissue, metal included
    return out


def case_files(folder: Path) -> tuple[Path, Path, Path]:
    """``mr``, ``ct``, ``mask`` paths of a case folder, in its format (NIfTI or MetaImage)."""
    suffix = ".mha" if any(folder.glob("*.mha")) else ".nii.gz"
    mr, ct, mask = (folder / f"{name}{suffix}" for name in ("mr", "ct", "mask"))
    return mr, ct, mask


def corrupt_case(folder: Path, kind: str) -> None:
    """Damage a written case in one of the ways :data:`CORRUPTIONS` names."""
    mr, ct, mask = case_files(folder)
    if kind == "truncated_gzip":  # for MetaImage: its compressed data cut short
        data = ct.read_bytes()
        ct.write_bytes(data[: len(data) * 6 // 10])
    elif kind == "not_gzip":
        mr.write_bytes(b"this is not a medical image file\n" * 32)
    elif kind in ("missing_mr", "missing_mask"):
        (mr if kind == "missing_mr" else mask).unlink()
    elif kind == "not_3d":
        _resave(mr, lambda a: np.stack([a, a], axis=3))
    elif kind == "shape_mismatch":
        _resave(mask, lambda a: a[:, :, :-1])
    elif kind == "affine_mismatch":
        _resave(ct, lambda a: a, shift_mm=5.0)
    elif kind == "nan_voxels":
        _resave(mr, _with_nans)
    elif kind == "empty_mask":
        _resave(mask, np.zeros_like)
    elif kind == "ct_out_of_range":
        _resave(ct, _too_bright)
    else:
        raise ValueError(f"unknown corruption {kind!r}; choose one of: {', '.join(CORRUPTIONS)}")
