"""Dose figures: DVHs (CT solid, sCT dashed) and an axial dose-difference panel per patient.

Agg canvas on ``matplotlib.figure.Figure``, never ``pyplot`` (as :mod:`hmss_ray.evaluate.figures`).
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure, SubFigure

from hmss_ray.dose.check import DoseCheck
from hmss_ray.dose.metrics import DVH_BINS

DIFF_WINDOW_PCT = 10.0  # ± colour range of the difference panel, % of the prescription


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def dvh_figure(check: DoseCheck, title: str = "") -> Figure:
    """One axis per modality; per structure its DVH on the CT (solid) and the sCT (dashed)."""
    fig = _figure(5.5 * len(check.plans), 4.2)
    draw_dvh(fig, check)
    if title:
        fig.suptitle(title)
    return fig


def difference_figure(check: DoseCheck, title: str = "") -> Figure:
    """Per modality: the CT dose and sCT − CT on the axial slice through the target's centre,
    seen from the feet (radiological view: the patient's left on the right, anterior up)."""
    fig = _figure(9.0, 4.0 * len(check.plans))
    draw_difference(fig, check)
    if title:
        fig.suptitle(title)
    return fig


def panel_figure(check: DoseCheck, title: str = "") -> Figure:
    """The DVHs above the dose-difference panels, in one figure (the QA report's dose page)."""
    rows = len(check.plans)
    fig = _figure(max(9.0, 5.5 * rows), 4.2 + 4.0 * rows)
    top, bottom = fig.subfigures(2, 1, height_ratios=[4.2, 4.0 * rows])
    draw_dvh(top, check)
    draw_difference(bottom, check)
    if title:
        fig.suptitle(title)
    return fig


def draw_dvh(fig: Figure | SubFigure, check: DoseCheck) -> None:
    """One axis per modality on ``fig``: each structure's DVH, CT solid, sCT dashed."""
    modalities = list(check.plans)
    axes = np.atleast_1d(fig.subplots(1, len(modalities)))
    colours = [f"C{i}" for i in range(10)]
    for ax, modality in zip(axes, modalities, strict=True):
        for i, (name, (on_ct, on_sct)) in enumerate(check.dvhs(modality).items()):
            colour = colours[i % len(colours)]
            ax.plot(100 * DVH_BINS, 100 * on_ct, color=colour, label=name)
            ax.plot(100 * DVH_BINS, 100 * on_sct, color=colour, linestyle="--")
        ax.set_title(f"{modality} (solid CT, dashed sCT)")
        ax.set_xlabel("dose (% of prescription)")
        ax.set_ylabel("volume (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)


def draw_difference(fig: Figure | SubFigure, check: DoseCheck) -> None:
    """Per modality on ``fig``: the CT dose and sCT − CT on the target's central axial slice."""
    modalities = list(check.plans)
    axes = np.atleast_2d(fig.subplots(len(modalities), 2))
    z = round(float(np.argwhere(check.structures.target)[:, 2].mean()))
    aspect = check.grid.spacing[1] / check.grid.spacing[0]  # pixel height / width
    for row, modality in zip(axes, modalities, strict=True):
        plan = check.plans[modality]
        shown = row[0].imshow(100 * plan.dose_ct[:, :, z].T, origin="upper", cmap="jet",
                              vmin=0, vmax=110, aspect=aspect)  # fmt: skip
        fig.colorbar(shown, ax=row[0], label="CT dose (% Rx)")
        diff = 100 * (plan.dose_sct - plan.dose_ct)[:, :, z].T
        shown = row[1].imshow(diff, origin="upper", cmap="RdBu_r", vmin=-DIFF_WINDOW_PCT,
                              vmax=DIFF_WINDOW_PCT, aspect=aspect)  # fmt: skip
        fig.colorbar(shown, ax=row[1], label="sCT − CT (% Rx)")
        row[1].contour(check.structures.target[:, :, z].T, levels=[0.5], colors="k")
        for ax, name in zip(row, ("CT dose", "sCT − CT"), strict=True):
            ax.set_title(f"{modality}: {name} (axial slice {z})")
            ax.set_xticks([])
            ax.set_yticks([])
