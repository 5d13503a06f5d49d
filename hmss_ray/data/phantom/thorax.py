"""Thorax (SynthRAD2025 TH): from T1 to the upper abdomen under the diaphragm.

Patient millimetres, z = 0 near the carina, y = 0 the middle of the body. Lungs (about -850 HU)
with pulmonary vessels and bronchi under domed diaphragms, mediastinal fat, heart in pericardial
fat, aorta, pulmonary trunk, superior vena cava, trachea, oesophagus, thoracic spine with discs,
canal and cord, twelve pairs of ribs with costal cartilages, sternum, scapulae, pectoral and
paraspinal muscles, subcutaneous fat; liver, stomach and spleen below the diaphragm.
"""

from __future__ import annotations

import numpy as np

from hmss_ray.data.phantom.anatomy import Anatomy, couch, sigmoid, spine
from hmss_ray.data.phantom.shapes import (
    Above,
    Capsule,
    Complement,
    Ellipsoid,
    HalfSpace,
    Prism,
    rotation,
    tube,
)
from hmss_ray.data.phantom.tissues import T
from hmss_ray.data.phantom.trunk import SIDES, TrunkSize, body_wall, gut, organ, ribs


def apex(z):
    """How the rib cage narrows towards the lung apices."""
    return np.sqrt(np.clip(1.0 - (np.maximum(z - 70.0, 0.0) / 115.0) ** 2, 0.05, 1.0))


def diaphragm(x, y):
    """Domes of the diaphragm: the right one higher, lowest behind (costophrenic recesses)."""
    return -72.0 - 16.0 * sigmoid(-x / 20.0) - 0.0015 * x * x + 0.3 * np.minimum(y, 0.0)


def thorax(rng: np.random.Generator) -> Anatomy:
    anatomy = Anatomy()
    size = TrunkSize.draw(rng, (300, 400), (200, 270), (8, 35), (12, 18))
    wall = body_wall(anatomy, size, -400, 400, 2.2).grow(-2.0 - 0.8 * size.fat)
    ax, ay = size.cavity
    cy = 5.0

    def spine_y(z: float) -> float:  # thoracic kyphosis
        return cy - ay + 14.0 - 8.0 * float(np.exp(-((z / 120.0) ** 2)))

    for s in SIDES:
        anatomy.add(T.MUSCLE, Prism((s * 30, spine_y(0) - 40), (24, 26)) & wall)  # paraspinal
        pectoral = Ellipsoid((s * 70, cy + ay + 12, 70), (80, 16, 75))
        anatomy.add(T.MUSCLE, pectoral & wall)
    cage = Prism((0, cy), (ax, ay), power=2.2, profile=apex)
    lungs = cage & Above(diaphragm)
    anatomy.add(T.LUNG, lungs)
    _vessels(anatomy, ax, ay, cy, rng)
    below = cage & Complement(Above(diaphragm))
    anatomy.add(T.FAT, below)
    anatomy.add(T.LIVER, below & HalfSpace((-25, 0, 0), (-1, 0, 0)))
    anatomy.add(T.SPLEEN, Ellipsoid((-70, -40, -115), (25, 40, 45), rotation(z=-30)) & below)
    stomach = Ellipsoid((-50, 35, -130), (42, 35, 40))
    gut(anatomy, [stomach & below], 4.0, T.FLUID)
    anatomy.add(T.GAS, stomach.grow(-4) & below & HalfSpace((0, 45, 0), (0, -1, 0)))
    _mediastinum(anatomy, ay, cy)
    levels = [
        (150.0 - 24.0 * i, 14.0 + 0.55 * i, 12.0 + 0.4 * i, 17.0 + 0.5 * i) for i in range(12)
    ]
    spine(anatomy, levels, spine_y, canal=8.0, cord=5.0, process=26.0)
    reach = [0.9, 1, 1, 1, 1, 1, 1, 0.95, 0.9, 0.85, 0.6, 0.45]
    ribs(anatomy, [lv[0] + 4 for lv in levels], lambda z: (ax * apex(z) + 5, ay * apex(z) + 5),
         cy, reach, drop=55.0)  # fmt: skip
    sternum = [Ellipsoid((0, cy + ay + 8, 118), (26, 8, 20)),
               Ellipsoid((0, cy + ay + 10, 40), (15, 7, 62)),
               Capsule((0, cy + ay + 10, -22), (0, cy + ay + 6, -50), 5.0)]  # fmt: skip
    anatomy.bone(sternum, 1.5)
    _scapulae(anatomy, ax, ay, cy, wall)
    couch(anatomy, -size.half_depth - 2.0)
    anatomy.mark("lung", (ax * 0.55, cy, 30.0))
    anatomy.mark("heart", (-22.0, 28.0, -45.0))
    anatomy.mark("spine", (0.0, spine_y(30.0), 30.0))
    return anatomy


def _vessels(anatomy: Anatomy, ax: float, ay: float, cy: float, rng) -> None:
    """Pulmonary vessels branching from each hilum into the lung: lobar trunks, then branches
    fanning out towards the pleura, thinning as they go."""
    for s in SIDES:
        hilum = np.array([s * 45.0, cy + 5.0, 0.0])
        for _ in range(7):
            angle, height = rng.uniform(-1.4, 1.4), rng.uniform(-80, 100)
            end = np.array([s * ax * 0.85 * np.cos(angle), cy + ay * 0.8 * np.sin(angle), height])
            fork = hilum + (end - hilum) * 0.35 + rng.normal(0, 6, 3)
            anatomy.add(T.BLOOD, Capsule(hilum, fork, 5.5, 4.0))
            for _ in range(4):
                tip = end + rng.normal(0, 1, 3) * np.array([0.25 * ax, 0.25 * ay, 35.0])
                middle = fork + (tip - fork) * 0.5 + rng.normal(0, 5, 3)
                anatomy.add(T.BLOOD, tube([fork, middle, tip], [3.5, 2.2, 1.0]))


def _mediastinum(anatomy: Anatomy, ay: float, cy: float) -> None:
    mediastinum = Prism((0, cy + 20), (32, ay), z1=200) & Above(lambda x, y: diaphragm(x, y) + 2)
    anatomy.add(T.FAT, mediastinum)
    heart = Ellipsoid((-22, 28, -45), (60, 46, 50), rotation(z=-25, y=15))
    organ(anatomy, T.BLOOD, heart & Above(lambda x, y: diaphragm(x, y) + 4), fat=4.0)
    aorta = [(-5, 30, -25), (0, 32, 20), (-10, 15, 45), (-25, -15, 40), (-25, -45, 0),
             (-18, -50, -400)]  # fmt: skip
    anatomy.add(T.BLOOD, tube(aorta, [14, 14, 13, 12, 12, 11]))
    anatomy.add(T.BLOOD, tube([(-15, 45, -20), (-20, 35, 10)], 13.0))  # pulmonary trunk
    anatomy.add(
        T.BLOOD, Capsule((-20, 35, 10), (-55, 5, 0), 9.0), Capsule((-20, 35, 10), (45, 10, 0), 9.0)
    )
    anatomy.add(T.BLOOD, Capsule((25, 25, 200), (22, 28, -20), 10.0))  # superior vena cava
    trachea = [(0, 8, 200), (0, 2, 12)]
    bronchi = [[(0, 2, 12), (45, -5, -8)], [(0, 2, 12), (-50, -8, -18)]]
    anatomy.add(T.CARTILAGE, tube(trachea, 11.0), *[tube(b, 8.0) for b in bronchi])
    anatomy.add(T.GAS, tube(trachea, 8.5), *[tube(b, 6.0) for b in bronchi])
    anatomy.add(T.SOFT, Capsule((-6, -18, 200), (-14, -32, -400), 7.0))  # oesophagus


def _scapulae(anatomy: Anatomy, ax: float, ay: float, cy: float, wall) -> None:
    phi = 0.3 * np.pi
    for s in SIDES:
        centre = (s * (ax + 16) * np.sin(phi), cy - (ay + 16) * np.cos(phi), 85.0)
        tx, ty = s * ax * np.cos(phi), ay * np.sin(phi)  # the cage's tangent there
        angle = float(np.degrees(np.arctan2(-tx, ty)))
        anatomy.bone(Ellipsoid(centre, (6.0, 55.0, 60.0), rotation(z=angle)) & wall, 2.0)
