"""Pelvis (SynthRAD2023 pelvis): from the fifth lumbar vertebra to below the lesser trochanters.

Patient millimetres, z = 0 at the centres of the femoral heads, y = 0 near the middle of the
body. Bones: iliac wings and bodies, acetabula, ischia and pubic rami with the symphysis, sacrum
and coccyx, L5, femoral heads, necks, trochanters and shafts (cortex over fatty marrow). Soft
tissue: subcutaneous fat of the patient's thickness, gluteal and thigh muscles, iliopsoas and
obturator muscles, pelvic fat, bladder (urine), prostate or uterus, rectum with gas, bowel loops,
iliac and femoral vessels; below the perineum, two thighs.
"""

from __future__ import annotations

import numpy as np

from hmss_ray.data.phantom.anatomy import Anatomy, couch
from hmss_ray.data.phantom.shapes import (
    Above,
    Capsule,
    Ellipsoid,
    HalfSpace,
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
)


def pelvis(rng: np.random.Generator) -> Anatomy:
    anatomy = Anatomy()
    k = rng.uniform(0.9, 1.05)  # skeleton scale
    fat = rng.uniform(12, 50)  # subcutaneous fat differs a lot between patients
    half_width = max(rng.uniform(175, 245), 165 * k + fat + 18)
    front, back = 72 * k + 14 + fat, -(85 * k + 38 + 1.1 * fat)
    size = TrunkSize(half_width, (front - back) / 2, fat, 30.0)
    centre_y = (front + back) / 2
    thighs = Ellipsoid((0, 0, -75 * k - 150), (35, 400, 150))  # the gap between the thighs
    body = body_wall(anatomy, size, -400, 400, 2.6, _waist, centre_y=centre_y, minus=thighs)
    _muscles(anatomy, body.grow(-2.0 - 0.8 * fat), k, centre_y - size.half_depth)
    _soft_tissue(anatomy, size, k, centre_y, rng)
    _bones(anatomy, k)
    couch(anatomy, centre_y - size.half_depth - 2.0)
    return anatomy


def _waist(z):
    """The body narrows from the hips (z <= 0) towards the waist."""
    return 1.0 - 0.1 * np.clip(z / 150.0, 0.0, 1.0) ** 2


def _muscles(anatomy: Anatomy, wall, k: float, back: float) -> None:
    """Gluteal muscles in their fascia (thin fat planes), ischioanal fat under the pelvic floor."""
    for s in SIDES:
        maximus = Ellipsoid((s * 78 * k, back + 60, 0), (80, 36, 95), rotation(z=s * 28))
        medius = Ellipsoid((s * 120 * k, -25, 70), (28, 60, 60), rotation(z=-s * 30))
        for muscle in (medius, maximus):
            anatomy.add(T.FAT, muscle.grow(2.5) & wall)
            anatomy.add(T.MUSCLE, muscle & wall)
        anatomy.add(T.FAT, Ellipsoid((s * 32 * k, -38 * k, -62), (20, 30, 26)))  # ischioanal


def _soft_tissue(anatomy: Anatomy, size: TrunkSize, k: float, centre_y: float, rng) -> None:
    cavity_x, cavity_y = size.half_width - size.fat - 40, size.half_depth - size.fat - 25
    belly = Ellipsoid((0, centre_y + 10, 170), (cavity_x, cavity_y, 115))
    anatomy.add(T.FAT, belly, Ellipsoid((0, 10, 5), (62 * k, 60 * k, 70)))  # visceral, pelvic
    for s in SIDES:
        path = [(s * 40 * k, -30, 160), (s * 62 * k, -10, 80), (s * 78 * k, 20, 25),
                (s * 84 * k, 38, -20), (s * 100 * k, 20, -60)]  # fmt: skip
        anatomy.add(T.MUSCLE, tube(path, [14, 18, 20, 16, 12]))  # iliopsoas
        anatomy.add(T.MUSCLE, Ellipsoid((s * 62 * k, 0, -25), (8, 28, 25)))  # obturator int.
        artery = [(s * 30 * k, -5, 160), (s * 52 * k, 28, 60), (s * 72 * k, 44, 10),
                  (s * 88 * k, 48, -60), (s * 96 * k, 45, -400)]  # fmt: skip
        anatomy.add(
            T.BLOOD, tube(artery, 4.5), tube([(x - s * 11, y - 3, z) for x, y, z in artery], 6.5)
        )
    _bowel(anatomy, k, rng)
    radii = (rng.uniform(28, 55), rng.uniform(25, 42), rng.uniform(25, 45))
    bladder = (0.0, 40 * k, -30 * k + 0.9 * radii[2])
    gut(anatomy, [Ellipsoid(bladder, radii)], 3.0, T.BLADDER)
    anatomy.mark("bladder", bladder)
    if rng.random() < 0.6:
        anatomy.add(T.SOFT, Ellipsoid((0, 38 * k, -50 * k), (20, 15, 17)))  # prostate
    else:
        uterus = Ellipsoid((0, 0, bladder[2] + radii[2] + 5), (30, 20, 38), rotation(x=-30))
        anatomy.add(T.SOFT, uterus)
    path = [(0, -48 * k, 90), (0, -62 * k, 45), (0, -58 * k, 5), (0, -38 * k, -38 * k),
            (0, -22 * k, -75 * k)]  # fmt: skip
    radii_r = [16.0, rng.uniform(18, 24), rng.uniform(18, 24), 16.0, 9.0]
    gut(anatomy, tube(path, radii_r), 4.0)
    if rng.random() < 0.7:  # rectal gas rises to the front of the lumen (patient supine)
        i = int(rng.integers(1, 4))
        r = radii_r[i] - 6
        gas = (0.0, path[i][1] + 0.4 * r, path[i][2] + rng.uniform(-10, 10))
        anatomy.add(
            T.GAS, Ellipsoid(gas, (r * rng.uniform(0.6, 1), r * 0.6, r * rng.uniform(0.8, 1.6)))
        )
    anatomy.mark("rectum", (0.0, path[2][1], path[2][2]))


def _bowel(anatomy: Anatomy, k: float, rng) -> None:
    """Small-bowel and sigmoid loops above the bladder, some with gas."""
    for _ in range(int(rng.integers(6, 11))):
        point = np.array([rng.uniform(-60, 60) * k, rng.uniform(10, 60), rng.uniform(70, 150)])
        path = [point]
        for _ in range(4):
            point = point + rng.normal(0, 1, 3) * np.array([22, 12, 14])
            path.append(point)
        r = rng.uniform(10, 14)
        gut(anatomy, tube(path, r), 2.5)
        if rng.random() < 0.35:
            centre = path[int(rng.integers(0, 5))] + np.array([0, 0.4 * r, 0])
            anatomy.add(T.GAS, Sphere(centre, 0.5 * r))


def _bones(anatomy: Anatomy, k: float) -> None:
    lower_spine(anatomy, [(132.0, 23.0, 17.0, 26.0)], -20 * k)
    sacrum = [Ellipsoid((0, -58 * k, 85 * k), (50 * k, 20 * k, 35 * k), rotation(x=-25)),
              Ellipsoid((0, -78 * k, 30 * k), (30 * k, 14 * k, 35 * k), rotation(x=-15)),
              Capsule((0, -86 * k, -2), (0, -78 * k, -30 * k), 6 * k)]  # fmt: skip
    anatomy.bone(sacrum, 1.5)
    anatomy.add(T.CSF, Capsule((0, -66 * k, 115), (0, -84 * k, 25), 5.0))  # sacral canal
    anatomy.mark("sacrum", (0.0, -62 * k, 75 * k))
    for s in SIDES:
        head = (s * 92 * k, 8.0, 0.0)
        socket = Sphere((s * (92 * k - 3), 8, 2), 31 * k)
        keep = HalfSpace((s * (92 * k + 6), 0, 0), (s, 0, 0)) & Above(lambda x, y: x * 0 - 14.0)
        anatomy.bone(socket & keep, 2.0)  # acetabulum
        anatomy.bone(Capsule((s * 88 * k, 4, 10), (s * 80 * k, -22, 70 * k), 20 * k), 2.0)
        iliac_wing(anatomy, s, (s * 100 * k, -18 * k, 98 * k), k)
        anatomy.bone(
            Capsule((s * 82 * k, -12, -18 * k), (s * 60 * k, -38 * k, -72 * k), 13 * k), 2.0
        )
        rami = [Capsule((s * 80 * k, 22, -12 * k), (s * 14 * k, 70 * k, -30 * k), 11 * k),
                Capsule((s * 12 * k, 66 * k, -46 * k), (s * 55 * k, -20 * k, -72 * k), 8 * k),
                Ellipsoid((s * 12 * k, 70 * k, -36 * k), (10 * k, 9 * k, 16 * k))]  # fmt: skip
        anatomy.bone(rami, 2.0)
        anatomy.add(T.CARTILAGE, Sphere((s * (92 * k - 2), 8, 1), 25 * k))  # joint cartilage
        femur = [Sphere(head, 23 * k), Capsule(head, (s * 130 * k, 2, -30 * k), 14 * k),
                 Ellipsoid((s * 142 * k, -2, -28 * k), (14 * k, 20 * k, 24 * k)),
                 Sphere((s * 118 * k, -4, -62 * k), 8 * k)]  # fmt: skip
        anatomy.bone(femur, 2.0)
        anatomy.bone(Capsule((s * 135 * k, 0, -40 * k), (s * 122 * k, 12, -400), 14 * k), 5.0)
    anatomy.add(T.CARTILAGE, Ellipsoid((0, 70 * k, -36 * k), (2.5, 8 * k, 15 * k)))  # symphysis
    anatomy.mark("femoral_head", (92 * k, 8.0, 0.0))
    anatomy.mark("iliac_wing", (100 * k, -18 * k, 98 * k))
