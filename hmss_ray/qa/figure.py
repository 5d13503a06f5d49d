"""The QA figure of one study, and the PDF of a batch.

Rows: MR, sCT, their fusion (sCT bone over the MR) and the uncertainty overlay, in three planes
through the body's centre; then the HU histogram inside the body and the flags. With a CT: the CT
and the sCT - CT difference as well. Arrays are shown in RAS+ orientation (radiological display:
the patient's left on the image's right) whatever their storage order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
from matplotlib.backends.backend_pdf import PdfPages

from hmss_ray.qa.flags import QAResult

SOFT_TISSUE = (-160.0, 240.0)  # window (W 400, L 40)


@dataclass
class StudyImages:
    """One study's volumes on the MR grid (any storage order) and what is said about it."""

    title: str
    affine: np.ndarray
    mr: np.ndarray
    sct: np.ndarray
    body: np.ndarray
    spread: np.ndarray | None = None
    ct: np.ndarray | None = None
    qa: QAResult | None = None
    caption: str = ""  # model version and card summary


def canonical(array: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``array`` reordered to RAS+ axes (a view: flips and transposes only)."""
    ornt = nib.orientations.io_orientation(affine)
    return nib.orientations.apply_orientation(array, ornt)


def figure(study: StudyImages) -> plt.Figure:
    vols = {
        "MR": study.mr,
        "sCT": study.sct,
        "CT": study.ct,
        "sCT - CT": None if study.ct is None else study.sct.astype(np.float32) - study.ct,
        "spread": study.spread,
    }
    ras = {k: canonical(v, study.affine) for k, v in vols.items() if v is not None}
    body = canonical(study.body, study.affine) > 0
    centre = [round(c) for c in np.argwhere(body).mean(0)] if body.any() else [0, 0, 0]
    ornt = nib.orientations.io_orientation(study.affine)
    zooms = np.empty(3)
    zooms[ornt[:, 0].astype(int)] = nib.affines.voxel_sizes(study.affine)  # RAS axes' spacing
    rows = [*ras, "fusion"]
    fig, axes = plt.subplots(len(rows) + 1, 3, figsize=(9, 2.6 * (len(rows) + 1)))
    for r, name in enumerate(rows):
        for c, plane in enumerate(("axial", "coronal", "sagittal")):
            _panel(axes[r, c], name, plane, ras, centre)
            x, y, z = zooms  # rows over columns of the shown plane, in mm
            axes[r, c].set_aspect({"axial": y / x, "coronal": z / x, "sagittal": z / y}[plane])
    _histogram(axes[-1, 0], ras["sCT"][body], None if study.ct is None else ras["CT"][body])
    _text(axes[-1, 1], study)
    axes[-1, 2].axis("off")
    fig.suptitle(study.title, fontsize=10)
    fig.tight_layout()
    return fig


def _plane(array: np.ndarray, plane: str, centre: Sequence[int]) -> np.ndarray:
    x, y, z = centre
    cut = {"axial": array[:, :, z], "coronal": array[:, y, :], "sagittal": array[x, :, :]}[plane]
    image = np.rot90(cut)  # rows run from anterior/superior at the top
    return image[:, ::-1] if plane != "sagittal" else image  # radiological: R on the left


def _panel(ax, name: str, plane: str, ras: dict, centre: Sequence[int]) -> None:
    ax.axis("off")
    mr = _plane(ras["MR"], plane, centre)
    lo, hi = np.percentile(ras["MR"], (1, 99.5))
    if name == "fusion":
        ax.imshow(mr, cmap="gray", vmin=lo, vmax=hi)
        bone = np.ma.masked_less(_plane(ras["sCT"], plane, centre).astype(np.float32), 250)
        ax.imshow(bone, cmap="autumn", alpha=0.6, vmin=250, vmax=1500)
    elif name == "spread":
        ax.imshow(mr, cmap="gray", vmin=lo, vmax=hi)
        spread = np.ma.masked_less_equal(_plane(ras["spread"], plane, centre), 0)
        shown = ax.imshow(spread, cmap="magma", alpha=0.7, vmin=0, vmax=150)
        plt.colorbar(shown, ax=ax, fraction=0.04, label="HU std")
    elif name == "MR":
        ax.imshow(mr, cmap="gray", vmin=lo, vmax=hi)
    elif name == "sCT - CT":
        shown = ax.imshow(_plane(ras[name], plane, centre), cmap="RdBu_r", vmin=-300, vmax=300)
        plt.colorbar(shown, ax=ax, fraction=0.04, label="HU")
    else:
        ax.imshow(_plane(ras[name], plane, centre), cmap="gray", vmin=SOFT_TISSUE[0],
                  vmax=SOFT_TISSUE[1])  # fmt: skip
    ax.set_title(f"{name} {plane}", fontsize=8)


def _histogram(ax, sct: np.ndarray, ct: np.ndarray | None) -> None:
    bins = np.linspace(-1100, 2000, 125)
    ax.hist(sct, bins=bins, histtype="step", label="sCT", density=True)
    if ct is not None:  # NaN outside the CT's field of view
        ax.hist(ct[np.isfinite(ct)], bins=bins, histtype="step", label="CT", density=True)
    ax.set_yscale("log")
    ax.set_xlabel("HU inside the body", fontsize=8)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)


def _text(ax, study: StudyImages) -> None:
    ax.axis("off")
    lines = [study.caption] if study.caption else []
    if study.qa is not None:
        lines += [f"{k}: {v:.3g}" for k, v in study.qa.values.items()]
        lines += ["FLAGS:", *study.qa.flags] if study.qa.flags else ["no flags"]
    wrapped = "\n".join(line if len(line) < 60 else line[:57] + "..." for line in lines)
    ax.text(0, 1, wrapped, va="top", fontsize=7, family="monospace")


def write_png(study: StudyImages, path: Path) -> Path:
    fig = figure(study)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_pdf(pngs: Sequence[Path], path: Path) -> Path:
    """One page per study's QA figure (the PNGs already written)."""
    with PdfPages(path) as pdf:
        for png in pngs:
            image = plt.imread(str(png))
            fig = plt.figure(figsize=(image.shape[1] / 80, image.shape[0] / 80))
            fig.figimage(image)
            pdf.savefig(fig)
            plt.close(fig)
    return path
