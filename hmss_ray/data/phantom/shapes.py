"""Solids in patient millimetres, as approximate signed distances (mm, negative inside).

Patient coordinates: x towards the patient's right, y anterior, z superior (RAS), in mm. A shape
knows its bounding box, so painting it touches only the voxels near it, whatever the voxel size;
distances (not inside/outside tests) let the painter give every voxel the fraction of it that the
shape covers, so thin structures (a 1.5 mm skull table) still show at 4 mm voxels.

Coordinates arrive as three broadcastable float32 arrays (x of shape (n, 1, 1), ...); every
parameter is a Python float so that NumPy keeps float32 throughout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Field = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
INF = float("inf")


class Shape:
    """A solid: ``sdf(x, y, z)`` in mm and ``bounds()`` (lower, upper corners in mm)."""

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.full(3, -INF), np.full(3, INF)

    def grow(self, mm: float | Field, most: float | None = None) -> Shape:
        """This shape grown by ``mm`` (shrunk when negative; a field may vary in space,
        ``most`` then bounds it)."""
        return Offset(self, mm, most)

    def __and__(self, other: Shape) -> Shape:
        return Intersection(self, other)

    def __or__(self, other: Shape) -> Shape:
        return Union(self, other)

    def __sub__(self, other: Shape) -> Shape:
        return Intersection(self, Complement(other))


def rotation(z: float = 0.0, y: float = 0.0, x: float = 0.0) -> np.ndarray:
    """Rotation matrix (degrees about z, then y, then x), for a shape's local axes."""
    a, b, c = np.radians([z, y, x])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rx = np.array([[1, 0, 0], [0, np.cos(c), -np.sin(c)], [0, np.sin(c), np.cos(c)]])
    return rz @ ry @ rx


def _floats(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


class Ellipsoid(Shape):
    """An ellipsoid, optionally rotated (``rot`` maps local axes to patient axes)."""

    def __init__(
        self, centre: Sequence[float], radii: Sequence[float], rot: np.ndarray | None = None
    ) -> None:
        self.c, self.r = _floats(centre), _floats(radii)
        self.rot = None if rot is None else np.asarray(rot, dtype=np.float64)

    def _local(self, x, y, z):
        dx, dy, dz = x - self.c[0], y - self.c[1], z - self.c[2]
        if self.rot is None:
            return dx, dy, dz
        m = [[float(v) for v in row] for row in self.rot]  # local = rot^T @ d
        return tuple(m[0][i] * dx + m[1][i] * dy + m[2][i] * dz for i in range(3))

    def sdf(self, x, y, z):
        u, v, w = self._local(x, y, z)
        a, b, c = self.r
        k0 = np.sqrt((u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2)
        k1 = np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2 + (w / c**2) ** 2)
        # (k0 - 1) k0 / k1 is the distance near the surface; k0 / k1 lies between the smallest
        # and largest radius (exact for a sphere), which also settles the centre (0 / 0)
        np.maximum(k1, 1e-12, out=k1)
        ratio = np.clip(np.divide(k0, k1, out=k1), min(self.r), max(self.r), out=k1)
        k0 -= 1.0
        k0 *= ratio
        return k0

    def bounds(self):
        radii = np.asarray(self.r)
        half = radii if self.rot is None else np.sqrt((self.rot**2) @ (radii**2))
        return np.asarray(self.c) - half, np.asarray(self.c) + half


def Sphere(centre: Sequence[float], radius: float) -> Ellipsoid:
    return Ellipsoid(centre, (radius, radius, radius))


class Capsule(Shape):
    """A rounded tube from ``a`` to ``b``, its radius going linearly from ``ra`` to ``rb``."""

    def __init__(self, a: Sequence[float], b: Sequence[float], ra: float, rb: float | None = None):
        self.a, self.b = _floats(a), _floats(b)
        self.ra, self.rb = float(ra), float(ra if rb is None else rb)

    def sdf(self, x, y, z):
        (ax, ay, az), (bx, by, bz) = self.a, self.b
        ux, uy, uz = bx - ax, by - ay, bz - az
        length2 = max(ux * ux + uy * uy + uz * uz, 1e-9)
        px, py, pz = x - ax, y - ay, z - az
        h = np.clip((px * ux + py * uy + pz * uz) / length2, 0.0, 1.0)
        dist = np.sqrt((px - h * ux) ** 2 + (py - h * uy) ** 2 + (pz - h * uz) ** 2)
        return dist - (self.ra + (self.rb - self.ra) * h)

    def bounds(self):
        r = max(self.ra, self.rb)
        a, b = np.asarray(self.a), np.asarray(self.b)
        return np.minimum(a, b) - r, np.maximum(a, b) + r


def tube(points: Sequence[Sequence[float]], radii: float | Sequence[float]) -> list[Capsule]:
    """A bent tube through ``points`` as joined capsules (radius per point, or one radius)."""
    rs = [float(radii)] * len(points) if np.isscalar(radii) else [float(r) for r in radii]
    return [Capsule(points[i], points[i + 1], rs[i], rs[i + 1]) for i in range(len(points) - 1)]


class Prism(Shape):
    """A superelliptic cylinder along z: ``|u/a|^p + |v/b|^p <= 1`` between ``z0`` and ``z1``,
    in-plane rotated by ``angle`` degrees; ``profile(z)`` scales both radii along z."""

    def __init__(
        self,
        centre: Sequence[float],
        radii: Sequence[float],
        z0: float = -INF,
        z1: float = INF,
        power: float = 2.0,
        angle: float = 0.0,
        profile: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.c, self.r, self.z0, self.z1 = _floats(centre), _floats(radii), float(z0), float(z1)
        self.p, self.profile = float(power), profile
        self.cs, self.sn = float(np.cos(np.radians(angle))), float(np.sin(np.radians(angle)))

    def sdf(self, x, y, z):
        dx, dy = x - self.c[0], y - self.c[1]
        u, v = self.cs * dx + self.sn * dy, -self.sn * dx + self.cs * dy
        scale = 1.0 if self.profile is None else self.profile(z)
        a, b, p = self.r[0] * scale, self.r[1] * scale, self.p
        au, av = np.abs(u) / a + 1e-6, np.abs(v) / b + 1e-6
        q = (au**p + av**p) ** (1 / p)
        grad = q ** (1 - p) * np.sqrt((au ** (p - 1) / a) ** 2 + (av ** (p - 1) / b) ** 2)
        d = np.where(q < 0.5, (q - 1) * np.minimum(a, b), (q - 1) / grad)
        return np.maximum(d, np.maximum(self.z0 - z, z - self.z1))

    def bounds(self):
        most = 1.0
        if self.profile is not None:
            lo, hi = max(self.z0, -1000.0), min(self.z1, 1000.0)
            most = float(np.max(self.profile(np.linspace(lo, hi, 201, dtype=np.float32))))
        half = max(self.r) * most
        lo = np.array([self.c[0] - half, self.c[1] - half, self.z0])
        return lo, np.array([self.c[0] + half, self.c[1] + half, self.z1])


class Above(Shape):
    """Everything above the surface ``z = f(x, y)``."""

    def __init__(self, surface: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
        self.f = surface

    def sdf(self, x, y, z):
        return self.f(x, y) - z


class HalfSpace(Shape):
    """Everything on the side of the plane through ``point`` that ``normal`` points away from."""

    def __init__(self, point: Sequence[float], normal: Sequence[float]) -> None:
        n = np.asarray(normal, dtype=np.float64)
        self.n = _floats(n / np.linalg.norm(n))
        self.d = float(np.dot(self.n, point))

    def sdf(self, x, y, z):
        return self.n[0] * x + self.n[1] * y + self.n[2] * z - self.d


class Level(Shape):
    """Where a smooth random field is near zero: ``|field| < width`` (sulci, folia).

    ``mm_per_unit`` turns field units into millimetres near the zero level (1 / the gradient).
    """

    def __init__(self, field: Field, width: float, mm_per_unit: float) -> None:
        self.field, self.w, self.k = field, float(width), float(mm_per_unit)

    def sdf(self, x, y, z):
        return (np.abs(self.field(x, y, z)) - self.w) * self.k


class Offset(Shape):
    def __init__(self, shape: Shape, mm: float | Field, most: float | None) -> None:
        self.shape, self.mm = shape, mm
        self.most = float(mm) if most is None and not callable(mm) else float(most or 0.0)

    def sdf(self, x, y, z):
        amount = self.mm(x, y, z) if callable(self.mm) else float(self.mm)
        return self.shape.sdf(x, y, z) - amount

    def bounds(self):
        lo, hi = self.shape.bounds()
        grow = max(self.most, 0.0)
        return lo - grow, hi + grow


class Complement(Shape):
    def __init__(self, shape: Shape) -> None:
        self.shape = shape

    def sdf(self, x, y, z):
        return -self.shape.sdf(x, y, z)


class Intersection(Shape):
    def __init__(self, *shapes: Shape) -> None:
        self.shapes = shapes

    def sdf(self, x, y, z):
        out = self.shapes[0].sdf(x, y, z)
        for shape in self.shapes[1:]:
            out = np.maximum(out, shape.sdf(x, y, z))
        return out

    def bounds(self):
        boxes = [s.bounds() for s in self.shapes]
        return np.max([b[0] for b in boxes], axis=0), np.min([b[1] for b in boxes], axis=0)


class Union(Shape):
    def __init__(self, *shapes: Shape) -> None:
        self.shapes = shapes

    def sdf(self, x, y, z):
        out = self.shapes[0].sdf(x, y, z)
        for shape in self.shapes[1:]:
            out = np.minimum(out, shape.sdf(x, y, z))
        return out

    def bounds(self):
        boxes = [s.bounds() for s in self.shapes]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)


class FourierField:
    """A smooth random field of unit variance: a sum of plane waves with random directions,
    wavelengths in ``[shortest, longest]`` mm and phases. Defined everywhere in mm, so the same
    patient gets the same texture at any voxel size."""

    def __init__(
        self, rng: np.random.Generator, shortest: float, longest: float, modes: int = 16
    ) -> None:
        direction = rng.standard_normal((modes, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        wavelength = np.exp(rng.uniform(np.log(shortest), np.log(longest), modes))
        self.k = (2 * np.pi / wavelength)[:, None] * direction
        self.phase = rng.uniform(0, 2 * np.pi, modes)
        self.scale = float(np.sqrt(2.0 / modes))

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        shape = np.broadcast_shapes(x.shape, y.shape, z.shape)
        out, tmp = np.zeros(shape, np.float32), np.empty(shape, np.float32)
        for (kx, ky, kz), phase in zip(self.k, self.phase, strict=True):
            # cos(kx x + ky y + kz z + phase) = Re(e^i(kx x + phase) e^i ky y e^i kz z): on a
            # grid (x, y, z along their own axes) the full volume sees two real multiplies
            xy = np.exp(1j * (float(kx) * x + float(phase))) * np.exp(1j * (float(ky) * y))
            ez = np.exp(1j * (float(kz) * z))
            np.multiply(xy.real.astype(np.float32), ez.real.astype(np.float32), out=tmp)
            out += tmp
            np.multiply(xy.imag.astype(np.float32), ez.imag.astype(np.float32), out=tmp)
            out -= tmp
        out *= self.scale
        return out


class RadialField(FourierField):
    """A :class:`FourierField` on the sphere of ``radius`` mm round ``centre``, constant along
    each ray from the centre: its level sets are sheets standing perpendicular to any surface
    round the centre (sulci cut into the cortex, not along it)."""

    def __init__(self, rng, centre, radius, shortest, longest, modes: int = 16) -> None:
        super().__init__(rng, shortest, longest, modes)
        self.c, self.radius = _floats(centre), float(radius)

    def __call__(self, x, y, z):
        dx, dy, dz = x - self.c[0], y - self.c[1], z - self.c[2]
        scale = self.radius / (np.sqrt(dx * dx + dy * dy + dz * dz) + 1e-3)
        out = None
        for (kx, ky, kz), phase in zip(self.k, self.phase, strict=True):
            wave = np.cos((float(kx) * dx + float(ky) * dy + float(kz) * dz) * scale + float(phase))
            out = wave if out is None else out + wave
        return out * self.scale
