"""Draw ``docs/figures/pelvis_contract.png``: one slice of a real-size pelvis phantom as the
network sees it, before the geometry contract (a 256 px crop at the file's 1 mm) and after it
(the pelvis contract, 2 x 2 x 2.5 mm, on the same 256 px canvas).

    PYTHONPATH=. python docs/figures/pelvis_contract.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from hmss_ray.config import load_config
from hmss_ray.data import preprocess
from hmss_ray.data.phantom import make_case
from hmss_ray.data.synthrad import CaseId

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).with_suffix(".png")


def _in_file_voxels(after: preprocess.PreparedVolume) -> tuple[np.ndarray, np.ndarray]:
    """The after-canvas's in-plane corners as (x, y) voxel positions of the file's grid."""
    gmap = after.placement.gmap
    x0, y0 = after.box.start
    size = after.box.size
    corners = np.array([[x0 - 0.5, y0 - 0.5, 0, 1], [x0 + size - 0.5, y0 + size - 0.5, 0, 1]]).T
    file_index = np.linalg.inv(gmap.source.affine) @ gmap.target.affine @ corners
    return file_index[0], file_index[1]


def main() -> int:
    cfg = load_config(ROOT / "configs" / "pelvis.yaml").data
    case = make_case(CaseId.parse("1PA001"), seed=0, shape=(480, 320, 8))
    z = case.mr.shape[2] // 2
    before = preprocess.prepare_volume(case.mr, None, case.mask, cfg)  # the file's grid, cropped
    after = preprocess.prepare_case(case.mr, None, case.mask, case.affine, cfg, "pelvis")
    lost = 1 - before.mask.sum() / max(int(case.mask.sum()), 1)
    n0, n1 = case.mr.shape[:2]
    # shown radiologically, anterior up: the file and the "before" crop are stored L-P-S, the
    # contract R-A-S; rows drawn bottom-up (origin="lower")
    fig = Figure(figsize=(13.5, 4.9), dpi=80)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.35, 1, 1]})
    full = case.mr[:, ::-1, z].T
    axes[0].imshow(full, cmap="gray", origin="lower", vmax=np.percentile(full, 99.5))
    x0, y0 = before.box.start
    box = Rectangle((x0 - 0.5, n1 - y0 - 256 - 0.5), 256, 256, fill=False, ec="red", lw=2)
    axes[0].add_patch(box)
    xs, ys = _in_file_voxels(after)
    rows = sorted(n1 - 1 - ys)
    canvas = Rectangle((min(xs), rows[0]), abs(xs[1] - xs[0]), rows[1] - rows[0],
                       fill=False, ec="lime", lw=2, ls="--")  # fmt: skip
    axes[0].add_patch(canvas)
    axes[0].set_xlim(min(xs) - 10, max(xs) + 10)
    axes[0].set_ylim(rows[0] - 10, rows[1] + 10)
    axes[0].set_title(f"the file: {n0} x {n1} px at 1 x 1 mm, slice {z}", fontsize=11)
    panels = (
        (axes[1], before.mr[:, ::-1, z].T, "red",
         f"before: 256 px at the file's 1 mm = 256 mm\n{lost:.0%} of the body cut off"),
        (axes[2], after.mr[::-1, :, z].T, "lime",
         "after: contract 2 x 2 x 2.5 mm, 256 px = 512 mm\nthe whole body, no voxel lost"),
    )  # fmt: skip
    for ax, image, colour, title in panels:
        ax.imshow(image, cmap="gray", origin="lower", vmin=-1, vmax=1)
        ax.set_title(title, fontsize=11)
        for spine in ax.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(3)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        "A pelvis slice as the network sees it: normalised MR on the 256 x 256 canvas "
        "(phantom 1PA001, 484 x 320 mm; radiological view, anterior up)",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
