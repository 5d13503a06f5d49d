"""Face, jaw and neck of the head phantom (:mod:`.head`).

Face: orbits with globe, lens, optic nerve, extraocular muscles and orbital fat; maxilla with the
maxillary sinuses, nasal cavity with septum and turbinates, ethmoid cells, frontal and sphenoid
sinuses, zygoma, hard palate, clivus, petrous ridges, mastoid air cells and the ear canals.
Jaw: mandible (body, rami, condyles), upper and lower teeth, tongue, masseters.
Neck: pharynx, larynx and trachea with the thyroid cartilage, oesophagus, cervical spine (atlas,
dens, C2-T2) with canal and cord, carotid arteries and jugular veins, neck muscles and fat.
"""

from __future__ import annotations

import numpy as np

from hmss_ray.data.phantom.anatomy import SIDES, Anatomy, spine
from hmss_ray.data.phantom.shapes import (
    Capsule,
    Ellipsoid,
    HalfSpace,
    Sphere,
    rotation,
    tube,
)
from hmss_ray.data.phantom.tissues import T


def _cells(anatomy: Anatomy, rng, centre, spread, radius, count: int) -> None:
    """Small air cells scattered in a bone (ethmoid, mastoid)."""
    offsets = rng.uniform(-1, 1, (count, 3)) * np.asarray(spread)
    radii = rng.uniform(*radius, count)
    for offset, r in zip(offsets, radii, strict=True):
        anatomy.add(T.GAS, Sphere(np.asarray(centre) + offset, r))


def face(anatomy: Anatomy, size, rng: np.random.Generator) -> None:
    f = size.face
    _, cy, cz = size.centre
    # maxilla with its sinuses, nasal cavity, palate
    anatomy.bone(Ellipsoid((0, 50, -32), (40 * f, 30, 18)), 1.5, T.DIPLOE)
    for s in SIDES:
        anatomy.bone(Ellipsoid((s * 48 * f, 50, -20), (9, 11, 11)), 1.5, T.DIPLOE)  # zygoma
        anatomy.bone(Capsule((s * 51 * f, 44, -20), (s * 57 * f, 0, -22), 3.5), 1.2, T.DIPLOE)
        anatomy.bone(Capsule((s * 46 * f, 60, -20), (s * 47 * f, 60, 6), 4.0), 1.2, T.DIPLOE)
        radii = (rng.uniform(11, 15) * f, rng.uniform(14, 18), rng.uniform(12, 15))
        anatomy.add(T.GAS, Ellipsoid((s * 25 * f, 50, -30), radii))  # maxillary sinus
    anatomy.mark("maxillary_sinus", (25 * f, 50, -30))
    anatomy.add(T.GAS, Ellipsoid((0, 52, -28), (11, 32, 17)))  # nasal cavity
    anatomy.add(T.GAS, [Capsule((s * 6, 72, -36), (s * 6, 99, -44), 3.5) for s in SIDES])
    anatomy.add(T.CARTILAGE, Ellipsoid((0, 56, -26), (1.1, 34, 15)))  # septum
    for s in SIDES:  # inferior and middle turbinates
        anatomy.add(T.SOFT, Ellipsoid((s * 8.5, 50, -37), (3.5, 24, 4)))
        anatomy.add(T.SOFT, Ellipsoid((s * 8, 48, -26), (3, 18, 3.5)))
    anatomy.mark("nasal_cavity", (6.0, 60, -30))
    anatomy.add(T.CORTEX, Capsule((0, 84, -8), (0, 92, -22), 3.0))  # nasal bones
    anatomy.bone(Ellipsoid((0, 42, -46), (27 * f, 30, 3.2)), 1.0, T.DIPLOE)  # hard palate
    # ethmoid cells between the orbits, sphenoid sinus under the sella, frontal sinus
    anatomy.add(T.CORTEX, Ellipsoid((0, 45, -2), (10, 18, 8)))
    _cells(anatomy, rng, (0, 45, -2), (6, 13, 5), (2.5, 4.0), 12)
    anatomy.bone(Ellipsoid((0, 14, -20), (15, 13, 11)), 1.5, T.DIPLOE)
    if rng.random() < 0.95:
        radii = (rng.uniform(8, 11), rng.uniform(8, 10), rng.uniform(6, 8))
        anatomy.add(T.GAS, Ellipsoid((0, 15, -21), radii))
    y_front = cy + size.radii[1] * np.sqrt(1 - ((14 - cz) / size.radii[2]) ** 2) - 3.0
    anatomy.bone(Ellipsoid((0, y_front, 14), (22, 7, 14)), 1.5, T.DIPLOE)
    if rng.random() < 0.9:
        radii = (rng.uniform(5, 9), rng.uniform(3.5, 4.5), rng.uniform(6, 10))
        anatomy.add(T.GAS, [Ellipsoid((s * 8, y_front, 14), radii) for s in SIDES])
    anatomy.bone(Capsule((0, 6, -26), (0, -10, -44), 6.0), 1.5, T.DIPLOE)  # clivus
    for s in SIDES:
        _ear(anatomy, s, f, rng)
        _orbit(anatomy, s, f, rng)


def _ear(anatomy: Anatomy, s: int, f: float, rng) -> None:
    anatomy.add(T.CORTEX, Capsule((s * 48 * f, -8, -30), (s * 14, 6, -22), 6.5))  # petrous ridge
    anatomy.bone(Ellipsoid((s * 47 * f, -16, -40), (9, 11, 13)), 1.5, T.DIPLOE)  # mastoid
    _cells(anatomy, rng, (s * 47 * f, -16, -38), (5, 7, 8), (1.8, 3.2), 16)
    anatomy.add(T.GAS, Capsule((s * 75, -4, -32), (s * 42 * f, -4, -32), 3.5))  # ear canal
    if s == 1:
        anatomy.mark("mastoid", (47 * f, -16, -38))


def _orbit(anatomy: Anatomy, s: int, f: float, rng) -> None:
    x, y, z = s * 31 * f, 52.0, -8.0
    wall = Ellipsoid((x, y, z), (19, 26, 17))
    anatomy.add(T.CORTEX, wall & HalfSpace((0, 68, 0), (0, 1, 0)))
    anatomy.add(T.FAT, wall.grow(-1.8))
    apex, eye = (s * 16, 28, -5), (x, y + 9, z)
    for dx, dz in ((11, 0), (-11, 0), (0, 11), (0, -11)):  # recti
        anatomy.add(T.MUSCLE, Capsule(apex, (eye[0] + dx, eye[1] - 4, eye[2] + dz), 1.6, 2.6))
    anatomy.add(T.CORD, Capsule((x, y - 2, z), (s * 14, 26, -4), 2.2))  # optic nerve
    anatomy.add(T.EYE, Sphere(eye, rng.uniform(11.5, 12.5)))
    anatomy.add(T.LENS, Ellipsoid((x, eye[1] + 10.5, z), (4.5, 1.8, 4.5)))
    if s == 1:
        anatomy.mark("eye", eye)


def _arch(t: np.ndarray, width: float, depth: float, back: float, z: float) -> np.ndarray:
    """Points of a dental arch (a parabola, chin forward) for parameters ``t`` in [-1, 1]."""
    t = np.asarray(t, dtype=np.float64)
    return np.stack([width * t, back + depth * (1 - t * t), np.full_like(t, z)], axis=1)


def _teeth(anatomy: Anatomy, width: float, depth: float, back: float, z: float) -> None:
    # incisors to molars, from the midline out: (half-width, half-depth, half-height) mm
    sizes = [(2.8, 3.0, 10), (2.8, 3.0, 10), (3.5, 3.6, 12), (3.8, 3.8, 10), (3.8, 3.8, 10),
             (5.0, 5.0, 9), (5.0, 5.0, 9)]  # fmt: skip
    t = np.array([0.07, 0.2, 0.34, 0.47, 0.6, 0.75, 0.9])
    for sign in (-1, 1):
        points = _arch(sign * t, width, depth, back, z)
        slope = np.degrees(np.arctan2(-2 * depth * sign * t, width))  # tangent of the arch
        for point, radii, angle in zip(points, sizes, slope, strict=True):
            anatomy.add(T.TEETH, Ellipsoid(point, radii, rotation(z=float(angle))))


def jaw(anatomy: Anatomy, size, rng: np.random.Generator) -> None:
    f = size.face
    width, depth, back = 45.0 * f, 64.0 * f, 6.0
    for s in SIDES:  # masseters, lateral to the rami
        anatomy.add(T.MUSCLE, Capsule((s * 55 * f, 14, -34), (s * 54 * f, 8, -100), 6.5))
    anatomy.add(T.MUSCLE, Ellipsoid((0, 36 * f, -73), (24 * f, 30 * f, 14)))  # tongue
    if rng.random() < 0.6:
        anatomy.add(T.GAS, Ellipsoid((0, 40, -53.5), (15, 22, 1.6)))  # air under the palate
    t = np.linspace(-1, 1, 27)
    slope = np.degrees(np.arctan2(-2 * depth * t, width))
    body = [Ellipsoid(p, (10.0, 5.5, 12.0), rotation(z=float(a)))
            for p, a in zip(_arch(t, width, depth, back, -96.0), slope, strict=True)]  # fmt: skip
    rami = []
    for s in SIDES:
        angle, condyle, coronoid = (
            (s * width, back - 2, -102),
            (s * 50 * f, 2, -26),
            (s * 44 * f, 22, -40),
        )
        rami += [Capsule(angle, condyle, 4.5), Capsule((s * 45 * f, 20, -96), coronoid, 4.0),
                 Capsule((s * 46 * f, 10, -100), (s * 48 * f, 10, -34), 4.5),
                 Ellipsoid(condyle, (9, 5, 5))]  # fmt: skip
    anatomy.bone([*body, *rami], 2.0)
    anatomy.bone(
        tube(_arch(np.linspace(-0.95, 0.95, 9), width, depth + 1, back + 1, -52), 7.0),
        1.5,
        T.DIPLOE,
    )
    _teeth(anatomy, width * 0.93, depth - 2, back, -80.0)
    _teeth(anatomy, width * 0.98, depth + 1, back + 1, -60.0)
    anatomy.mark("teeth", (0.0, back + depth - 2, -70.0))
    anatomy.mark("mandible", (0.0, back + depth, -97.0))


def neck(anatomy: Anatomy, size, rng: np.random.Generator) -> None:
    """Neck muscles, vessels, airway, larynx, oesophagus and the cervical spine."""
    anatomy.add(T.MUSCLE, Ellipsoid((0, -48, -170), (40, 24, 128)))
    for s in SIDES:
        anatomy.add(T.FAT, Ellipsoid((s * 33, -12, -125), (13, 13, 60)))
        anatomy.add(T.MUSCLE, Capsule((s * 50, -18, -42), (s * 20, 40, -200), 9.0, 11.0))  # SCM
        anatomy.add(T.SOFT, Ellipsoid((s * 17, 20, -150), (8, 9, 20)))  # thyroid lobe
    upper = [(0, 24, -30), (0, 12, -40), (0, 8, -60), (0, 6, -88), (0, 10, -108)]
    lower = [(0, 10, -108), (0, 16, -124), (0, 18, -142), (0, 16, -175), (0, 10, -400)]
    radii_up, radii_low = [9.0, 8.0, 7.0, 8.0, 9.0], [9.0, 7.0, 8.0, 9.0, 9.0]
    thyroid = Ellipsoid((0, 24, -124), (19, 14, 15))
    anatomy.add(T.CARTILAGE, thyroid & HalfSpace((0, 14, 0), (0, -1, 0)))
    anatomy.add(T.SOFT, thyroid.grow(-2.5))
    anatomy.add(
        T.SOFT, tube(upper, [r + 3 for r in radii_up]), tube(lower, [r + 3 for r in radii_low])
    )
    anatomy.add(T.GAS, tube(upper, radii_up), tube(lower, radii_low))
    anatomy.mark("airway", (0.0, 6, -88))
    anatomy.add(T.SOFT, Capsule((0, -1, -125), (0, -3, -400), 6.0))  # oesophagus
    for s in SIDES:
        anatomy.add(T.BLOOD, Capsule((s * 22, 12, -45), (s * 24, 14, -400), 4.0))  # carotid
        anatomy.add(T.BLOOD, Capsule((s * 31, 6, -45), (s * 30, 8, -400), 6.0))  # jugular
    _cervical_spine(anatomy, size)


def _cervical_spine(anatomy: Anatomy, size) -> None:
    def curve(z: float) -> float:  # cervical lordosis: mid-neck vertebrae further forward
        return -16.0 + 5.0 * float(np.exp(-(((z + 100.0) / 50.0) ** 2)))

    for s in SIDES:  # occipital condyles on the lateral masses of the atlas
        anatomy.bone(Ellipsoid((s * 14, -20, -44), (7, 10, 6)), 1.2)
        anatomy.bone(Ellipsoid((s * 16, -18, -51), (7, 9, 6)), 1.2)
    atlas = [Capsule((-9, -7, -51), (9, -7, -51), 3.5),
             *[Capsule((s * 16, -24, -51), (0, -44, -51), 3.0) for s in SIDES]]  # fmt: skip
    anatomy.bone(atlas, 1.2)
    anatomy.bone(Capsule((0, -14, -68), (0, -13, -46), 5.5), 1.2)  # dens
    levels = [(-70.0 - 17.0 * i, 9.0 + 0.5 * i, 7.5 + 0.25 * i, 13.0 + 0.3 * i) for i in range(6)]
    levels += [(-172.0 - 20.0 * i, 13.0 + i, 11.0 + i, 17.0) for i in range(3)]
    spine(anatomy, levels, curve, canal=8.0, cord=5.0, process=14.0)
    anatomy.add(T.CORD, Capsule((0, -26, -48), (0, -31, -64), 7.0, 5.5))  # medulla -> cord
    anatomy.mark("c_spine", (0.0, curve(-104.0), -104.0))
