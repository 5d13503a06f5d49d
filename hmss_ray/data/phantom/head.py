"""Head and neck (SynthRAD brain and HN): scalp, skull, skull base, brain; face and neck in
:mod:`.face`.

Patient millimetres: x to the patient's right, y anterior, z superior; the orbits at z about -8,
the external ear canals at z -20, the skull vertex near z +100, the chin near z -95. The skull is
an outer table, diploe and an inner table of varying thickness (thick frontal and occipital bone,
thin temporal squama), closed below by a skull base with anterior, middle and posterior fossae.
The brain has a cortex of grey matter folded into gyri and sulci around white matter, deep grey
nuclei, lateral, third and fourth ventricles, a cerebellum, a brain stem and the spinal cord.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hmss_ray.data.phantom import face
from hmss_ray.data.phantom.anatomy import Anatomy, couch, sigmoid
from hmss_ray.data.phantom.shapes import (
    Above,
    Capsule,
    Ellipsoid,
    FourierField,
    Level,
    Prism,
    RadialField,
    Union,
    rotation,
    tube,
)
from hmss_ray.data.phantom.tissues import T


@dataclass(frozen=True)
class HeadSize:
    """One patient's head: the outer table's ellipsoid and the layer thicknesses (mm)."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    scalp: float
    fat: float
    outer_table: float
    diploe: float
    inner_table: float
    csf: float  # subarachnoid CSF over the brain (grows with age, as do ventricles and sulci)
    ventricles: float
    sulcus: float
    face: float  # scale of the face and jaw

    @classmethod
    def draw(cls, rng: np.random.Generator) -> HeadSize:
        age = rng.uniform(0, 1)
        return cls(
            centre=(0.0, float(rng.uniform(-8, -4)), 22.0),
            radii=(rng.uniform(62, 73), rng.uniform(86, 97), rng.uniform(74, 84)),
            scalp=rng.uniform(4.5, 7.0),
            fat=rng.uniform(2.5, 7.0),
            outer_table=rng.uniform(1.4, 2.2),
            diploe=rng.uniform(2.0, 3.8),
            inner_table=rng.uniform(1.0, 1.5),
            csf=1.2 + 2.3 * age,
            ventricles=0.8 + 0.8 * age,
            sulcus=0.6 + 1.0 * age,
            face=rng.uniform(0.94, 1.06),
        )


def head(rng: np.random.Generator) -> Anatomy:
    """A whole head and neck, from the vertex to the upper thorax."""
    size = HeadSize.draw(rng)
    anatomy = Anatomy()
    outline(anatomy, size)
    cavity = cranium(anatomy, size)
    brain(anatomy, size, cavity, rng)
    face.face(anatomy, size, rng)
    face.jaw(anatomy, size, rng)
    face.neck(anatomy, size, rng)
    cx, cy, cz = size.centre
    couch(anatomy, cy - size.radii[1] - size.scalp - 3.0)
    anatomy.mark("brain_centre", (cx, cy, cz))
    return anatomy


def _skull(size: HeadSize) -> Ellipsoid:
    return Ellipsoid(size.centre, size.radii)


def _lateral(size: HeadSize, x, y):
    """1 at the sides of the head, 0 at the front and back."""
    dy = y - size.centre[1]
    return x * x / (x * x + dy * dy + 1.0)


def outline(anatomy: Anatomy, size: HeadSize) -> None:
    """Skin, subcutaneous fat and soft tissue of scalp, face and neck; the temporalis muscles."""
    f, cz = size.face, size.centre[2]

    def temporalis(x, y, z):  # the muscle thickens the side of the head above the ear
        return 6.0 * _lateral(size, x, y) ** 2 * np.exp(-(((z - cz + 22.0) / 26.0) ** 2))

    skull = _skull(size)
    body = Union(
        skull.grow(lambda x, y, z: size.scalp + temporalis(x, y, z), most=size.scalp + 6.0),
        Ellipsoid((0, 40, -34), (66 * f, 52, 44)),  # midface
        Ellipsoid((0, 34, -90), (68 * f, 50, 34)),  # lower face and jaw
        Capsule((0, 84, -5), (0, 98, -38), 6.0, 9.0),  # nose
        Ellipsoid((0, 90, -38), (16, 10, 8)),
        Ellipsoid((0, -10, -60), (64, 66, 40)),  # where the neck meets the head
        Prism((0, -8), (54, 58), z1=-50, power=2.2),  # neck
    )
    anatomy.add(T.SOFT, body)
    anatomy.add(T.FAT, body.grow(-1.5))
    anatomy.add(T.SOFT, body.grow(-1.5 - size.fat))
    muscle = skull.grow(lambda x, y, z: temporalis(x, y, z) - 0.5, most=6.0)
    anatomy.add(T.MUSCLE, muscle & Above(lambda x, y: x * 0 + y * 0 - 40.0))


def floor(x, y):
    """The floor of the cranial cavity: anterior (orbit roofs), middle (temporal lobes, with the
    sella in the midline) and posterior (cerebellum) fossae."""
    s1, s2 = sigmoid((y + 18.0) / 4.0), sigmoid((y - 30.0) / 4.0)
    sella = 12.0 * np.exp(-((x / 14.0) ** 2)) * s1 * (1.0 - s2)
    return -46.0 + 22.0 * s1 + 34.0 * s2 + 0.0025 * x * x + sella


def cranium(anatomy: Anatomy, size: HeadSize):
    """Outer table, diploe, inner table and skull base; returns the cranial cavity."""
    skull, cy = _skull(size), size.centre[1]
    t_out, t_in, base = size.outer_table, size.inner_table, 7.0

    def diploe(x, y, z):  # thicker frontal and occipital bone, thin temporal squama
        return size.diploe * (1.45 - 0.9 * _lateral(size, x, y))

    def above(depth: float) -> Above:
        return Above(lambda x, y: floor(x, y) - depth)

    inner = skull.grow(lambda x, y, z: -t_out - diploe(x, y, z))
    cavity = skull.grow(lambda x, y, z: -t_out - diploe(x, y, z) - t_in) & above(0.0)
    anatomy.add(T.CORTEX, skull & above(base))
    anatomy.add(T.DIPLOE, skull.grow(-t_out) & above(base - t_out))
    anatomy.add(T.CORTEX, inner & above(t_in))
    anatomy.add(T.CSF, cavity)
    anatomy.mark("skull_vertex", (0.0, cy, size.centre[2] + size.radii[2] - 1.0))
    return cavity


def brain(anatomy: Anatomy, size: HeadSize, cavity, rng: np.random.Generator) -> None:
    """Cortex folded into gyri, white matter, fissures, deep nuclei, ventricles, cerebellum,
    brain stem."""
    _, cy, cz = size.centre
    gyri = RadialField(rng, (0.0, cy, cz - 10.0), 70.0, 14.0, 30.0, 24)
    folia = FourierField(rng, 6.0, 12.0, 16)
    hemispheres = cavity.grow(-size.csf)
    anatomy.add(T.GREY, hemispheres)

    def white_depth(x, y, z):  # white matter reaches into the gyri, stays deep under sulci
        return 3.2 + 8.0 * np.exp(-((gyri(x, y, z) / 0.7) ** 2))

    anatomy.add(T.WHITE, hemispheres.grow(lambda x, y, z: -white_depth(x, y, z)))
    band = hemispheres - hemispheres.grow(-11.0)
    anatomy.add(T.CSF, band & Level(gyri, 0.15 * size.sulcus, 3.3))  # sulci
    for s in (-1, 1):  # Sylvian fissures
        fissure = Ellipsoid(
            (s * (size.radii[0] - 22), cy + 14, -6), (14, 28, 3.0), rotation(z=s * 15, y=s * 20)
        )
        anatomy.add(T.CSF, fissure & cavity)
    w = 0.5 + 0.3 * size.sulcus
    anatomy.add(T.CSF, cavity & Prism((0, cy), (w, 300), z0=cz - 4))  # interhemispheric
    for s in (-1, 1):  # thalamus, lentiform and caudate nuclei
        anatomy.add(T.GREY, Ellipsoid((s * 10, cy - 4, cz - 12), (9, 14, 9)))
        anatomy.add(T.GREY, Ellipsoid((s * 22, cy + 12, cz - 8), (7, 15, 10)))
        anatomy.add(T.GREY, Ellipsoid((s * 13, cy + 22, cz + 2), (6, 10, 9)))
    anatomy.add(T.WHITE, Ellipsoid((0, cy + 2, cz + 7), (11, 36, 5.5)))  # corpus callosum
    v = size.ventricles
    for s in (-1, 1):  # lateral ventricles: frontal horn, body, atrium, temporal horn
        xs = 3.0 + 5.0 * v
        points = [(s * xs, cy + 28, cz - 1), (s * xs, cy + 8, cz + 2),
                  (s * (xs + 2), cy - 14, cz + 1), (s * (xs + 8), cy - 32, cz - 8),
                  (s * (xs + 17), cy - 14, cz - 26)]  # fmt: skip
        anatomy.add(T.CSF, tube(points, [4.0 * v, 4.5 * v, 4.0 * v, 5.0 * v, 2.0 * v]))
    anatomy.add(T.CSF, Ellipsoid((0, cy, cz - 13), (1.6 * v, 12, 8)))  # third ventricle
    anatomy.mark("ventricle", (3.0 + 5.0 * v, cy + 8, cz + 2))
    _posterior_fossa(anatomy, size, cavity, folia)


def _posterior_fossa(anatomy: Anatomy, size: HeadSize, cavity, folia) -> None:
    cy = size.centre[1]
    lobes = [Ellipsoid((s * 24, cy - 52, -30), (28, 24, 19)) for s in (-1, 1)]
    lobes.append(Ellipsoid((0, cy - 48, -28), (10, 20, 16)))  # vermis
    inside = cavity.grow(-size.csf)
    anatomy.add(T.CSF, [lobe.grow(1.5) & cavity for lobe in lobes])  # tentorium, cisterns
    anatomy.add(T.GREY, [lobe & inside for lobe in lobes])
    anatomy.add(T.WHITE, [Ellipsoid((s * 20, cy - 46, -28), (12, 10, 8)) for s in (-1, 1)])
    anatomy.add(T.CSF, [lobe & Level(folia, 0.12, 1.5) & inside.grow(-1) for lobe in lobes[:2]])
    anatomy.add(T.CSF, Ellipsoid((0, cy - 29, -26), (5, 4, 7)))  # fourth ventricle
    stem = [(0, cy - 2, size.centre[2] - 18), (0, cy - 10, -14), (0, cy - 14, -34), (0, -26, -48)]
    anatomy.add(T.CSF, Capsule((0, -22, -30), (0, -29, -60), 14.0, 9.0))  # foramen magnum
    anatomy.add(T.WHITE, tube(stem, [11.0, 13.0, 10.0, 8.0]))  # midbrain, pons, medulla
    anatomy.add(T.SOFT, Ellipsoid((0, 12, -8), (6, 5, 4)))  # pituitary
