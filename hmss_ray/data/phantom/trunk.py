"""What thorax, abdomen and pelvis share: the body wall, ribs and the lower spine.

Patient millimetres: x to the patient's right, y anterior, z superior; y = 0 is the middle of the
body. A body is a superelliptic cylinder (350-500 mm wide at the hips, narrower at the chest)
with skin, subcutaneous fat of the patient's thickness (thicker in front) and a muscle wall.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hmss_ray.data.phantom.anatomy import SIDES, Anatomy, spine
from hmss_ray.data.phantom.shapes import Ellipsoid, Prism, Shape, rotation, tube
from hmss_ray.data.phantom.tissues import T


@dataclass(frozen=True)
class TrunkSize:
    """Half width and half depth of the body (mm), subcutaneous fat (mm), wall muscle (mm)."""

    half_width: float
    half_depth: float
    fat: float
    muscle: float

    @classmethod
    def draw(cls, rng, width, depth, fat, muscle=(10.0, 16.0)) -> TrunkSize:
        """Draw from ranges (low, high) of full body width and depth, fat and muscle (mm)."""
        return cls(
            rng.uniform(*width) / 2,
            rng.uniform(*depth) / 2,
            rng.uniform(*fat),
            rng.uniform(*muscle),
        )

    @property
    def cavity(self) -> tuple[float, float]:
        """Half axes of what lies inside the body wall."""
        wall = self.fat + self.muscle + 2.0
        return self.half_width - wall, self.half_depth - wall


def body_wall(
    anatomy: Anatomy,
    size: TrunkSize,
    z0: float,
    z1: float,
    power: float = 2.4,
    profile: Callable[[np.ndarray], np.ndarray] | None = None,
    centre_y: float = 0.0,
    minus: Shape | None = None,
) -> Shape:
    """Skin, subcutaneous fat (thicker in front) and muscle from ``z0`` to ``z1``; the body
    (less ``minus``, e.g. the gap between the thighs)."""
    body: Shape = Prism(
        (0, centre_y), (size.half_width, size.half_depth), z0, z1, power, profile=profile
    )
    if minus is not None:
        body = body - minus
    anatomy.add(T.SOFT, body)
    anatomy.add(T.FAT, body.grow(-2.0))

    def fat(x, y, z):
        front = np.clip((y - centre_y) / size.half_depth, -1, 1)
        return 2.0 + size.fat * (0.8 + 0.35 * front)

    anatomy.add(T.MUSCLE, body.grow(lambda x, y, z: -fat(x, y, z)))
    return body


def lumbar_levels(top: float, count: int, pitch: float = 37.0) -> list[tuple[float, ...]]:
    """(z, radius x, radius y, height) of lumbar-sized vertebrae from ``top`` downwards."""
    return [(top - pitch * i, 20.0 + 1.2 * i, 15.5 + 0.6 * i, 26.0) for i in range(count)]


def lower_spine(anatomy: Anatomy, levels, y_front: float) -> Callable[[float], float]:
    """Vertebrae (with discs, canal and cord) whose bodies' front is near ``y_front``."""

    def curve(z: float) -> float:  # the bodies sit a little further forward low in the back
        return y_front - 18.0 + 6.0 * float(np.exp(-(((z + 60.0) / 120.0) ** 2)))

    spine(anatomy, levels, curve, canal=9.0, cord=5.0, process=24.0)
    return curve


def ribs(
    anatomy: Anatomy,
    starts: list[float],
    cage: Callable[[float], tuple[float, float]],
    centre_y: float,
    reach: list[float],
    drop: float = 60.0,
) -> None:
    """Rib pairs from beside the spine around the cage towards the sternum.

    Args:
        starts: z of each rib at the spine.
        cage: half axes of the cage at a height z.
        reach: how far round each rib goes (1: to the sternum, through its costal cartilage).
    """
    for z0, extent in zip(starts, reach, strict=True):
        ax, ay = cage(z0)
        end = 0.15 * np.pi + 0.72 * np.pi * extent  # bone ends, cartilage continues
        phi = np.linspace(0.12 * np.pi, end, 9)
        for s in SIDES:
            anatomy.bone(tube(_around(s, phi, ax, ay, centre_y, z0, drop), 5.0), 1.5)
            if extent >= 0.95:
                arc = np.linspace(end, 0.94 * np.pi, 4)
                points = _around(s, arc, ax * 0.98, ay, centre_y, z0, drop)
                start = z0 - drop * (end - 0.12 * np.pi) / np.pi
                points[:, 2] = np.linspace(start, start + 12.0, len(points))
                anatomy.add(T.CARTILAGE, tube(points, 4.5))


def _around(s, phi, ax, ay, centre_y, z0, drop) -> np.ndarray:
    """Points at angles ``phi`` round an ellipse (0 = behind, pi = in front), descending."""
    z = z0 - drop * (phi - 0.12 * np.pi) / np.pi
    return np.stack([s * ax * np.sin(phi), centre_y - ay * np.cos(phi), z], axis=1)


def organ(anatomy: Anatomy, tissue: T, shape: Shape, fat: float = 0.0) -> None:
    """An organ in a layer of ``fat`` mm (perirenal, pericardial fat)."""
    if fat > 0:
        anatomy.add(T.FAT, shape.grow(fat))
    anatomy.add(tissue, shape)


def gut(anatomy: Anatomy, shapes: list[Shape], wall: float, content: T = T.BOWEL) -> None:
    """Bowel, rectum or stomach: a soft-tissue wall around its content."""
    anatomy.layered(shapes, (0.0, T.SOFT), (wall, content))


def iliac_wing(anatomy: Anatomy, s: int, centre, scale: float = 1.0) -> None:
    """An iliac wing: a thin curved plate of bone flaring forwards and outwards."""
    wing = Ellipsoid(centre, (8.0, 62.0 * scale, 60.0 * scale), rotation(z=-s * 38, y=s * 18))
    anatomy.bone(wing, 2.0)
