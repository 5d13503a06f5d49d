"""Abdomen (SynthRAD2025 AB): from the lung bases to the iliac crests.

Patient millimetres, z = 0 near L1-L2, y = 0 the middle of the body. Liver with gallbladder,
spleen, stomach with an air-fluid level, pancreas, kidneys in perirenal fat with renal sinus fat,
aorta and inferior vena cava, colon and small-bowel loops with gas, visceral and subcutaneous fat,
psoas, quadratus lumborum and paraspinal muscles, lumbar spine with discs, canal and cord, the
lowest ribs, the lung bases behind the diaphragm and the tops of the iliac wings.
"""

from __future__ import annotations

import numpy as np

from hmss_ray.data.phantom.anatomy import Anatomy, couch
from hmss_ray.data.phantom.shapes import (
    Above,
    Capsule,
    Complement,
    Ellipsoid,
    HalfSpace,
    Prism,
    Sphere,
    rotation,
    tube,
)
from hmss_ray.data.phantom.tissues import T
from hmss_ray.data.phantom.trunk import (
    SIDES,
    TrunkSize,
    body_wall,
    gut,
    iliac_wing,
    lower_spine,
    lumbar_levels,
    organ,
    ribs,
)


def diaphragm(x, y):
    """Domes of the diaphragm (the right one higher), lowest behind (costophrenic recesses)."""
    front = np.maximum(y, 0.0)
    return (
        135.0
        - 0.0015 * x * x
        - 0.0015 * front * front
        + 0.45 * np.minimum(y, 0.0)
        + 8.0 * np.tanh(x / 40.0)
    )


def abdomen(rng: np.random.Generator) -> Anatomy:
    anatomy = Anatomy()
    size = TrunkSize.draw(rng, (300, 430), (200, 300), (10, 55), (10, 15))
    wall = body_wall(anatomy, size, -400, 400, 2.5).grow(-2.0 - 0.8 * size.fat)
    ax, ay = size.cavity
    cavity = Prism((0, 0), (ax, ay), power=2.4)
    y_front = -ay + 45.0  # front of the vertebral bodies
    anatomy.add(T.FAT, cavity)  # visceral fat around everything below
    chest = cavity & Above(diaphragm)
    anatomy.add(T.LUNG, chest)
    heart = Ellipsoid((-20, 40, 178), (62, 48, 55), rotation(z=-25))
    organ(anatomy, T.BLOOD, heart & Above(lambda x, y: diaphragm(x, y) + 4), fat=4.0)
    for s in SIDES:
        anatomy.add(T.MUSCLE, Prism((s * 32, y_front - 60), (24, 24)) & wall)  # paraspinal
        anatomy.add(T.MUSCLE, Prism((s * 62, y_front - 35), (15, 18), z1=70) & wall)
        anatomy.add(
            T.MUSCLE, Capsule((s * 28, y_front - 8, 60), (s * 52, y_front + 2, -150), 8, 26)
        )
    below = cavity & Complement(Above(diaphragm))
    liver = Ellipsoid((65, 15, 95), (105, 95, 90)) & below
    anatomy.add(T.LIVER, liver)
    anatomy.add(T.FLUID, Ellipsoid((45, 55, 45), (14, 16, 30), rotation(y=20)) & cavity)  # GB
    anatomy.add(T.SPLEEN, Ellipsoid((-85, -40, 85), (26, 45, 55), rotation(z=-30)) & below)
    stomach = Ellipsoid((-48, 35, 85), (45, 36, 42)) & below
    gut(anatomy, [stomach], 4.0, T.FLUID)
    level = 35.0 + rng.uniform(5, 25)  # the air-fluid level (gas rises to the front)
    anatomy.add(T.GAS, stomach.grow(-4) & HalfSpace((0, level, 0), (0, -1, 0)))
    pancreas = [(-75, 0, 55), (-30, 15, 45), (10, 22, 35), (35, 18, 25)]
    anatomy.add(T.SOFT, tube(pancreas, [9, 11, 12, 15]))
    _kidneys(anatomy, y_front, rng)
    anatomy.add(T.BLOOD, Capsule((-14, y_front + 12, 200), (-8, y_front + 14, -95), 11.0))
    anatomy.add(
        T.BLOOD,
        [Capsule((-8, y_front + 14, -95), (s * 30, y_front + 20, -200), 7.0) for s in SIDES],
    )
    anatomy.add(T.BLOOD, Capsule((22, y_front + 14, 200), (18, y_front + 12, -200), 12.0))  # IVC
    _bowel(anatomy, ax, rng)
    lower_spine(anatomy, lumbar_levels(122.0, 8, 37.0), y_front)
    reach = [0.85, 0.6, 0.45]
    ribs(anatomy, [150.0, 126.0, 100.0], lambda z: (ax + 5, ay + 5), 0.0, reach, drop=55.0)
    for s in SIDES:
        iliac_wing(anatomy, s, (s * 110, y_front - 5, -185), 1.0)
    couch(anatomy, -size.half_depth - 2.0)
    anatomy.mark("liver", (70.0, 15.0, 80.0))
    anatomy.mark("spine", (0.0, y_front - 18.0, 11.0))
    return anatomy


def _kidneys(anatomy: Anatomy, y_front: float, rng) -> None:
    for s in SIDES:
        z = -10.0 if s > 0 else 5.0  # the right kidney sits lower, under the liver
        centre = (s * 72.0, y_front + 2.0, z + rng.uniform(-8, 8))
        kidney = Ellipsoid(centre, (26, 21, 52), rotation(z=s * 25, y=-s * 10))
        organ(anatomy, T.KIDNEY, kidney, fat=rng.uniform(6, 18))
        sinus = (s * 58.0, y_front + 8.0, centre[2])
        anatomy.add(T.FAT, Ellipsoid(sinus, (9, 10, 26)))
        anatomy.add(T.FLUID, Ellipsoid((s * 54.0, y_front + 10.0, centre[2]), (5, 6, 10)))
        if s > 0:
            anatomy.mark("kidney", (s * 78.0, y_front + 2.0, centre[2]))


def _bowel(anatomy: Anatomy, ax: float, rng) -> None:
    """Colon round the edge with gas in its front, small-bowel loops in the middle."""
    x = min(ax - 28, 95.0)
    colon = [[(x, -5, -200), (x + 3, 0, -40), (x - 5, 10, 30)],
             [(x - 5, 10, 30), (40, 62, 18), (-40, 62, 24), (-x + 5, 15, 48)],
             [(-x + 5, 15, 48), (-x - 3, -5, -40), (-x, -10, -200)]]  # fmt: skip
    for path, r in zip(colon, (22.0, 20.0, 18.0), strict=True):
        gut(anatomy, tube(path, r), 3.0)
        for point in path[1:]:
            if rng.random() < 0.6:
                gas = np.asarray(point) + np.array([0, 0.45 * r, 0])
                anatomy.add(T.GAS, Ellipsoid(gas, (0.5 * r, 0.4 * r, rng.uniform(0.5, 1.2) * r)))
    for _ in range(int(rng.integers(12, 20))):
        point = np.array([rng.uniform(-55, 55), rng.uniform(-5, 55), rng.uniform(-130, 20)])
        path = [point]
        for _ in range(4):
            point = point + rng.normal(0, 1, 3) * np.array([20, 10, 16])
            path.append(point)
        r = rng.uniform(10, 14)
        gut(anatomy, tube(path, r), 2.5)
        if rng.random() < 0.35:
            anatomy.add(
                T.GAS, Sphere(path[int(rng.integers(0, 5))] + np.array([0, 0.4 * r, 0]), 0.5 * r)
            )
    anatomy.mark("bowel", (0.0, 30.0, -60.0))
