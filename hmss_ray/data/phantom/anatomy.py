"""A patient as an ordered list of painted solids, and the helpers the region builders share.

Each region builder (:mod:`.head`, :mod:`.thorax`, :mod:`.abdomen`, :mod:`.pelvis`) draws one
patient's dimensions from a seeded generator and adds solids in patient millimetres, outside in:
body, fat, muscle, organs, bone, air. Later solids are painted over earlier ones. Nothing here
knows about voxels: :mod:`.paint` renders an anatomy at any spacing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from hmss_ray.data.phantom.shapes import Capsule, Prism, Shape, tube
from hmss_ray.data.phantom.tissues import T

Point = tuple[float, float, float]
SIDES = (-1, 1)


@dataclass
class Anatomy:
    """Paint operations (solid, tissue) in order, named landmarks (mm), and the couch top."""

    ops: list[tuple[Shape, T]] = field(default_factory=list)
    landmarks: dict[str, Point] = field(default_factory=dict)
    couch_y: float | None = None  # the couch top, posterior to the patient (CT only)

    def add(self, tissue: T, *shapes: Shape | Iterable[Shape]) -> None:
        """Paint each shape (or list of shapes) with ``tissue``."""
        for shape in shapes:
            parts = [shape] if isinstance(shape, Shape) else list(shape)
            self.ops += [(part, tissue) for part in parts]

    def layered(self, shapes: Sequence[Shape], *layers: tuple[float, T]) -> None:
        """Concentric layers: ``(depth_mm, tissue)`` painted over all ``shapes`` in turn, each
        shrunk by its depth (a bone: ``(0, CORTEX), (2, MARROW)``; a gut: wall then lumen)."""
        for depth, tissue in layers:
            self.add(tissue, [s if depth == 0 else s.grow(-depth) for s in shapes])

    def bone(self, shapes: Shape | Sequence[Shape], cortex: float, inner: T = T.MARROW) -> None:
        """Cortical shell ``cortex`` mm thick over cancellous bone."""
        parts = [shapes] if isinstance(shapes, Shape) else list(shapes)
        self.layered(parts, (0.0, T.CORTEX), (cortex, inner))

    def mark(self, name: str, point: Sequence[float]) -> None:
        self.landmarks[name] = (float(point[0]), float(point[1]), float(point[2]))


def vertebra(
    anatomy: Anatomy,
    centre: Point,
    radii: tuple[float, float],
    height: float,
    canal: float,
    process: float,
) -> None:
    """One vertebra: body (cortex over marrow), pedicles, laminae, transverse and spinous
    processes around a canal of radius ``canal`` behind the body. ``process``: the spinous
    process length (mm)."""
    x, y, z = centre
    rx, ry = radii
    body = Prism((x, y), radii, z - height / 2, z + height / 2, power=2.2)
    anatomy.bone(body, 1.2)
    yc = y - ry - canal - 1.0  # canal centre
    ring, arch = canal + 2.5, 2.6  # the posterior arch runs around the canal
    back = (x, yc - ring, z)
    parts = [
        *[Capsule((x + s * 0.8 * ring, y - ry + 2, z), (x + s * ring, yc, z), arch) for s in SIDES],
        *[Capsule((x + s * ring, yc, z), back, arch) for s in SIDES],
        Capsule(back, (x, yc - ring - process, z - 0.35 * process), 3.0, 2.2),
        *[Capsule((x + s * ring, yc, z), (x + s * (ring + 0.6 * rx + 6), yc - 4, z), 3.0, 2.4)
          for s in (-1, 1)],
    ]  # fmt: skip
    anatomy.bone(parts, 1.2)


def spine(
    anatomy: Anatomy,
    levels: Sequence[tuple[float, float, float, float]],
    curve: Callable[[float], float],
    canal: float,
    cord: float,
    process: float,
) -> None:
    """Vertebrae at ``levels`` (z centre, radius x, radius y, height; top to bottom) with discs
    between, then the canal (CSF) and the cord through all of them; ``curve(z)`` is the y of the
    front half of the bodies (lordosis, kyphosis)."""
    for upper, lower in zip(levels, [*levels[1:], None], strict=True):
        z, rx, ry, h = upper
        vertebra(anatomy, (0.0, curve(z), z), (rx, ry), h, canal, process)
        if lower is not None:
            bottom, top = z - h / 2, lower[0] + lower[3] / 2
            zd = (bottom + top) / 2
            disc = Prism((0.0, curve(zd)), (rx * 0.95, ry * 0.95), top, bottom, power=2.2)
            anatomy.add(T.CARTILAGE, disc)
    z_top, z_bottom = levels[0][0] + levels[0][3], levels[-1][0] - levels[-1][3]
    zs = np.linspace(z_top, z_bottom, max(2, int((z_top - z_bottom) // 20) + 2))
    ry = np.interp(zs, [lv[0] for lv in levels[::-1]], [lv[2] for lv in levels[::-1]])
    path = [
        (0.0, curve(float(z)) - float(r) - canal - 1.0, float(z))
        for z, r in zip(zs, ry, strict=True)
    ]
    anatomy.add(T.CSF, tube(path, canal))
    anatomy.add(T.CORD, tube(path, cord))


def couch(anatomy: Anatomy, top: float, half_width: float = 260.0, thickness: float = 14.0) -> None:
    """The treatment couch (a flat board, top surface at y = ``top``), behind the patient."""
    anatomy.couch_y = float(top)
    board = Prism((0.0, top - thickness / 2), (half_width, thickness / 2), power=8.0)
    anatomy.add(T.COUCH, board)


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))
