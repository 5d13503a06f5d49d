"""Draw ``docs/figures/phantom.png``: brain and pelvis phantoms, MR and CT, axial and coronal,
at the data sets' own resolution (brain 1 mm, pelvis 1 x 1 x 2.5 mm).

Run from the repository root: ``python docs/figures/phantom_figure.py [out.png]``. Only the four
planes shown are rendered (a thin field of view each), so it takes seconds.
"""

from __future__ import annotations

import sys

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hmss_ray.data.phantom import REGIONS, make_case

# (case, plane, patient mm of the plane, title)
PLANES = [
    ("1BA001", "axial", -14.0, "brain 1BA001 (T1), axial z = -14 mm"),
    ("1BA001", "coronal", 0.0, "coronal y = 0 mm"),
    ("1PC002", "axial", 2.0, "pelvis 1PC002 (T1), axial z = 2 mm"),
    ("1PC002", "coronal", 8.0, "coronal y = 8 mm"),
]
CT_WINDOW = (-250, 1250)


def plane(case_id: str, kind: str, at: float):
    """(MR, CT, height / width of a pixel) of one plane, rows from anterior or superior."""
    spec = REGIONS["brain" if case_id[1] == "B" else "pelvis"]
    axis = 2 if kind == "axial" else 1
    box = list(spec.fov)
    step = spec.spacing[axis]
    box[axis] = (at - step / 2, at + step / 2)
    case = make_case(case_id, fov=tuple(box))
    mr, ct, mask = (np.take(v, 0, axis=axis).T for v in (case.mr, case.ct, case.mask))
    if kind == "coronal":  # rows: superior first
        mr, ct, mask = mr[::-1], ct[::-1], mask[::-1]
    cols = np.flatnonzero(mask.any(axis=0))
    keep = slice(max(cols[0] - 12, 0), cols[-1] + 13)  # the body and a margin, left to right
    return mr[:, keep], ct[:, keep], spec.spacing[2 if kind == "coronal" else 1] / spec.spacing[0]


def main(out: str = "docs/figures/phantom.png") -> None:
    fig = Figure(figsize=(12.0, 6.6), facecolor="black")
    FigureCanvasAgg(fig)
    for col, (case_id, kind, at, title) in enumerate(PLANES):
        mr, ct, aspect = plane(case_id, kind, at)
        for row, (image, window) in enumerate(((mr, None), (ct, CT_WINDOW))):
            ax = fig.add_subplot(2, 4, row * 4 + col + 1)
            lo, hi = window or (0.0, float(np.percentile(mr, 99.7)))
            ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="none")
            ax.set_axis_off()
            ax.set_title(title if row == 0 else "CT", color="white", fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.95, bottom=0.01, wspace=0.03, hspace=0.08)
    fig.savefig(out, dpi=72, facecolor="black", pil_kwargs={"optimize": True})


if __name__ == "__main__":
    main(*sys.argv[1:])
