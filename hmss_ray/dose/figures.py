"""Dose figures: DVHs (CT solid, sCT dashed) and an axial dose-difference panel per patient.

Agg canvas on ``matplotlib.figure.Figure``, never ``pyplot`` (as :mod:`hmss_ray.evaluate.figures`).
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hmss_ray.dose.check import DoseCheck
from hmss_ray.dose.metrics import DVH_BINS

DIFF_WINDOW_PCT = 10.0  # ± colour range of the difference panel, % of the prescription


def dvh_figure(check: DoseCheck, title: str = "") -> Figure:
    """One axis per modality; per structure its DVH on the CT (solid) and the sCT (dashed)."""
    modalities = list(check.plans)
    fig = Figure(figsize=(5.5 * len(modalities), 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
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
    if title:
        fig.suptitle(title)
    return fig


def difference_figure(check: DoseCheck, title: str = "") -> Figure:
    """Per modality: the CT dose and sCT − CT on the axial slice through the target's centre,
    seen from the feet (radiological view: the patient's left on the right, anterior up)."""
    modalities = list(check.plans)
    fig = Figure(figsize=(9.0, 4.0 * len(modalities)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
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
    if title:
        fig.suptitle(title)
    return fig
