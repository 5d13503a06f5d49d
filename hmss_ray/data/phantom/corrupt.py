"""Deliberately broken cases: how ``prepare`` and ``evaluate`` are shown to skip and report them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

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


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    image = nib.Nifti1Image(data, affine)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    nib.save(image, str(path))  # nibabel's gzip has no timestamp: same arrays, same bytes


def _resave(path: Path, change: Callable[[np.ndarray], np.ndarray], shift_mm: float = 0.0) -> None:
    image = nib.load(path)
    data = change(np.asanyarray(image.dataobj))
    affine = image.affine.copy()
    affine[:3, 3] += shift_mm
    save_nifti(path, data, affine)


def _with_nans(data: np.ndarray) -> np.ndarray:
    out = data.astype(np.float32)
    out[: out.shape[0] // 4, : out.shape[1] // 4, :2] = np.nan
    return out


def _too_bright(data: np.ndarray) -> np.ndarray:
    out = data.copy()
    out[out.shape[0] // 2, out.shape[1] // 2, :] = 12000  # far above any tissue, metal included
    return out


def corrupt_case(folder: Path, kind: str) -> None:
    """Damage a written case in one of the ways :data:`CORRUPTIONS` names."""
    mr, ct, mask = (folder / f"{name}.nii.gz" for name in ("mr", "ct", "mask"))
    if kind == "truncated_gzip":
        data = ct.read_bytes()
        ct.write_bytes(data[: len(data) * 6 // 10])
    elif kind == "not_gzip":
        mr.write_bytes(b"this is not a NIfTI file\n" * 32)
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
