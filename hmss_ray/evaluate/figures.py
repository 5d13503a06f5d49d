"""Evaluation figures: MR | sCT | CT | |sCT - CT| panels in three views, and MAE per centre.

Built on ``matplotlib.figure.Figure`` with the Agg canvas, never ``pyplot``: no global figure state,
no display needed, safe in worker processes. Volumes are turned to RAS+ from their affine before
slicing, so every patient is shown the same way up whatever its storage order: axial with anterior
at the top, coronal and sagittal with superior at the top, radiological convention (the patient's
right on the viewer's left). Voxel spacing sets each view's aspect, so thick pelvis slices are not
squashed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100
PANEL_WIDTH = 12.0  # inches; the height follows the views' shapes (see panel_height)
PANEL_HEIGHT_RANGE = (5.0, 16.0)
BOX_FIGSIZE = (7.0, 4.5)
CT_WINDOW_HU = (-1000.0, 1500.0)  # air to dense cortical bone
DIFF_WINDOW_HU = (0.0, 500.0)  # errors beyond 500 HU are all "wrong tissue class" anyway
VIEWS = ("axial", "coronal", "sagittal")
COLUMNS = ("MR", "sCT", "CT", "|sCT − CT|")


def to_ras(volume: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``volume`` reordered/flipped to the closest RAS+ axes, and its voxel sizes in that order."""
    ornt = nib.orientations.io_orientation(affine)
    zooms = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    out_zooms = np.empty(3)
    out_zooms[ornt[:, 0].astype(int)] = zooms
    return nib.orientations.apply_orientation(np.asarray(volume), ornt), out_zooms


def centre_of(mask: np.ndarray) -> tuple[int, int, int]:
    """The mask's centroid (voxel indices): the slices that show most of the body."""
    points = np.argwhere(np.asarray(mask) > 0)
    if points.size == 0:
        return tuple(int(n) // 2 for n in mask.shape)  # type: ignore[return-value]
    return tuple(round(float(v)) for v in points.mean(axis=0))  # type: ignore[return-value]


def view_of(volume: np.ndarray, view: str, centre: Sequence[int]) -> np.ndarray:
    """A 2D image of a RAS+ volume, rows bottom-up (draw with ``origin="lower"``)."""
    x, y, z = centre
    if view == "axial":
        image = volume[:, :, z].T[:, ::-1]  # rows posterior->anterior, columns right->left
    elif view == "coronal":
        image = volume[:, y, :].T[:, ::-1]  # rows inferior->superior, columns right->left
    elif view == "sagittal":
        image = volume[x, :, :].T  # rows inferior->superior, columns posterior->anterior
    else:
        raise ValueError(f"unknown view {view!r}; choose one of: {', '.join(VIEWS)}")
    return image


def view_aspect(zooms: Sequence[float], view: str) -> float:
    """Pixel height / width in mm, for ``imshow(aspect=...)``."""
    row_axis, col_axis = {"axial": (1, 0), "coronal": (2, 0), "sagittal": (2, 1)}[view]
    return float(zooms[row_axis] / zooms[col_axis])


def _panel_images(
    mr: np.ndarray, sct: np.ndarray, ct: np.ndarray, mask: np.ndarray, affine: np.ndarray
) -> list[list[tuple[np.ndarray, float]]]:
    """``[view][column] -> (2D image, pixel aspect)`` through the mask's centroid."""
    inside = np.asarray(mask) > 0
    ct_f, sct_f = np.asarray(ct, dtype=np.float32), np.asarray(sct, dtype=np.float32)
    diff = np.where(inside, np.abs(sct_f - ct_f), 0.0)
    volumes = [to_ras(v, affine) for v in (mr, sct_f, ct_f, diff)]
    centre = centre_of(to_ras(inside.astype(np.uint8), affine)[0])
    return [
        [(view_of(volume, view, centre), view_aspect(zooms, view)) for volume, zooms in volumes]
        for view in VIEWS
    ]


def _styles(mr: np.ndarray, mask: np.ndarray) -> list[dict[str, Any]]:
    """Colour map and window per column; the MR window is its 1-99th percentile in the body."""
    inside = np.asarray(mask) > 0
    mr_lo, mr_hi = np.percentile(np.asarray(mr)[inside], (1, 99)) if inside.any() else (0, 1)
    ct_style = {"cmap": "gray", "vmin": CT_WINDOW_HU[0], "vmax": CT_WINDOW_HU[1]}
    return [
        {"cmap": "gray", "vmin": mr_lo, "vmax": mr_hi},
        ct_style,
        ct_style,
        {"cmap": "magma", "vmin": DIFF_WINDOW_HU[0], "vmax": DIFF_WINDOW_HU[1]},
    ]


def panel_height(view_heights: Sequence[float]) -> float:
    """Figure height (inches) for rows whose images are ``view_heights`` column widths tall.

    One column is about a quarter of the width; 1.8 inches hold the titles and the colour bars.
    """
    column = (PANEL_WIDTH - 0.8) / 4
    low, high = PANEL_HEIGHT_RANGE
    inches = float(np.clip(1.8 + column * sum(view_heights), low, high))
    return round(inches * DPI) / DPI  # whole pixels: the PNG is exactly figsize * DPI


def panel_figure(
    mr: np.ndarray,
    sct: np.ndarray,
    ct: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
    title: str = "",
) -> Figure:
    """3 rows (axial, coronal, sagittal) x 4 columns (MR, sCT, CT, |sCT − CT|), HU colour bars.

    The difference is shown inside the mask only: that is where every metric is computed, and
    outside it the CT holds the couch, which no MR shows. Row heights follow each view's shape
    in mm, so a short pelvis field of view does not leave the figure half empty.
    """
    styles = _styles(mr, mask)
    views = _panel_images(mr, sct, ct, mask, affine)
    heights = [
        max(image.shape[0] * aspect / image.shape[1] for image, aspect in row) for row in views
    ]
    fig = Figure(figsize=(PANEL_WIDTH, panel_height(heights)), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(
        len(VIEWS) + 1, len(COLUMNS), height_ratios=[*heights, 0.05 * sum(heights)]
    )
    drawn = []
    for row, view in enumerate(VIEWS):
        for col, ((image, aspect), style) in enumerate(zip(views[row], styles, strict=True)):
            ax = fig.add_subplot(grid[row, col])
            drawn.append(ax.imshow(image, origin="lower", aspect=aspect, **style))
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(COLUMNS[col], fontsize=13)
            if col == 0:
                ax.set_ylabel(view, fontsize=13)
    # the colour bars get their own bottom row so every view keeps the same size
    hu_bar = fig.colorbar(drawn[1], cax=fig.add_subplot(grid[-1, 1:3]), orientation="horizontal")
    hu_bar.set_label("sCT and CT (HU)")
    diff_bar = fig.colorbar(drawn[3], cax=fig.add_subplot(grid[-1, 3]), orientation="horizontal")
    diff_bar.set_label("|sCT − CT| inside the mask (HU)")
    if title:
        fig.suptitle(title, fontsize=14)
    return fig


def mae_boxplot(mae_by_group: Mapping[str, Sequence[float]]) -> Figure:
    """Per-patient MAE (HU) per centre: a box per centre with every patient drawn as a dot.

    The dots matter: a test split has a handful of patients per centre, too few for a box alone.
    """
    labels = list(mae_by_group)
    values = [np.asarray(mae_by_group[k], dtype=float) for k in labels]
    fig = Figure(figsize=BOX_FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ticks = [f"{label}\n(n={len(v)})" for label, v in zip(labels, values, strict=True)]
    ax.boxplot(values, tick_labels=ticks, widths=0.5, showfliers=False)
    jitter = np.random.default_rng(0)  # fixed: the same data draws the same figure
    for position, v in enumerate(values, start=1):
        x = position + jitter.uniform(-0.12, 0.12, len(v))
        ax.scatter(x, v, s=22, color="tab:blue", alpha=0.8, zorder=3)
    ax.set_ylabel("MAE inside the body mask (HU)")
    ax.set_title("Per-patient MAE by centre (SynthRAD definition)")  # the same in 2023 and 2025
    ax.grid(axis="y", alpha=0.3)
    finite = [x for v in values for x in v if np.isfinite(x)]
    ax.set_ylim(0, 1.12 * max(finite, default=1.0))  # MAE >= 0; headroom keeps top dots visible
    return fig


def write_figures(
    per_patient: pd.DataFrame,
    load_pair: Callable[[str], tuple[Any, np.ndarray]],
    out: Path,
) -> list[tuple[str, str]]:
    """Panels of the lowest, median and highest-MAE patients, and the MAE box plot, into ``out``.

    ``load_pair(case_id)`` gives the case (``mr``, ``ct``, ``mask``, ``affine``) and its sCT:
    cases are re-read rather than kept from the metrics pass, as a real test split does not fit
    in memory. Returns ``(file name, caption)`` pairs.
    """
    ranked = per_patient.sort_values("mae", kind="stable").reset_index(drop=True)
    picks = {"lowest MAE": 0, "median MAE": len(ranked) // 2, "highest MAE": len(ranked) - 1}
    written: list[tuple[str, str]] = []
    for index in sorted(set(picks.values())):
        row = ranked.iloc[index]
        why = ", ".join(k for k, v in picks.items() if v == index)
        ssim = ("MS-SSIM", row["ms_ssim"]) if "ssim" not in row or np.isnan(row["ssim"]) else (
            "SSIM", row["ssim"])  # fmt: skip
        title = (
            f"{row['case_id']} ({row['group']}, {why}): MAE {row['mae']:.1f} HU, "
            f"PSNR {row['psnr']:.2f} dB, {ssim[0]} {ssim[1]:.3f}"
        )
        case, sct = load_pair(str(row["case_id"]))
        fig = panel_figure(case.mr, sct, case.ct, case.mask, case.affine, title)
        name = f"panel_{row['case_id']}.png"
        save(fig, out / name)
        written.append((name, title))
    mae = {g: df["mae"].tolist() for g, df in per_patient.groupby("group", sort=True)}
    save(mae_boxplot(mae), out / "mae_by_centre.png")
    written.append(("mae_by_centre.png", "Per-patient MAE by centre"))
    return written


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG at :data:`DPI`; the pixel size is ``figsize * DPI`` exactly."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, format="png")
    return out
