"""Procedural part-labelled meshes for the synthetic datasets (see ``datasets/synthetic/generator.py``).

Every object is an assembly of primitives (boxes, general hexahedra, frusta/cylinders/cones,
(super-)ellipsoids, surfaces of revolution, tori) built with plain numpy. Each primitive carries the
name of the part it belongs to, so point labels come from the primitives. Coordinates follow
ShapeNet: y is up, x is the object's length/front axis, z its width. Families differ by structure
(which parts exist and how they are arranged); within a family, proportions and optional sub-parts
are random, so no single scalar (size, aspect ratio, point count) separates the classes.

Public API:
- ``PartMesh``: vertices (V, 3) float64, faces (F, 3) int64, face_part (F,) int64, part_names.
- ``build_object(family, rng) -> PartMesh`` (the unnormalized object, arbitrary scale).
- ``FAMILIES``: family name -> part vocabulary (tuple of part names; ShapeNetPart categories use the
  official part order).
- ``normalize_bbox_diagonal(mesh) -> PartMesh`` centred, bounding-box diagonal 1 (ShapeNetCore v1).

Rotations, face normals and areas, surface sampling and the unit-sphere normalisation are in
``datasets/making/common.py`` (shared with mesh preparation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from datasets.making.common import rot

Prim = tuple[np.ndarray, np.ndarray]  # (vertices (V, 3) float64, faces (F, 3) int64)


@dataclass
class PartMesh:
    """A triangle mesh whose faces carry part labels.

    vertices: (V, 3) float64; faces: (F, 3) int64 (counter-clockwise seen from outside);
    face_part: (F,) int64 index into ``part_names``.
    """

    vertices: np.ndarray
    faces: np.ndarray
    face_part: np.ndarray
    part_names: tuple[str, ...]


# ----------------------------------------------------------------------------------------------
# Small linear-algebra helpers
# ----------------------------------------------------------------------------------------------


def xf(prim: Prim, R: np.ndarray | None = None, t: Sequence[float] | None = None,
       s: Sequence[float] | None = None) -> Prim:
    """Scale (per axis, positive), then rotate, then translate a primitive."""
    v, f = prim
    if s is not None:
        v = v * np.asarray(s, dtype=np.float64)  # (V, 3)
    if R is not None:
        v = v @ np.asarray(R, dtype=np.float64).T
    if t is not None:
        v = v + np.asarray(t, dtype=np.float64)
    return v, f


def _frame(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orthonormal (u, v, w) with w along ``direction``."""
    w = direction / np.linalg.norm(direction)
    # for vertical axes u is +-x, so an elliptic cross-section (``ratio``) is long along x
    helper = np.array([0.0, 1.0, 0.0]) if abs(w[1]) < 0.9 else np.array([0.0, 0.0, -1.0])
    u = np.cross(helper, w)
    u /= np.linalg.norm(u)
    v = np.cross(w, u)
    return u, v, w


def _signed_volume(v: np.ndarray, f: np.ndarray) -> float:
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def _orient(prim: Prim) -> Prim:
    """Flip the winding if the closed primitive has negative signed volume (e.g. mirrored corners)."""
    v, f = prim
    if _signed_volume(v, f) < 0:
        f = f[:, ::-1].copy()
    return v, f


# ----------------------------------------------------------------------------------------------
# Primitives (closed, outward-facing triangle meshes)
# ----------------------------------------------------------------------------------------------

# Corners of a hexahedron are indexed by bits: index = xbit + 2 * ybit + 4 * zbit.
_HEXA_QUADS = np.array([
    [0, 4, 6, 2],  # -x
    [1, 3, 7, 5],  # +x
    [0, 1, 5, 4],  # -y
    [2, 6, 7, 3],  # +y
    [0, 2, 3, 1],  # -z
    [4, 5, 7, 6],  # +z
])
_HEXA_FACES = np.concatenate([_HEXA_QUADS[:, [0, 1, 2]], _HEXA_QUADS[:, [0, 2, 3]]], axis=0)
_UNIT_CUBE = np.array([[(i & 1), (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], dtype=np.float64) - 0.5


def hexa(corners: np.ndarray) -> Prim:
    """General hexahedron from 8 corners (index = xbit + 2*ybit + 4*zbit); auto-oriented."""
    return _orient((np.asarray(corners, dtype=np.float64).copy(), _HEXA_FACES.copy()))


def box(center: Sequence[float], size: Sequence[float], R: np.ndarray | None = None) -> Prim:
    """Axis-aligned box of ``size`` (then rotated by R about its centre) at ``center``."""
    v = _UNIT_CUBE * np.asarray(size, dtype=np.float64)  # (8, 3)
    if R is not None:
        v = v @ np.asarray(R).T
    return v + np.asarray(center, dtype=np.float64), _HEXA_FACES.copy()


def frustum(p0: Sequence[float], p1: Sequence[float], r0: float, r1: float, n: int = 16,
            ratio: float = 1.0, caps: bool = True, phase: float = 0.0) -> Prim:
    """Truncated cone from p0 (radius r0) to p1 (radius r1); ``ratio`` squashes the cross-section."""
    p0 = np.asarray(p0, dtype=np.float64)
    p1 = np.asarray(p1, dtype=np.float64)
    u, v, _ = _frame(p1 - p0)
    th = phase + np.arange(n) * (2 * np.pi / n)
    ring = np.cos(th)[:, None] * u + ratio * np.sin(th)[:, None] * v  # (n, 3)
    verts = [p0 + r0 * ring, p1 + r1 * ring]
    i = np.arange(n)
    j = (i + 1) % n
    faces = [np.stack([i, j, n + j], 1), np.stack([i, n + j, n + i], 1)]
    if caps:
        verts.append(np.stack([p0, p1]))
        c0, c1 = 2 * n, 2 * n + 1
        faces.append(np.stack([np.full(n, c0), j, i], 1))
        faces.append(np.stack([np.full(n, c1), n + i, n + j], 1))
    return _orient((np.concatenate(verts), np.concatenate(faces).astype(np.int64)))


def cyl(p0: Sequence[float], p1: Sequence[float], r: float, n: int = 16, ratio: float = 1.0) -> Prim:
    """Cylinder of radius r between two points."""
    return frustum(p0, p1, r, r, n=n, ratio=ratio)


def ellipsoid(center: Sequence[float], radii: Sequence[float], R: np.ndarray | None = None,
              n_lat: int = 8, n_lon: int = 14, power: float = 1.0) -> Prim:
    """(Super-)ellipsoid; power < 1 gives boxier shapes (cushions), 1 a plain ellipsoid."""
    lat = np.linspace(0, np.pi, n_lat + 1)[1:-1]
    lon = np.arange(n_lon) * (2 * np.pi / n_lon)
    sl, cl = np.sin(lat)[:, None], np.cos(lat)[:, None]
    ring = np.stack([sl * np.cos(lon)[None], cl * np.ones_like(lon)[None], sl * np.sin(lon)[None]], -1)
    v = np.concatenate([[[0.0, 1.0, 0.0]], ring.reshape(-1, 3), [[0.0, -1.0, 0.0]]])  # (2+(n_lat-1)*n_lon, 3)
    if power != 1.0:
        v = np.sign(v) * np.abs(v) ** power
    v = v * np.asarray(radii, dtype=np.float64)
    if R is not None:
        v = v @ np.asarray(R).T
    v = v + np.asarray(center, dtype=np.float64)
    faces = []
    j = np.arange(n_lon)
    jn = (j + 1) % n_lon
    faces.append(np.stack([np.zeros(n_lon, dtype=np.int64), 1 + jn, 1 + j], 1))
    for k in range(n_lat - 2):
        a, b = 1 + k * n_lon, 1 + (k + 1) * n_lon
        faces.append(np.stack([a + j, a + jn, b + jn], 1))
        faces.append(np.stack([a + j, b + jn, b + j], 1))
    last = 1 + (n_lat - 2) * n_lon
    bottom = len(v) - 1
    faces.append(np.stack([np.full(n_lon, bottom), last + j, last + jn], 1))
    return _orient((v, np.concatenate(faces).astype(np.int64)))


def lathe(profile: Sequence[Sequence[float]], n: int = 20, a0: float = 0.0, a1: float = 2 * np.pi,
          caps: bool = False) -> Prim:
    """Surface of revolution about the y axis.

    profile: (K, 2) points (radius, y) tracing the cross-section boundary with the solid on the left
    (e.g. axis-bottom -> outer wall -> axis-top for a solid; include an inner wall for a hollow cup).
    A partial sweep [a0, a1] closes its ends with fans (``caps``; the profile must then be convex).
    """
    prof = np.asarray(profile, dtype=np.float64)
    full = abs((a1 - a0) - 2 * np.pi) < 1e-9
    if full and prof[0, 0] > 0 and prof[-1, 0] > 0:
        prof = np.concatenate([prof, prof[:1]])  # a ring (lamp shade, foot ring): close the cross-section
    k = len(prof)
    m = n if full else n + 1
    th = a0 + np.arange(m) * ((a1 - a0) / n)
    # (m, k, 3): x = r cos, y, z = -r sin (so increasing angle is counter-clockwise seen from +y)
    v = np.stack([prof[None, :, 0] * np.cos(th)[:, None], np.broadcast_to(prof[None, :, 1], (m, k)),
                  -prof[None, :, 0] * np.sin(th)[:, None]], -1)
    v = v.reshape(-1, 3)  # (m * k, 3)
    faces = []
    for a in range(n):
        b = (a + 1) % m
        i = np.arange(k - 1)
        p, q = a * k + i, b * k + i
        faces.append(np.stack([p, q, q + 1], 1))
        faces.append(np.stack([p, q + 1, p + 1], 1))
    f = np.concatenate(faces).astype(np.int64)
    if not full and caps:
        i = np.arange(1, k - 1)
        start = np.stack([np.zeros_like(i), i + 1, i], 1)
        end = np.stack([np.zeros_like(i), i, i + 1], 1) + (m - 1) * k
        f = np.concatenate([f, start, end])
    return _orient((v, f)) if (full or caps) else (v, f)


def torus(center: Sequence[float], major: float, minor: float, R: np.ndarray | None = None,
          a0: float = 0.0, a1: float = 2 * np.pi, n_major: int = 20, n_minor: int = 8,
          ratio: float = 1.0) -> Prim:
    """Torus (or arc of one) lying in the local xy plane around the local z axis, then rotated by R.

    ``ratio`` squashes the tube cross-section along z (flat straps/headbands).
    """
    full = abs((a1 - a0) - 2 * np.pi) < 1e-9
    m = n_major if full else n_major + 1
    th = a0 + np.arange(m) * ((a1 - a0) / n_major)
    ph = np.arange(n_minor) * (2 * np.pi / n_minor)
    radial = np.stack([np.cos(th), np.sin(th), np.zeros_like(th)], -1)  # (m, 3)
    rr = major + minor * np.cos(ph)  # (n_minor,)
    v = radial[:, None, :] * rr[None, :, None]
    v[..., 2] = ratio * minor * np.sin(ph)[None, :]
    v = v.reshape(-1, 3)  # (m * n_minor, 3)
    faces = []
    j = np.arange(n_minor)
    jn = (j + 1) % n_minor
    for a in range(n_major):
        b = (a + 1) % m
        faces.append(np.stack([a * n_minor + j, b * n_minor + j, b * n_minor + jn], 1))
        faces.append(np.stack([a * n_minor + j, b * n_minor + jn, a * n_minor + jn], 1))
    f = np.concatenate(faces).astype(np.int64)
    if not full:
        centers = np.stack([radial[0] * major, radial[-1] * major])
        c0, c1 = len(v), len(v) + 1
        v = np.concatenate([v, centers])
        f = np.concatenate([f, np.stack([np.full(n_minor, c0), jn, j], 1),
                            np.stack([np.full(n_minor, c1), (m - 1) * n_minor + j,
                                      (m - 1) * n_minor + jn], 1)])
    if R is not None:
        v = v @ np.asarray(R).T
    v = v + np.asarray(center, dtype=np.float64)
    return _orient((v, f))


def tube_path(points: Sequence[Sequence[float]], r: float, n: int = 8) -> list[Prim]:
    """Cylinders along a polyline (cords, frames, rails)."""
    pts = np.asarray(points, dtype=np.float64)
    return [cyl(pts[i], pts[i + 1], r, n=n) for i in range(len(pts) - 1)]


def planform(root_le: Sequence[float], chord_dir: Sequence[float], root_chord: float,
             span: Sequence[float], sweep: float, tip_chord: float, t_root: float,
             t_tip: float) -> Prim:
    """A tapered, swept flat plate (wing, fin, stabilizer, sail, blade).

    root_le: leading-edge point at the root; chord_dir: unit vector from trailing to leading edge;
    span: vector from root to tip; sweep: how far the tip's leading edge sits behind the root's.
    """
    p = np.asarray(root_le, dtype=np.float64)
    cd = np.asarray(chord_dir, dtype=np.float64)
    cd = cd / np.linalg.norm(cd)
    sp = np.asarray(span, dtype=np.float64)
    nrm = np.cross(cd, sp)
    nrm = nrm / np.linalg.norm(nrm)
    tip = p + sp - sweep * cd
    pts = {}
    for zb, (le, ch, t) in enumerate([(p, root_chord, t_root), (tip, tip_chord, t_tip)]):
        for xb, q in enumerate([le - ch * cd, le]):
            for yb, sgn in enumerate([-1.0, 1.0]):
                pts[xb + 2 * yb + 4 * zb] = q + sgn * 0.5 * t * nrm
    return hexa(np.stack([pts[i] for i in range(8)]))


# ----------------------------------------------------------------------------------------------
# Mesh assembly
# ----------------------------------------------------------------------------------------------


class Builder:
    """Collects primitives with part names; ``vocab`` fixes the part order (ShapeNetPart)."""

    def __init__(self, vocab: Sequence[str]):
        self.vocab = tuple(vocab)
        self._index = {name: i for i, name in enumerate(self.vocab)}
        self._v: list[np.ndarray] = []
        self._f: list[np.ndarray] = []
        self._p: list[np.ndarray] = []
        self._nv = 0

    def add(self, part: str, *prims: Prim | list[Prim]) -> None:
        if part not in self._index:
            raise KeyError(f"part {part!r} is not in this family's vocabulary {self.vocab}")
        for prim in prims:
            if isinstance(prim, list):
                self.add(part, *prim)
                continue
            v, f = prim
            self._v.append(v)
            self._f.append(f + self._nv)
            self._p.append(np.full(len(f), self._index[part], dtype=np.int64))
            self._nv += len(v)

    def build(self) -> PartMesh:
        return PartMesh(np.concatenate(self._v), np.concatenate(self._f), np.concatenate(self._p),
                        self.vocab)


def transform(mesh: PartMesh, R: np.ndarray | None = None, t: Sequence[float] | None = None,
              scale: float = 1.0) -> PartMesh:
    """Returns a copy with vertices -> (scale * v) @ R.T + t."""
    v = mesh.vertices * scale
    if R is not None:
        v = v @ np.asarray(R).T
    if t is not None:
        v = v + np.asarray(t, dtype=np.float64)
    return PartMesh(v, mesh.faces, mesh.face_part, mesh.part_names)


def normalize_bbox_diagonal(mesh: PartMesh) -> PartMesh:
    """Centre the bounding box at the origin and scale its diagonal to 1 (ShapeNetCore v1 convention)."""
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    return transform(mesh, t=-(lo + hi) / 2 / np.linalg.norm(hi - lo), scale=1.0 / np.linalg.norm(hi - lo))


# ----------------------------------------------------------------------------------------------
# Families. Each builder gets an rng and a Builder; units are arbitrary (normalized later).
# ----------------------------------------------------------------------------------------------

def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _p(rng: np.random.Generator, prob: float) -> bool:
    return bool(rng.random() < prob)


def _pick(rng: np.random.Generator, options: Sequence[str], probs: Sequence[float]) -> str:
    return str(options[int(rng.choice(len(options), p=np.asarray(probs) / np.sum(probs)))])


def _legs_four(rng: np.random.Generator, x_half: float, z_half: float, top: float, thick: float, splay: float = 0.0,
               round_legs: bool | None = None) -> list[Prim]:
    round_legs = _p(rng, 0.45) if round_legs is None else round_legs
    legs = []
    for sx in (-1, 1):
        for sz in (-1, 1):
            p1 = (sx * x_half, top, sz * z_half)
            p0 = (sx * (x_half + splay), 0.0, sz * (z_half + splay))
            if round_legs:
                legs.append(frustum(p0, p1, thick * 0.42, thick * 0.5, n=10))
            else:
                legs.append(frustum(p0, p1, thick * 0.7, thick * 0.7, n=4, phase=np.pi / 4))
    return legs


def _airplane(r: np.random.Generator, b: Builder) -> None:
    L = 1.0
    rad = L * _u(r, 0.035, 0.075)
    nose, tailc = L * _u(r, 0.08, 0.2), L * _u(r, 0.18, 0.32)
    prof = [(0, 0), (rad * _u(r, 0.1, 0.35), 0), (rad, tailc), (rad, L - nose),
            (rad * 0.65, L - nose * 0.4), (0, L)]
    body = xf(lathe(prof, n=16), R=rot("z", -np.pi / 2), t=(-L / 2, 0, 0))
    b.add("body", body)
    yw = rad * float(r.choice([-0.6, 0.0, 0.55], p=[0.5, 0.25, 0.25]))  # low / mid / high wing
    span = L * _u(r, 0.35, 0.6)
    cr = L * _u(r, 0.12, 0.28)
    x_le = L * _u(r, -0.02, 0.16)
    sweep = L * _u(r, 0.0, 0.22)
    taper = _u(r, 0.25, 0.8)
    dih = _u(r, -0.02, 0.12)
    for sz in (-1, 1):
        b.add("wing", planform((x_le + cr / 2, yw, 0), (1, 0, 0), cr, (0, span * dih, sz * span), sweep,
                               cr * taper, cr * 0.12, cr * taper * 0.1))
    # tail: vertical fin and horizontal stabilizer (conventional or T-tail)
    fin_h = L * _u(r, 0.1, 0.2)
    fin_c = L * _u(r, 0.1, 0.18)
    x_tail = -L / 2 + fin_c + tailc * 0.1
    b.add("tail", planform((x_tail, rad * 0.5, 0), (1, 0, 0), fin_c, (0, fin_h, 0), fin_c * _u(r, 0.3, 0.8),
                           fin_c * _u(r, 0.4, 0.7), fin_c * 0.1, fin_c * 0.06))
    t_tail = _p(r, 0.25)
    hs_y = rad * 0.5 + fin_h * 0.95 if t_tail else rad * _u(r, -0.1, 0.4)
    hs_x = x_tail - (fin_c * 0.5 if t_tail else 0.0)
    hs_span, hs_c = L * _u(r, 0.1, 0.2), fin_c * _u(r, 0.8, 1.1)
    for sz in (-1, 1):
        b.add("tail", planform((hs_x + (0.6 * fin_c if t_tail else 0), hs_y, 0), (1, 0, 0), hs_c,
                               (0, 0, sz * hs_span), hs_c * 0.4, hs_c * 0.5, hs_c * 0.1, hs_c * 0.06))
    n_eng = int(r.choice([0, 2, 4], p=[0.15, 0.65, 0.2]))
    rear = _p(r, 0.15) and n_eng == 2
    er, el = rad * _u(r, 0.3, 0.55), L * _u(r, 0.1, 0.2)
    if rear:
        for sz in (-1, 1):
            c = (-L / 2 + tailc * 1.4, rad * 0.6, sz * (rad + er * 1.3))
            b.add("engine", cyl((c[0] - el / 2, c[1], c[2]), (c[0] + el / 2, c[1], c[2]), er, n=12),
                  box((c[0], c[1], sz * (rad + er * 0.4)), (el * 0.5, er * 0.4, er * 1.6)))
    elif n_eng:
        spots = [0.35] if n_eng == 2 else [0.3, 0.62]
        for frac in spots:
            for sz in (-1, 1):
                z = sz * span * frac
                x = x_le - sweep * frac + cr * 0.3
                y = yw + span * dih * frac - er * 1.6
                b.add("engine", cyl((x - el * 0.55, y, z), (x + el * 0.45, y, z), er, n=12),
                      box((x, y + er * 0.9, z), (el * 0.5, er * 1.2, er * 0.3)))


def _car(r: np.random.Generator, b: Builder) -> None:
    L = 1.0
    W = L * _u(r, 0.38, 0.5)
    kind = _pick(r, ["sedan", "hatch", "suv", "pickup", "sport"], [0.35, 0.2, 0.2, 0.1, 0.15])
    wr = L * _u(r, 0.075, 0.11) * (1.15 if kind in ("suv", "pickup") else 1.0)
    clear = wr * _u(r, 0.3, 0.6)
    bh = L * _u(r, 0.12, 0.2) * (0.8 if kind == "sport" else 1.0)
    y0 = clear
    hood_len = L * _u(r, 0.22, 0.34)
    # lower body: the rear/middle part is "body"; the front top region is the "hood"
    b.add("body", box((-hood_len / 2, y0 + bh / 2, 0), (L - hood_len, bh, W)))
    b.add("hood", hexa(np.stack([
        (L / 2 - hood_len, y0, -W / 2), (L / 2, y0, -W / 2), (L / 2 - hood_len, y0 + bh, -W / 2),
        (L / 2, y0 + bh * _u(r, 0.75, 0.95), -W / 2),
        (L / 2 - hood_len, y0, W / 2), (L / 2, y0, W / 2), (L / 2 - hood_len, y0 + bh, W / 2),
        (L / 2, y0 + bh * _u(r, 0.75, 0.95), W / 2)])))
    # cabin / roof
    rh = L * (_u(r, 0.1, 0.16) if kind != "sport" else _u(r, 0.07, 0.1))
    if kind == "suv":
        rh *= 1.3
    rear_x = -L / 2 + (L * _u(r, 0.12, 0.22) if kind in ("sedan", "sport") else L * _u(r, 0.02, 0.06))
    if kind == "pickup":
        rear_x = -L / 2 + L * _u(r, 0.35, 0.45)
    front_x = L / 2 - hood_len
    ws = (front_x - rear_x) * _u(r, 0.2, 0.35)
    bs = (front_x - rear_x) * (_u(r, 0.05, 0.15) if kind in ("hatch", "suv", "pickup") else _u(r, 0.2, 0.35))
    yt = y0 + bh
    wt = W * _u(r, 0.82, 0.95)
    b.add("roof", hexa(np.stack([
        (rear_x, yt, -W / 2 * 0.98), (front_x, yt, -W / 2 * 0.98), (rear_x + bs, yt + rh, -wt / 2),
        (front_x - ws, yt + rh, -wt / 2), (rear_x, yt, W / 2 * 0.98), (front_x, yt, W / 2 * 0.98),
        (rear_x + bs, yt + rh, wt / 2), (front_x - ws, yt + rh, wt / 2)])))
    if kind == "pickup":
        b.add("body", box((-L / 2 + 0.02 * L, yt + rh * 0.25, 0), (0.04 * L, rh * 0.5, W)))
    if _p(r, 0.2):
        b.add("body", box((-L / 2 + 0.03 * L, yt + rh * 0.3, 0), (0.05 * L, 0.015 * L, W * 0.9)))
    wb = L * _u(r, 0.28, 0.36)
    ww = W * _u(r, 0.16, 0.24)
    for sx in (-1, 1):
        for sz in (-1, 1):
            z = sz * (W / 2 - ww * 0.35)
            x = sx * wb - (0.02 if sx > 0 else 0.0)
            b.add("wheel", cyl((x, wr, z - ww / 2), (x, wr, z + ww / 2), wr, n=16))


def _chair(r: np.random.Generator, b: Builder) -> None:
    w, d = _u(r, 0.4, 0.6), _u(r, 0.38, 0.58)
    sh, st = _u(r, 0.38, 0.5), _u(r, 0.03, 0.09)
    soft = _p(r, 0.3)
    if soft:
        b.add("seat", ellipsoid((0, sh - st / 2, 0), (d / 2, st / 2 + 0.01, w / 2), power=0.35))
    else:
        b.add("seat", box((0, sh - st / 2, 0), (d, st, w)))
    style = _pick(r, ["four", "swivel", "sled", "panel"], [0.55, 0.2, 0.1, 0.15])
    top = sh - st
    if style == "four":
        t = _u(r, 0.025, 0.05)
        b.add("leg", _legs_four(r, d / 2 - t, w / 2 - t, top, t, splay=_u(r, 0.0, 0.05)))
        if _p(r, 0.3):
            yb = _u(r, 0.08, 0.2)
            for sz in (-1, 1):
                b.add("leg", cyl((-d / 2 + t, yb, sz * (w / 2 - t)), (d / 2 - t, yb, sz * (w / 2 - t)), t * 0.3, n=6))
    elif style == "swivel":
        cr = _u(r, 0.02, 0.035)
        yb = _u(r, 0.05, 0.09)
        b.add("leg", cyl((0, yb, 0), (0, top, 0), cr, n=12))
        n_star = int(r.choice([4, 5], p=[0.3, 0.7]))
        reach = _u(r, 0.22, 0.32)
        for k in range(n_star):
            a = 2 * np.pi * k / n_star + 0.3
            tip = (reach * np.cos(a), yb * 0.5, reach * np.sin(a))
            b.add("leg", cyl((0, yb, 0), tip, cr * 0.6, n=6), ellipsoid((tip[0], 0.02, tip[2]), (0.025, 0.02, 0.025)))
    elif style == "sled":
        t = _u(r, 0.012, 0.025)
        for sz in (-1, 1):
            z = sz * (w / 2 - t)
            rail = [(d / 2 - 0.02, top, z), (d / 2, 0.01, z), (-d / 2, 0.01, z), (-d / 2 + 0.02, top, z)]
            b.add("leg", tube_path(rail, t))
    else:
        t = _u(r, 0.02, 0.04)
        for sz in (-1, 1):
            b.add("leg", box((0, top / 2, sz * (w / 2 - t / 2)), (d * _u(r, 0.85, 1.0), top, t)))
    bh = _u(r, 0.3, 0.6)
    bt = _u(r, 0.025, 0.07)
    tilt = _u(r, 0.0, 0.3)
    R = rot("z", tilt)
    base = np.array([-d / 2 + bt / 2, sh, 0.0])
    bstyle = _pick(r, ["solid", "slats", "ladder"], [0.6, 0.2, 0.2])
    bw = w * _u(r, 0.85, 1.0)
    if bstyle == "solid":
        if soft:
            b.add("back", xf(ellipsoid((0, bh / 2, 0), (bt / 2 + 0.01, bh / 2, bw / 2), power=0.35), R=R, t=base))
        else:
            b.add("back", xf(box((0, bh / 2, 0), (bt, bh, bw)), R=R, t=base))
    else:
        pw = bt * 0.9
        for sz in (-1, 1):
            b.add("back", xf(box((0, bh / 2, sz * (bw / 2 - pw / 2)), (bt, bh, pw)), R=R, t=base))
        b.add("back", xf(box((0, bh - 0.04, 0), (bt * 0.9, 0.08, bw)), R=R, t=base))
        n = int(r.integers(2, 6))
        for k in range(n):
            if bstyle == "slats":
                z = -bw / 2 + pw + (k + 0.5) * (bw - 2 * pw) / n
                b.add("back", xf(box((0, (bh - 0.08) / 2, z), (bt * 0.6, bh - 0.08, (bw - 2 * pw) / n * 0.5)),
                                 R=R, t=base))
            else:
                y = (k + 0.5) * (bh - 0.08) / n
                b.add("back", xf(box((0, y, 0), (bt * 0.6, 0.03, bw)), R=R, t=base))
    if _p(r, 0.35):
        ah = _u(r, 0.16, 0.28)
        aw = _u(r, 0.03, 0.07)
        front = d / 2 * _u(r, 0.5, 1.0)
        for sz in (-1, 1):
            z = sz * (w / 2 + aw / 2)
            b.add("arm", box(((front - d / 2) / 2, sh + ah, z), (front + d / 2, 0.03, aw)),
                  box((front - 0.03, sh + ah / 2, z), (0.03, ah, aw * 0.6)))


def _table(r: np.random.Generator, b: Builder) -> None:
    L = 1.0
    W = L * _u(r, 0.45, 1.0)
    H = L * _u(r, 0.35, 0.75)
    tt = _u(r, 0.025, 0.07)
    round_top = _p(r, 0.3)
    if round_top:
        b.add("top", cyl((0, H - tt, 0), (0, H, 0), L / 2, n=28, ratio=W / L))
    else:
        b.add("top", box((0, H - tt / 2, 0), (L, tt, W)))
    style = _pick(r, ["four", "pedestal", "trestle"], [0.6, 0.2, 0.2])
    top = H - tt
    inset = _u(r, 0.03, 0.12)
    xh = L / 2 * (0.7 if round_top else 1.0) - inset
    zh = W / 2 * (0.7 if round_top else 1.0) - inset
    if style == "four":
        t = _u(r, 0.025, 0.06)
        b.add("leg", _legs_four(r, xh, zh, top, t))
        if _p(r, 0.5):
            ah = _u(r, 0.04, 0.1)
            b.add("support", box((0, top - ah / 2, zh), (2 * xh, ah, 0.02)),
                  box((0, top - ah / 2, -zh), (2 * xh, ah, 0.02)),
                  box((xh, top - ah / 2, 0), (0.02, ah, 2 * zh)), box((-xh, top - ah / 2, 0), (0.02, ah, 2 * zh)))
        if _p(r, 0.3):
            b.add("support", box((0, _u(r, 0.08, 0.2) * H, 0), (2 * xh, 0.02, 2 * zh)))
    elif style == "pedestal":
        cr = _u(r, 0.03, 0.08)
        b.add("leg", cyl((0, 0.03, 0), (0, top, 0), cr, n=14))
        if _p(r, 0.5):
            b.add("leg", cyl((0, 0, 0), (0, 0.03, 0), _u(r, 0.18, 0.3), n=20, ratio=W / L))
        else:
            for k in range(4):
                a = np.pi / 4 + k * np.pi / 2
                b.add("leg", box((0.15 * np.cos(a), 0.025, 0.15 * np.sin(a)), (0.32, 0.04, 0.04), R=rot("y", -a)))
        if _p(r, 0.4):
            b.add("support", box((0, top - 0.02, 0), (L * 0.4, 0.04, W * 0.4)))
    else:
        t = _u(r, 0.03, 0.06)
        for sx in (-1, 1):
            b.add("leg", box((sx * xh, top / 2, 0), (t, top, 2 * zh)))
        b.add("support", box((0, top * _u(r, 0.2, 0.6), 0), (2 * xh, 0.04, t)))


def _lamp(r: np.random.Generator, b: Builder) -> None:
    kind = _pick(r, ["floor", "desk", "hanging"], [0.45, 0.3, 0.25])
    sr = _u(r, 0.12, 0.25)
    sh = sr * _u(r, 0.7, 1.5)
    top_r = sr * _u(r, 0.4, 1.0)
    hollow = [(sr * 0.95, 0), (sr, 0), (top_r, sh), (top_r * 0.95, sh)]
    if kind == "hanging":
        H = _u(r, 0.6, 1.1)
        b.add("canopy", cyl((0, H, 0), (0, H + 0.03, 0), _u(r, 0.04, 0.09), n=16))
        y_shade = _u(r, 0.2, 0.5)
        b.add("tube", cyl((0, y_shade + sh, 0), (0, H, 0), 0.008, n=6))
        b.add("shade", xf(lathe(hollow, n=20), t=(0, y_shade, 0)) if _p(r, 0.5) else
              ellipsoid((0, y_shade + sh / 2, 0), (sr, sh / 2, sr)))
        return
    if _p(r, 0.6):
        b.add("base", cyl((0, 0, 0), (0, _u(r, 0.02, 0.06), 0), _u(r, 0.1, 0.2), n=20))
    else:
        bs = _u(r, 0.12, 0.3)
        b.add("base", box((0, 0.025, 0), (bs, 0.05, bs * _u(r, 0.6, 1.0))))
    if kind == "floor":
        H = _u(r, 0.5, 1.3)
        b.add("tube", cyl((0, 0.03, 0), (0, H, 0), _u(r, 0.01, 0.025), n=8))
        if _p(r, 0.7):
            b.add("canopy", ellipsoid((0, H, 0), (0.03, 0.03, 0.03)))
        b.add("shade", xf(lathe([(sr, 0), (top_r, sh), (top_r * 0.96, sh), (sr * 0.96, 0)][::-1], n=20),
                          t=(0, H - sh * 0.4, 0)))
    else:
        a1 = _u(r, 0.2, 0.4)
        l1, l2 = _u(r, 0.25, 0.45), _u(r, 0.2, 0.4)
        p0 = np.array([0, 0.04, 0])
        p1 = p0 + l1 * np.array([np.sin(a1), np.cos(a1), 0])
        a2 = _u(r, 1.4, 2.2)
        p2 = p1 + l2 * np.array([np.sin(a2), np.cos(a2), 0])
        b.add("tube", cyl(p0, p1, 0.012, n=8), cyl(p1, p2, 0.012, n=8))
        b.add("canopy", ellipsoid(p1, (0.02, 0.02, 0.02)), ellipsoid(p2, (0.025, 0.025, 0.025)))
        cone_len = _u(r, 0.1, 0.2)
        b.add("shade", frustum(p2, p2 + np.array([0.02, -cone_len, 0]), 0.02, _u(r, 0.06, 0.12), n=16))


def _sofa(r: np.random.Generator, b: Builder) -> None:
    L = 1.0
    D = L * _u(r, 0.35, 0.55)
    legh = _u(r, 0.0, 0.06)
    sh = L * _u(r, 0.17, 0.26)
    aw = _u(r, 0.04, 0.12)
    base_top = sh - 0.06
    b.add("base", box((0, (legh + base_top) / 2, 0), (D * 0.99, base_top - legh, L - 2 * aw + 0.01)))
    n = int(r.integers(1, 4))
    cw = (L - 2 * aw) / n
    bt = D * _u(r, 0.15, 0.3)
    for k in range(n):
        z = -L / 2 + aw + (k + 0.5) * cw
        b.add("cushion", ellipsoid((bt / 2, sh - 0.03, z), ((D - bt) / 2, 0.04, cw / 2 * 0.98), power=0.3))
    bh = L * _u(r, 0.15, 0.3)
    b.add("back", box((-D / 2 + bt / 2, base_top + bh / 2, 0), (bt, bh, L - 0.01)))
    if _p(r, 0.5):
        for k in range(n):
            z = -L / 2 + aw + (k + 0.5) * cw
            b.add("cushion", ellipsoid((-D / 2 + bt * 1.4, sh + bh * 0.4, z), (0.05, bh * 0.4, cw / 2 * 0.95),
                                       power=0.35,
                                       R=rot("z", 0.15)))
    arm_h = _u(r, 0.04, 0.16)
    round_arm = _p(r, 0.35)
    for sz in (-1, 1):
        if _p(r, 0.93):
            z = sz * (L / 2 - aw / 2)
            b.add("arm", box((0, (legh + sh + arm_h) / 2, z), (D, sh + arm_h - legh, aw)))
            if round_arm:
                b.add("arm", cyl((-D / 2, sh + arm_h, z), (D / 2, sh + arm_h, z), aw * 0.6, n=12))
    if _p(r, 0.2):
        side = 1 if _p(r, 0.5) else -1
        ext = D * _u(r, 0.6, 1.0)
        b.add("base", box((D / 2 + ext / 2, (legh + sh) / 2, side * L * 0.3), (ext, sh - legh, L * 0.4)))
    if legh > 0.015:
        b.add("leg", _legs_four(r, D / 2 - 0.03, L / 2 - 0.03, legh, 0.025))


def _bench(r: np.random.Generator, b: Builder) -> None:
    L = 1.0
    D = L * _u(r, 0.2, 0.38)
    H = L * _u(r, 0.25, 0.42)
    st = _u(r, 0.02, 0.05)
    if _p(r, 0.4):
        n = int(r.integers(3, 6))
        for k in range(n):
            x = -D / 2 + (k + 0.5) * D / n
            b.add("seat", box((x, H - st / 2, 0), (D / n * 0.8, st, L)))
    else:
        b.add("seat", box((0, H - st / 2, 0), (D, st, L)))
    style = _pick(r, ["four", "panel", "aframe"], [0.5, 0.3, 0.2])
    inset = _u(r, 0.02, 0.12)
    if style == "four":
        b.add("leg", _legs_four(r, D / 2 - 0.03, L / 2 - inset, H - st, _u(r, 0.025, 0.05)))
    elif style == "panel":
        for sz in (-1, 1):
            b.add("leg", box((0, (H - st) / 2, sz * (L / 2 - inset)), (D * 0.95, H - st, 0.03)))
    else:
        for sz in (-1, 1):
            z = sz * (L / 2 - inset)
            b.add("leg", cyl((-D / 2, 0, z), (0, H - st, z), 0.015, n=6), cyl((D / 2, 0, z), (0, H - st, z),
                                                                              0.015, n=6))
    if _p(r, 0.5):
        bh = _u(r, 0.15, 0.3)
        R = rot("z", _u(r, 0.05, 0.25))
        base = np.array([-D / 2 + 0.015, H, 0])
        for sz in (-1, 1):
            b.add("back", xf(box((0, bh / 2, sz * (L / 2 - inset)), (0.03, bh, 0.03)), R=R, t=base))
        for k in range(int(r.integers(1, 4))):
            b.add("back", xf(box((0, bh * (0.35 + 0.25 * k), 0), (0.02, bh * 0.18, L)), R=R, t=base))
    if _p(r, 0.25):
        for sz in (-1, 1):
            z = sz * (L / 2 - inset)
            b.add("arm", box((0, H + 0.12, z), (D, 0.025, 0.04)),
                  box((D / 2 - 0.02, H + 0.06, z), (0.025, 0.12, 0.03)))


def _cabinet(r: np.random.Generator, b: Builder) -> None:
    w = _u(r, 0.4, 1.0)
    h = _u(r, 0.5, 1.6)
    d = _u(r, 0.3, 0.6)
    y0 = 0.0
    if _p(r, 0.5):
        y0 = _u(r, 0.03, 0.12)
        if _p(r, 0.5):
            b.add("base", _legs_four(r, d / 2 - 0.03, w / 2 - 0.03, y0, 0.03))
        else:
            b.add("base", box((0, y0 / 2, 0), (d * 0.92, y0, w * 0.95)))
    b.add("body", box((0, y0 + h / 2, 0), (d, h, w)))
    if _p(r, 0.5):
        b.add("body", box((0.01, y0 + h + 0.015, 0), (d + 0.03, 0.03, w + 0.03)))
    front = d / 2
    style = _pick(r, ["doors", "drawers", "mixed"], [0.4, 0.35, 0.25])
    hw = 0.04

    def drawers(y_lo, y_hi, n):
        step = (y_hi - y_lo) / n
        for k in range(n):
            yc = y_lo + (k + 0.5) * step
            b.add("drawer", box((front + 0.008, yc, 0), (0.016, step * 0.9, w * 0.94)))
            b.add("handle", box((front + 0.025, yc, 0), (0.02, 0.02, min(0.15, w * 0.3))))

    def doors(y_lo, y_hi, n):
        dw = w * 0.96 / n
        for k in range(n):
            zc = -w * 0.48 + (k + 0.5) * dw
            b.add("door", box((front + 0.008, (y_lo + y_hi) / 2, zc), (0.016, (y_hi - y_lo) * 0.96, dw * 0.97)))
            hz = zc + (dw * 0.38 if k % 2 == 0 else -dw * 0.38) if n > 1 else zc + dw * 0.38
            b.add("handle", box((front + 0.025, (y_lo + y_hi) / 2 + (y_hi - y_lo) * 0.2, hz), (0.02, hw * 2, 0.015)))

    if style == "doors":
        doors(y0 + 0.01, y0 + h - 0.01, int(r.integers(1, 3)))
    elif style == "drawers":
        drawers(y0 + 0.01, y0 + h - 0.01, int(r.integers(2, 6)))
    else:
        split = y0 + h * _u(r, 0.5, 0.75)
        doors(y0 + 0.01, split, int(r.integers(1, 3)))
        drawers(split, y0 + h - 0.01, int(r.integers(1, 3)))


def _display(r: np.random.Generator, b: Builder) -> None:
    W = 1.0
    H = W * _u(r, 0.5, 0.78)
    T = _u(r, 0.02, 0.06)
    mount = _pick(r, ["stand", "wall", "feet"], [0.65, 0.15, 0.2])
    y_c = 0.0
    if mount == "stand":
        neck_h = _u(r, 0.12, 0.35)
        base_w = _u(r, 0.25, 0.55)
        y_c = neck_h + H / 2
        if _p(r, 0.5):
            b.add("base", box((0, 0.012, 0), (base_w * 0.7, 0.024, base_w)))
        else:
            b.add("base", cyl((0, 0, 0), (0, 0.025, 0), base_w / 2, n=20, ratio=0.7))
        b.add("neck", box((-T, (neck_h + H * 0.3) / 2, 0), (0.03, neck_h + H * 0.3, _u(r, 0.05, 0.12))))
    elif mount == "feet":
        y_c = _u(r, 0.03, 0.08) + H / 2
        for sz in (-1, 1):
            b.add("base", box((0, 0.01, sz * W * 0.38), (0.2, 0.02, 0.05)),
                  box((0, (y_c - H / 2) / 2 + 0.01, sz * W * 0.38), (0.03, y_c - H / 2, 0.03)))
    b.add("frame", box((0, y_c, 0), (T, H, W)))
    b.add("screen", box((T / 2 + 0.002, y_c, 0), (0.004, H * 0.92, W * 0.95)))
    if _p(r, 0.3):
        b.add("frame", hexa(np.stack([
            (-T / 2 - _u(r, 0.1, 0.3), y_c - H * 0.3, -W * 0.3), (-T / 2, y_c - H * 0.45, -W * 0.45),
            (-T / 2 - 0.2, y_c + H * 0.3, -W * 0.3), (-T / 2, y_c + H * 0.45, -W * 0.45),
            (-T / 2 - 0.2, y_c - H * 0.3, W * 0.3), (-T / 2, y_c - H * 0.45, W * 0.45),
            (-T / 2 - 0.2, y_c + H * 0.3, W * 0.3), (-T / 2, y_c + H * 0.45, W * 0.45)])))


def _loudspeaker(r: np.random.Generator, b: Builder) -> None:
    w, h, d = _u(r, 0.25, 0.45), _u(r, 0.35, 1.0), _u(r, 0.25, 0.45)
    y0 = 0.0
    if _p(r, 0.3):
        y0 = _u(r, 0.1, 0.4)
        b.add("stand", cyl((0, 0, 0), (0, 0.02, 0), w * 0.6, n=16), cyl((0, 0.02, 0), (0, y0, 0), 0.02, n=8))
    if _p(r, 0.2):
        b.add("body", cyl((0, y0, 0), (0, y0 + h, 0), w / 2, n=20))
        b.add("driver", cyl((0, y0 + h, 0), (0, y0 + h + 0.01, 0), w * 0.35, n=16))
        return
    b.add("body", box((0, y0 + h / 2, 0), (d, h, w)))
    n = int(r.integers(1, 4))
    sizes = sorted([_u(r, 0.18, 0.42) * w for _ in range(n)])
    y = y0 + h * 0.92
    for s in sizes:
        y -= s + 0.02
        if y - s < y0:
            break
        b.add("driver", frustum((d / 2, y, 0), (d / 2 + 0.02, y, 0), s * 0.5, s, n=16))
    if _p(r, 0.3):
        b.add("driver", cyl((d / 2, y0 + h * 0.1, 0), (d / 2 + 0.01, y0 + h * 0.1, 0), w * 0.08, n=10))


def _rifle(r: np.random.Generator, b: Builder) -> None:
    L = 1.0
    rh = _u(r, 0.04, 0.08)
    rec0, rec1 = -L * _u(r, 0.1, 0.2), L * _u(r, 0.05, 0.15)
    b.add("receiver", box(((rec0 + rec1) / 2, 0, 0), (rec1 - rec0, rh, 0.035)))
    b.add("barrel", cyl((rec1, rh * 0.2, 0), (L / 2, rh * 0.2, 0), _u(r, 0.007, 0.014), n=10))
    if _p(r, 0.6):
        hg = L * _u(r, 0.15, 0.3)
        b.add("barrel", cyl((rec1, rh * 0.1, 0), (rec1 + hg, rh * 0.1, 0), rh * _u(r, 0.35, 0.55), n=12))
    sb = _u(r, 0.1, 0.2)
    b.add("stock", hexa(np.stack([
        (-L / 2, -sb * _u(r, 0.6, 1.0), -0.02), (rec0, -rh * 0.45, -0.018), (-L / 2, sb * 0.3, -0.02),
        (rec0, rh * 0.45, -0.018), (-L / 2, -sb * 0.8, 0.02), (rec0, -rh * 0.45, 0.018),
        (-L / 2, sb * 0.3, 0.02), (rec0, rh * 0.45, 0.018)])))
    ga = _u(r, 0.2, 0.5)
    gl = _u(r, 0.08, 0.14)
    gx = rec0 + 0.03
    b.add("stock", box((gx - np.sin(ga) * gl / 2, -rh / 2 - np.cos(ga) * gl / 2, 0), (0.035, gl, 0.03),
                       R=rot("z", -ga)))
    if _p(r, 0.8):
        ml = _u(r, 0.08, 0.18)
        ma = _u(r, -0.3, 0.05)
        mx = rec1 - 0.06
        b.add("magazine", box((mx + np.sin(ma) * ml / 2, -rh / 2 - np.cos(ma) * ml / 2, 0), (0.05, ml, 0.025),
                              R=rot("z", ma)))
    if _p(r, 0.5):
        sl = _u(r, 0.15, 0.3)
        ys = rh / 2 + 0.035
        xs = (rec0 + rec1) / 2
        b.add("scope", cyl((xs - sl / 2, ys, 0), (xs + sl / 2, ys, 0), 0.018, n=12),
              frustum((xs + sl / 2, ys, 0), (xs + sl / 2 + 0.04, ys, 0), 0.018, 0.03, n=12),
              box((xs, rh / 2 + 0.01, 0), (0.04, 0.03, 0.015)))


def _telephone(r: np.random.Generator, b: Builder) -> None:
    if _p(r, 0.72):
        w, h, t = _u(r, 0.42, 0.58), 1.0, _u(r, 0.04, 0.1)
        b.add("body", ellipsoid((0, h / 2, 0), (w / 2, h / 2, t / 2), power=0.25, n_lat=10, n_lon=20))
        b.add("screen", box((0, h * _u(r, 0.48, 0.54), t / 2), (w * 0.86, h * _u(r, 0.72, 0.88), 0.006)))
        if _p(r, 0.6):
            cx = _u(r, -0.3, 0.3) * w
            b.add("camera", cyl((cx, h * 0.88, -t / 2), (cx, h * 0.88, -t / 2 - 0.012), w * _u(r, 0.06, 0.12), n=12))
        for k in range(int(r.integers(0, 4))):
            b.add("button", box((w / 2, h * (0.7 - 0.1 * k), 0), (0.012, 0.07, t * 0.4)))
        if _p(r, 0.25):
            b.add("body", box((0, h * 0.08, t / 2 + 0.01), (w * 0.9, h * 0.15, 0.02)))
    else:
        bw, bd = _u(r, 0.5, 0.8), _u(r, 0.5, 0.7)
        b.add("body", hexa(np.stack([(-bd / 2, 0, -bw / 2), (bd / 2, 0, -bw / 2), (-bd / 2, 0.2, -bw / 2),
                                      (bd / 2, 0.08, -bw / 2), (-bd / 2, 0, bw / 2), (bd / 2, 0, bw / 2),
                                      (-bd / 2, 0.2, bw / 2), (bd / 2, 0.08, bw / 2)])))
        hl = bw * _u(r, 0.9, 1.2)
        b.add("handset", cyl((-bd * 0.2, 0.25, -hl / 2 + 0.06), (-bd * 0.2, 0.25, hl / 2 - 0.06), 0.04, n=10),
              ellipsoid((-bd * 0.2, 0.24, -hl / 2 + 0.05), (0.07, 0.05, 0.08)),
              ellipsoid((-bd * 0.2, 0.24, hl / 2 - 0.05), (0.07, 0.05, 0.08)))
        for i in range(3):
            for j in range(3):
                b.add("button", box((bd * (0.1 + 0.1 * i), 0.13 - 0.03 * i, (j - 1) * 0.1), (0.06, 0.02, 0.06)))


def _watercraft(r: np.random.Generator, b: Builder) -> None:
    L = 1.0
    B = L * _u(r, 0.12, 0.3)
    H = L * _u(r, 0.06, 0.15)
    bow = L * _u(r, 0.15, 0.35)
    stern_w = B * _u(r, 0.6, 1.0)
    rake = _u(r, 0.0, 0.5) * H
    b.add("hull", hexa(np.stack([(-L / 2, H * 0.3, -stern_w / 2), (L / 2 - bow, 0, -B / 2), (-L / 2, H, -stern_w / 2),
                                  (L / 2 - bow, H, -B / 2), (-L / 2, H * 0.3, stern_w / 2), (L / 2 - bow, 0, B / 2),
                                  (-L / 2, H, stern_w / 2), (L / 2 - bow, H, B / 2)])))
    b.add("hull", hexa(np.stack([(L / 2 - bow, 0, -B / 2), (L / 2, H * 0.6, -0.004), (L / 2 - bow, H, -B / 2),
                                  (L / 2 + rake, H * 1.1, -0.004), (L / 2 - bow, 0, B / 2), (L / 2, H * 0.6, 0.004),
                                  (L / 2 - bow, H, B / 2), (L / 2 + rake, H * 1.1, 0.004)])))
    kind = _pick(r, ["ship", "sail", "motor"], [0.4, 0.3, 0.3])
    if kind == "sail":
        mh = L * _u(r, 0.5, 1.0)
        mx = _u(r, -0.05, 0.15)
        b.add("mast", cyl((mx, H, 0), (mx, H + mh, 0), 0.008, n=8))
        b.add("sail", planform((mx - 0.01, H + 0.04, 0), (-1, 0, 0), L * _u(r, 0.3, 0.5), (0, mh * 0.9, 0),
                               0.0, 0.02, 0.006, 0.004))
        if _p(r, 0.6):
            b.add("sail", planform((mx + L * _u(r, 0.2, 0.35), H + 0.03, 0), (-1, 0, 0), L * 0.2, (0, mh * 0.8, 0),
                                   L * 0.2 - 0.02, 0.015, 0.005, 0.004))
        if _p(r, 0.5):
            b.add("hull", planform((0.05, 0, 0), (1, 0, 0), 0.15, (0, -H * 1.2, 0), 0.05, 0.08, 0.02, 0.02))
        return
    n = int(r.integers(1, 4)) if kind == "ship" else int(r.integers(1, 3))
    x0, x1, y = -L / 2 + L * _u(r, 0.05, 0.2), L * _u(r, -0.05, 0.2), H
    for k in range(n):
        hh = H * _u(r, 0.5, 1.2)
        b.add("cabin", box(((x0 + x1) / 2, y + hh / 2, 0), (x1 - x0, hh, B * _u(r, 0.5, 0.85))))
        y += hh
        span = x1 - x0
        x0, x1 = x0 + span * _u(r, 0.1, 0.3), x1 - span * _u(r, 0.1, 0.3)
    if kind == "ship" and _p(r, 0.6):
        fx = (x0 + x1) / 2
        b.add("funnel", frustum((fx, y, 0), (fx - 0.02, y + H * _u(r, 0.6, 1.5), 0), B * 0.15, B * 0.12, n=12))
    if _p(r, 0.4):
        b.add("mast", cyl(((x0 + x1) / 2, y, 0), ((x0 + x1) / 2, y + H * _u(r, 1, 2.5), 0), 0.006, n=6))


def _bag(r: np.random.Generator, b: Builder) -> None:
    kind = _pick(r, ["tote", "handbag", "backpack", "duffel"], [0.3, 0.3, 0.25, 0.15])
    if kind == "backpack":
        w, h, d = _u(r, 0.55, 0.75), 1.0, _u(r, 0.25, 0.4)
        b.add("body", ellipsoid((0, h / 2, 0), (d / 2, h / 2, w / 2), power=0.4, n_lat=10, n_lon=18))
        b.add("body", ellipsoid((d / 2, h * 0.3, 0), (d * 0.25, h * 0.2, w * 0.38), power=0.4))
        b.add("handle", torus((0, h * 0.98, 0), 0.08, 0.015, R=rot("y", np.pi / 2), a0=0, a1=np.pi, n_major=10))
        for sz in (-1, 1):
            b.add("handle", torus((-d / 2, h * 0.5, sz * w * 0.25), h * 0.38, 0.02, a0=np.pi / 2, a1=3 * np.pi / 2,
                                  n_major=14, ratio=2.0))
        return
    if kind == "duffel":
        L, rr = 1.0, _u(r, 0.18, 0.3)
        b.add("body", ellipsoid((0, rr, 0), (rr, rr, L / 2), power=0.6, n_lat=10, n_lon=18))
        hr = _u(r, 0.12, 0.25)
        for sz in (-1, 1):
            b.add("handle", torus((0, rr * 1.85, sz * 0.12), hr, 0.015, R=rot("y", np.pi / 2), a0=0.3,
                                  a1=np.pi - 0.3, n_major=12))
        return
    w = 1.0
    h = w * _u(r, 0.5, 1.0)
    d = w * _u(r, 0.18, 0.4)
    top_w = w * (_u(r, 0.65, 0.9) if kind == "handbag" else _u(r, 0.95, 1.1))
    top_d = d * _u(r, 0.5, 0.9)
    b.add("body", hexa(np.stack([(-d / 2, 0, -w / 2), (d / 2, 0, -w / 2), (-top_d / 2, h, -top_w / 2),
                                  (top_d / 2, h, -top_w / 2), (-d / 2, 0, w / 2), (d / 2, 0, w / 2),
                                  (-top_d / 2, h, top_w / 2), (top_d / 2, h, top_w / 2)])))
    if kind == "handbag" and _p(r, 0.5):
        b.add("body", box((top_d / 2 + 0.01, h * 0.8, 0), (0.02, h * 0.35, top_w * 0.95)))
    hr = top_w * _u(r, 0.2, 0.4)
    if _p(r, 0.6):
        for sx in (-1, 1):
            b.add("handle", torus((sx * top_d * 0.35, h, 0), hr, 0.015, R=rot("y", np.pi / 2), a0=0, a1=np.pi,
                                  n_major=12))
    else:
        sr = h * _u(r, 0.6, 1.0)
        b.add("handle", torus((0, h, 0), min(sr, top_w / 2 * 0.95), 0.012, R=rot("y", np.pi / 2), a0=0,
                              a1=np.pi, n_major=16))


def _bin(r: np.random.Generator, b: Builder) -> None:
    R0 = _u(r, 0.25, 0.45)
    H = 1.0
    R1 = R0 * _u(r, 1.0, 1.35)
    t = 0.02
    if _p(r, 0.55):
        sx = _u(r, 0.7, 1.0)
        b.add("body", xf(lathe([(0, 0), (R0, 0), (R1, H), (R1 - t, H), (R0 - t, t), (0, t)], n=22), s=(1, 1, sx)))
        if _p(r, 0.35):
            b.add("lid", xf(lathe([(0, H), (R1 + 0.01, H), (R1 + 0.01, H + 0.03), (R1 * 0.5, H + _u(r, 0.05, 0.2)),
                                   (0, H + _u(r, 0.05, 0.2))], n=22), s=(1, 1, sx)))
    else:
        w0, d0 = R0 * 2, R0 * 2 * _u(r, 0.6, 1.0)
        g = R1 / R0
        b.add("body", box((0, t / 2, 0), (d0, t, w0)))
        for sx, sz, sd, sw in ((1, 0, t, w0), (-1, 0, t, w0), (0, 1, d0, t), (0, -1, d0, t)):
            bot_c = np.array([sx * (d0 / 2 - t / 2), 0, sz * (w0 / 2 - t / 2)])
            top_c = bot_c * np.array([g, 1, g]) + np.array([0, H, 0])
            corners = []
            for i in range(8):
                xb, yb, zb = i & 1, (i >> 1) & 1, (i >> 2) & 1
                c = top_c if yb else bot_c
                gg = g if yb else 1.0
                corners.append(c + np.array([(xb - 0.5) * sd * gg, 0, (zb - 0.5) * sw * gg]))
            b.add("body", hexa(np.stack(corners)))
        if _p(r, 0.3):
            b.add("lid", box((0, H + 0.02, 0), (d0 * g + 0.03, 0.04, w0 * g + 0.03)))
    if _p(r, 0.2):
        b.add("pedal", box((R0 + 0.04, 0.03, 0), (0.08, 0.02, 0.15)))


def _box(r: np.random.Generator, b: Builder) -> None:
    w, h, d = 1.0, _u(r, 0.3, 1.0), _u(r, 0.4, 1.0)
    b.add("body", box((0, h / 2, 0), (d, h, w)))
    style = _pick(r, ["plain", "flaps", "lid"], [0.4, 0.35, 0.25])
    if style == "flaps":
        # four thin panels hinged at the top rim, opened outward by a random angle
        for o, half_edge, fl in (((1, 0, 0), (0, 0, w / 2), d / 2), ((-1, 0, 0), (0, 0, w / 2), d / 2),
                                 ((0, 0, 1), (d / 2, 0, 0), w / 2), ((0, 0, -1), (d / 2, 0, 0), w / 2)):
            o, he = np.asarray(o, dtype=np.float64), np.asarray(half_edge, dtype=np.float64)
            mid = np.array([o[0] * d / 2, h, o[2] * w / 2])
            ang = _u(r, 0.2, 1.9)
            dirv = o * np.cos(ang) + np.array([0.0, np.sin(ang), 0.0])
            length = fl * _u(r, 0.8, 1.0)
            nrm = np.cross(he, dirv)
            nrm = 0.003 * nrm / np.linalg.norm(nrm)
            corners = [mid + (2 * xb - 1) * he + (2 * yb - 1) * nrm + zb * length * dirv
                       for zb in (0, 1) for yb in (0, 1) for xb in (0, 1)]
            b.add("flap", hexa(np.stack(corners)))
    elif style == "lid":
        b.add("lid", box((0, h + 0.005, 0), (d + 0.02, _u(r, 0.03, 0.12), w + 0.02)))
    if _p(r, 0.3):
        b.add("body", box((0, h * 0.7, w / 2 + 0.003), (d * 0.25, h * 0.1, 0.006)))


def _desk(r: np.random.Generator, b: Builder) -> None:
    L = 1.0
    D = L * _u(r, 0.4, 0.62)
    H = L * _u(r, 0.45, 0.62)
    tt = _u(r, 0.02, 0.05)
    b.add("top", box((0, H - tt / 2, 0), (D, tt, L)))
    sides = _pick(r, ["pedestal", "twopedestal", "panels", "legs"], [0.35, 0.2, 0.25, 0.2])
    top = H - tt
    pw = L * _u(r, 0.25, 0.38)

    def pedestal(zc):
        b.add("drawer", box((0, top / 2, zc), (D * 0.95, top, pw)))
        n = int(r.integers(2, 5))
        for k in range(n):
            yc = top * (k + 0.5) / n
            b.add("drawer", box((D * 0.475 + 0.008, yc, zc), (0.016, top / n * 0.9, pw * 0.9)))
            b.add("handle", box((D * 0.475 + 0.025, yc, zc), (0.015, 0.015, pw * 0.3)))

    if sides == "pedestal":
        s = 1 if _p(r, 0.5) else -1
        pedestal(s * (L / 2 - pw / 2))
        b.add("leg", box((0, top / 2, -s * (L / 2 - 0.015)), (D * 0.95, top, 0.03)))
    elif sides == "twopedestal":
        pedestal(L / 2 - pw / 2)
        pedestal(-L / 2 + pw / 2)
    elif sides == "panels":
        for sz in (-1, 1):
            b.add("leg", box((0, top / 2, sz * (L / 2 - 0.015)), (D * 0.95, top, 0.03)))
    else:
        b.add("leg", _legs_four(r, D / 2 - 0.03, L / 2 - 0.03, top, 0.035, round_legs=False))
    if _p(r, 0.6):
        b.add("panel", box((-D / 2 + 0.02, top * 0.6, 0), (0.015, top * 0.6, L * 0.9)))
    if _p(r, 0.25):
        b.add("shelf", box((-D / 2 + 0.1, H + 0.15, 0), (0.2, 0.02, L)),
              box((-D / 2 + 0.1, H + 0.075, L / 2 - 0.01), (0.2, 0.15, 0.02)),
              box((-D / 2 + 0.1, H + 0.075, -L / 2 + 0.01), (0.2, 0.15, 0.02)))


def _door(r: np.random.Generator, b: Builder) -> None:
    H = 1.0
    W = H * _u(r, 0.35, 0.6)
    T = _u(r, 0.025, 0.05)
    b.add("leaf", box((0, H / 2, 0), (T, H, W)))
    if _p(r, 0.6):
        fw = _u(r, 0.03, 0.06)
        b.add("frame", box((0, H + fw / 2, 0), (T * 1.6, fw, W + 2 * fw)),
              box((0, (H + fw) / 2, W / 2 + fw / 2), (T * 1.6, H + fw, fw)),
              box((0, (H + fw) / 2, -W / 2 - fw / 2), (T * 1.6, H + fw, fw)))
    style = _pick(r, ["flat", "panels", "window"], [0.35, 0.45, 0.2])
    if style == "panels":
        rows = int(r.integers(1, 4))
        cols = int(r.integers(1, 3))
        for i in range(rows):
            for j in range(cols):
                y = 0.08 + (i + 0.5) * (0.84 / rows)
                z = -W * 0.4 + (j + 0.5) * (W * 0.8 / cols)
                for sx in (-1, 1):
                    b.add("panel", box((sx * T / 2, y * H, z), (0.01, H * 0.84 / rows * 0.85, W * 0.8 / cols * 0.85)))
    elif style == "window":
        for sx in (-1, 1):
            b.add("window", box((sx * T / 2, H * 0.7, 0), (0.006, H * _u(r, 0.2, 0.4), W * 0.6)))
    hy = H * _u(r, 0.42, 0.5)
    hz = W / 2 - W * _u(r, 0.08, 0.14)
    lever = _p(r, 0.6)
    for sx in (-1, 1):
        if lever:
            b.add("handle", cyl((sx * T / 2, hy, hz), (sx * (T / 2 + 0.05), hy, hz), 0.01, n=8),
                  box((sx * (T / 2 + 0.05), hy, hz - 0.05), (0.02, 0.02, 0.12)))
        else:
            b.add("handle", cyl((sx * T / 2, hy, hz), (sx * (T / 2 + 0.04), hy, hz), 0.008, n=8),
                  ellipsoid((sx * (T / 2 + 0.05), hy, hz), (0.02, 0.025, 0.025)))


def _shelf(r: np.random.Generator, b: Builder) -> None:
    W = _u(r, 0.5, 1.2)
    H = _u(r, 0.7, 2.0)
    D = _u(r, 0.2, 0.4)
    t = _u(r, 0.02, 0.04)
    for sz in (-1, 1):
        b.add("side", box((0, H / 2, sz * (W / 2 - t / 2)), (D, H, t)))
    n = int(r.integers(2, 7))
    ys = [t / 2 + (H - t) * k / n for k in range(n + 1)]
    for y in ys:
        b.add("board", box((0, y, 0), (D, t, W - 2 * t)))
    if _p(r, 0.7):
        b.add("back", box((-D / 2 + 0.005, H / 2, 0), (0.01, H, W)))
    if _p(r, 0.5):
        for k in range(n):
            y0 = ys[k] + t / 2
            gap = ys[k + 1] - ys[k] - t
            z = -W / 2 + t
            while True:
                bw = _u(r, 0.02, 0.06)
                if z + bw > W / 2 - t or _p(r, 0.08):
                    break
                bh = gap * _u(r, 0.6, 0.9)
                b.add("book", box((D * 0.05, y0 + bh / 2, z + bw / 2), (D * 0.8, bh, bw * 0.95)))
                z += bw


def _bed(r: np.random.Generator, b: Builder) -> None:
    L = 1.0
    W = L * _u(r, 0.5, 0.95)
    fh = L * _u(r, 0.08, 0.2)
    mt = L * _u(r, 0.06, 0.12)
    legs = _p(r, 0.5)
    y0 = _u(r, 0.04, 0.1) if legs else 0.0
    if legs:
        b.add("frame", _legs_four(r, L / 2 - 0.03, W / 2 - 0.03, y0, 0.04, round_legs=False))
    b.add("frame", box((0, (y0 + fh) / 2, 0), (L, fh - y0, W)))
    b.add("mattress", ellipsoid((0, fh + mt / 2, 0), (L / 2 * 0.98, mt / 2, W / 2 * 0.98), power=0.25, n_lat=8,
                                n_lon=16))
    hb = L * _u(r, 0.15, 0.45)
    b.add("headboard", box((-L / 2 - 0.02, (fh + mt + hb) / 2, 0), (0.04, fh + mt + hb, W)))
    if _p(r, 0.4):
        fb = hb * _u(r, 0.2, 0.6)
        b.add("headboard", box((L / 2 + 0.02, (fh + mt + fb) / 2, 0), (0.04, fh + mt + fb, W)))
    npil = int(r.choice([0, 1, 2], p=[0.25, 0.35, 0.4]))
    for k in range(npil):
        z = 0.0 if npil == 1 else (k - 0.5) * W * 0.5
        pw = W * (0.7 if npil == 1 else 0.4)
        b.add("pillow", ellipsoid((-L / 2 + 0.12, fh + mt + 0.03, z), (0.09, 0.04, pw / 2), power=0.5))
    if _p(r, 0.5):
        cover = L * _u(r, 0.4, 0.75)
        b.add("blanket", box((L / 2 - cover / 2, fh + mt + 0.005, 0), (cover + 0.02, 0.015, W + 0.04)),
              box((L / 2 - cover / 2, fh + mt - 0.05, W / 2 + 0.02), (cover + 0.02, 0.12, 0.01)),
              box((L / 2 - cover / 2, fh + mt - 0.05, -W / 2 - 0.02), (cover + 0.02, 0.12, 0.01)))


def _wobble(prim: Prim, rng: np.random.Generator, amp: float) -> Prim:
    v, f = prim
    k = rng.normal(0, 6.0, size=(3, 3))
    ph = rng.uniform(0, 2 * np.pi, size=3)
    return v + amp * np.sin(v @ k.T + ph), f


def _pillow(r: np.random.Generator, b: Builder) -> None:
    kind = _pick(r, ["square", "round", "bolster"], [0.65, 0.2, 0.15])
    if kind == "square":
        w, h, t = 1.0, _u(r, 0.5, 1.0), _u(r, 0.15, 0.35)
        prim = ellipsoid((0, 0, 0), (w / 2, h / 2, t / 2), power=_u(r, 0.3, 0.6), n_lat=12, n_lon=20)
        prim = _wobble(prim, r, 0.01)
        R = rot("x", np.pi / 2) if _p(r, 0.6) else rot("z", _u(r, -0.3, 0.3))
        b.add("body", xf(prim, R=R))
        if _p(r, 0.3):
            b.add("trim", xf(torus((0, 0, 0), 0.5, 0.015, n_major=24, n_minor=6), R=R, s=(1, h, 1)))
    elif kind == "round":
        rr, t = 0.5, _u(r, 0.15, 0.35)
        prim = ellipsoid((0, 0, 0), (rr, t / 2, rr), power=_u(r, 0.4, 0.8), n_lat=10, n_lon=22)
        b.add("body", xf(_wobble(prim, r, 0.01), R=rot("x", _u(r, 0, 1.4))))
        if _p(r, 0.4):
            b.add("button", ellipsoid((0, t / 2, 0), (0.05, 0.02, 0.05)))
    else:
        rr = _u(r, 0.12, 0.22)
        b.add("body", cyl((-0.5, 0, 0), (0.5, 0, 0), rr, n=18))
        for sx in (-1, 1):
            b.add("trim", ellipsoid((sx * 0.5, 0, 0), (0.03, rr, rr)))


def _sink(r: np.random.Generator, b: Builder) -> None:
    kind = _pick(r, ["pedestal", "vanity", "wall"], [0.35, 0.45, 0.2])
    R = _u(r, 0.22, 0.35)
    sx = _u(r, 1.0, 1.5)
    dep = _u(r, 0.1, 0.2)
    t = 0.025
    y_rim = 0.0
    if kind == "pedestal":
        y_rim = _u(r, 0.75, 0.9)
        b.add("pedestal", frustum((0, 0, 0), (0, y_rim - dep, 0), R * 0.45, R * 0.3, n=16))
    elif kind == "vanity":
        y_rim = _u(r, 0.75, 0.9)
        cw, cd = R * 2 * sx * _u(r, 1.1, 1.8), R * 2 * _u(r, 1.05, 1.3)
        ch = y_rim - dep * 0.8
        b.add("cabinet", box((0, ch / 2, 0), (cd, ch, cw)))
        b.add("counter", box((0, ch + 0.015, 0), (cd + 0.03, 0.03, cw + 0.03)))
        for sz in (-1, 1):
            b.add("cabinet", box((cd / 2 + 0.008, ch * 0.45, sz * cw / 4), (0.016, ch * 0.8, cw / 2 * 0.92)))
        y_rim = ch + 0.03 + dep
    else:
        y_rim = dep + 0.1
        b.add("bracket", box((-R, y_rim - dep - 0.05, 0), (0.04, 0.1, R)))
    prof = [(0, y_rim - dep), (R * 0.6, y_rim - dep), (R, y_rim), (R + 0.02, y_rim), (R + 0.02, y_rim + t),
            (R - t, y_rim + t), (R * 0.6 - t, y_rim - dep + t), (0, y_rim - dep + t)]
    b.add("basin", xf(lathe(prof, n=22), s=(sx, 1, 1)))
    fx = -R * 1.0 - 0.03
    sh = _u(r, 0.12, 0.25)
    reach = _u(r, 0.1, 0.2)
    b.add("faucet", tube_path([(fx, y_rim, 0), (fx, y_rim + sh, 0), (fx + reach, y_rim + sh, 0),
                               (fx + reach, y_rim + sh - 0.04, 0)], 0.014))
    if _p(r, 0.6):
        for sz in (-1, 1):
            b.add("faucet", cyl((fx, y_rim, sz * 0.1), (fx, y_rim + 0.05, sz * 0.1), 0.02, n=8))


def _toilet(r: np.random.Generator, b: Builder) -> None:
    R = _u(r, 0.17, 0.24)
    sx = _u(r, 1.2, 1.5)
    y_rim = _u(r, 0.38, 0.48)
    dep = _u(r, 0.15, 0.25)
    t = 0.03
    wall_hung = _p(r, 0.15)
    if not wall_hung:
        b.add("base", xf(frustum((0, 0, 0), (0, y_rim - dep, 0), R * 0.7, R * 0.6, n=18), s=(sx, 1, 1)))
    else:
        b.add("base", box((-R * sx - 0.05, y_rim - dep, 0), (0.1, dep, R)))
    prof = [(0, y_rim - dep), (R * 0.65, y_rim - dep), (R, y_rim), (R - t, y_rim), (R * 0.4, y_rim - dep * 0.6),
            (0, y_rim - dep * 0.6)]
    b.add("bowl", xf(lathe(prof, n=22), s=(sx, 1, 1), t=(0.02, 0, 0)))
    b.add("seat", xf(torus((0, 0, 0), R * 0.85, 0.025, R=rot("x", np.pi / 2), n_major=22, n_minor=6, ratio=0.5),
                     s=(sx, 1, 1), t=(0.02, y_rim + 0.01, 0)))
    tank_d, tank_w, tank_h = _u(r, 0.1, 0.18), R * 2 * _u(r, 0.9, 1.4), _u(r, 0.25, 0.4)
    tx = -R * sx * 0.88 - tank_d / 2 + 0.02  # the tank sits on the back of the bowl
    if _p(r, 0.85):
        b.add("tank", box((tx, y_rim + (tank_h - dep * 0.5) / 2 - 0.02, 0), (tank_d, tank_h + dep * 0.5, tank_w)),
              box((tx, y_rim + tank_h - 0.01, 0), (tank_d + 0.02, 0.02, tank_w + 0.02)))
        if not wall_hung:  # the ledge of the base that carries the tank
            back = tx - tank_d / 2
            b.add("base", box((back / 2, y_rim - dep * 0.75 - 0.02, 0), (-back, dep * 0.5, tank_w * 0.6)))
        if _p(r, 0.5):
            b.add("tank", cyl((tx, y_rim + tank_h, 0), (tx, y_rim + tank_h + 0.01, 0), 0.025, n=10))
    if _p(r, 0.5):
        b.add("lid", xf(cyl((0, 0, 0), (0, 0.02, 0), R * 0.95, n=22), s=(sx, 1, 1), t=(0.02, y_rim + 0.03, 0)))
    else:
        b.add("lid", xf(cyl((0, 0, 0), (0, 0.02, 0), R * 0.95, n=22), R=rot("z", np.pi / 2 - 0.1),
                        t=(-R * sx + 0.02, y_rim + R + 0.02, 0)))


def _cap(r: np.random.Generator, b: Builder) -> None:
    R = 0.5
    H = R * _u(r, 0.6, 1.0)
    t = 0.02
    n = 20
    prof = [(R - t, 0), (R, 0)]
    for k in range(1, n):
        a = k / n * (np.pi / 2)
        prof.append((R * np.cos(a), H * np.sin(a)))
    prof.append((0, H))
    inner = [(0, H - t)] + [((R - t) * np.cos(a), (H - t) * np.sin(a)) for a in np.linspace(np.pi / 2, 0, n)[1:-1]]
    prof += inner
    sz = _u(r, 0.85, 1.0)
    b.add("panels", xf(lathe(prof, n=24), s=(1, 1, sz)))
    if _p(r, 0.5):
        b.add("panels", ellipsoid((0, H, 0), (0.04, 0.02, 0.04)))
    brim = R * _u(r, 0.5, 0.9)
    half = _u(r, 0.7, 1.2)
    tilt = _u(r, -0.05, 0.35)
    peak = lathe([(R * 0.92, 0), (R + brim, 0), (R + brim, t), (R * 0.92, t)], n=14, a0=-half, a1=half, caps=True)
    b.add("peak", xf(xf(peak, s=(1, 1, sz)), R=rot("z", -tilt), t=(0, 0.0, 0)))


def _earphone(r: np.random.Generator, b: Builder) -> None:
    if _p(r, 0.7):
        Rb = _u(r, 0.35, 0.48)
        cr = _u(r, 0.1, 0.18)
        ct = _u(r, 0.05, 0.1)
        sy = _u(r, 0.9, 1.3)
        b.add("headband", xf(torus((0, 0, 0), Rb, _u(r, 0.015, 0.03), R=rot("y", np.pi / 2), a0=0.05, a1=np.pi - 0.05,
                                   n_major=20, ratio=_u(r, 1.5, 3)), s=(1, sy, 1)))
        for sz in (-1, 1):
            z = sz * Rb
            b.add("earphone", cyl((0, -cr * 0.5, z - sz * ct * 0.2), (0, -cr * 0.5, z - sz * ct), cr, n=16),
                  cyl((0, -cr * 0.5, z), (0, 0.02, z), 0.012, n=6))
        if _p(r, 0.6):
            pts = [(0, -cr * 1.4, -Rb)]
            y = -cr * 1.4
            for k in range(int(r.integers(3, 7))):
                y -= _u(r, 0.08, 0.18)
                pts.append((_u(r, -0.1, 0.1), y, -Rb + _u(r, -0.1, 0.3)))
            b.add("cord", tube_path(pts, 0.008, n=6))
        return
    split = np.array([0.0, _u(r, -0.3, -0.1), 0.0])
    for sz in (-1, 1):
        bud = np.array([_u(r, -0.05, 0.05), 0.2, sz * _u(r, 0.2, 0.35)])
        b.add("earphone", ellipsoid(bud, (0.06, 0.07, 0.06)), cyl(bud, bud + np.array([0, -0.12, 0]), 0.02, n=8))
        b.add("cord", tube_path([bud + np.array([0, -0.12, 0]), split], 0.008, n=6))
    end = split + np.array([_u(r, -0.1, 0.1), -_u(r, 0.3, 0.6), _u(r, -0.1, 0.1)])
    b.add("cord", tube_path([split, end], 0.008, n=6), cyl(end, end + np.array([0, -0.06, 0]), 0.015, n=8))


def _guitar(r: np.random.Generator, b: Builder) -> None:
    electric = _p(r, 0.35)
    T = _u(r, 0.04, 0.06) if electric else _u(r, 0.08, 0.13)
    lo = _u(r, 0.16, 0.21)
    up = lo * _u(r, 0.65, 0.85)
    yl = lo
    yu = yl + lo * _u(r, 0.85, 1.1)
    b.add("body", cyl((0, yl, -T / 2), (0, yl, T / 2), lo, n=24), cyl((0, yu, -T / 2), (0, yu, T / 2), up, n=24))
    if electric and _p(r, 0.6):
        b.add("body", xf(cyl((0, 0, -T / 2), (0, 0, T / 2), up * 0.5, n=14), t=(up * 0.6, yu + up * 0.6, 0)))
    if not electric and _p(r, 0.7):
        b.add("body", cyl((0, yu - up * 0.1, T / 2), (0, yu - up * 0.1, T / 2 + 0.004), up * 0.35, n=16))
    b.add("body", box((0, yl - lo * 0.3, T / 2 + 0.006), (lo * 0.6, 0.03, 0.012)))
    neck_top = _u(r, 0.85, 0.95)
    y0 = yu + up * 0.8
    b.add("neck", box((0, (y0 + neck_top) / 2, T / 2 - 0.015), (0.05, neck_top - y0, 0.025)))
    hl = _u(r, 0.09, 0.15)
    ang = _u(r, 0.0, 0.25)
    Rh = rot("x", -ang)
    hw = _u(r, 0.05, 0.09)
    base = np.array([0, neck_top, T / 2 - 0.015])
    b.add("head", xf(box((0, hl / 2, 0), (hw, hl, 0.02)), R=Rh, t=base))
    for k in range(3):
        for sx in (-1, 1):
            p = np.array([sx * hw / 2, hl * (0.2 + 0.3 * k), 0])
            b.add("head", xf(cyl(p, p + np.array([sx * 0.03, 0, 0]), 0.006, n=6), R=Rh, t=base))


def _knife(r: np.random.Generator, b: Builder) -> None:
    kind = _pick(r, ["kitchen", "dagger", "cleaver"], [0.55, 0.3, 0.15])
    hl = _u(r, 0.25, 0.4)
    bl = 1.0 - hl
    hh = _u(r, 0.05, 0.09)
    b.add("handle", cyl((-hl, 0, 0), (0, 0, 0), hh / 2, n=12, ratio=_u(r, 0.5, 0.8)))
    if kind != "kitchen" or _p(r, 0.3):
        b.add("handle", box((0.01, 0, 0), (0.02, hh * _u(r, 1.5, 3), 0.03)))
    bh = _u(r, 0.08, 0.2)
    t = 0.012
    if kind == "cleaver":
        b.add("blade", box((bl / 2, -bh * 0.6, 0), (bl, bh * 2, t)))
        return
    if kind == "dagger":
        c = [(0.0, -bh / 2), (bl, 0.0), (0.0, bh / 2), (bl, 0.0)]
    else:
        c = [(0.0, -bh + hh / 2), (bl, hh / 2 * 0.3), (0.0, hh / 2), (bl, hh / 2 * 0.5)]
    pts = []
    for i in range(8):
        xb, yb, zb = i & 1, (i >> 1) & 1, (i >> 2) & 1
        x, y = c[xb + 2 * yb]
        zz = (zb - 0.5) * (t if xb == 0 else 0.002)
        pts.append((x, y, zz))
    b.add("blade", hexa(np.array(pts)))


def _laptop(r: np.random.Generator, b: Builder) -> None:
    W, D = 1.0, _u(r, 0.6, 0.8)
    T = _u(r, 0.02, 0.045)
    b.add("keyboard", box((0, T / 2, 0), (D, T, W)))
    b.add("keyboard", box((D * 0.12, T + 0.003, 0), (D * 0.4, 0.006, W * 0.85)))
    if _p(r, 0.7):
        b.add("keyboard", box((-D * 0.3, T + 0.002, 0), (D * 0.25, 0.004, W * 0.3)))
    ang = _u(r, 95, 135) * np.pi / 180
    Rs = rot("z", -(np.pi - ang))
    SH = D * _u(r, 0.95, 1.05)
    st = T * _u(r, 0.4, 0.8)
    hinge = np.array([-D / 2, T, 0])
    b.add("screen", xf(box((-SH / 2, st / 2, 0), (SH, st, W)), R=Rs, t=hinge))
    b.add("screen", xf(box((-SH / 2, st + 0.002, 0), (SH * 0.9, 0.004, W * 0.92)), R=Rs, t=hinge))


def _motorbike(r: np.random.Generator, b: Builder) -> None:
    wr = _u(r, 0.15, 0.2)
    tr = wr * _u(r, 0.2, 0.32)
    wb = _u(r, 0.55, 0.75)
    xf_, xr = wb / 2, -wb / 2
    for x in (xf_, xr):
        b.add("wheel", torus((x, wr, 0), wr - tr, tr, n_major=22, n_minor=8),
              cyl((x, wr, -tr * 0.6), (x, wr, tr * 0.6), (wr - tr) * 0.9, n=18))
    head = np.array([xf_ - wr * _u(r, 0.5, 1.0), wr * _u(r, 2.6, 3.4), 0])
    b.add("frame", tube_path([(xf_, wr, 0), head], 0.018), tube_path([(xr, wr, 0), (0, wr * 1.3, 0), head], 0.02),
          tube_path([(xr, wr, 0), (xr * 0.5, head[1] * 0.85, 0)], 0.015))
    eng = _u(r, 0.18, 0.28)
    b.add("frame", box((0, wr * 1.25, 0), (eng, eng * 0.8, 0.12)))
    b.add("frame", tube_path([(eng / 2, wr * 0.9, 0.07), (xr, wr * 1.1, 0.1)], 0.02))
    tank_c = head + np.array([-_u(r, 0.12, 0.2), -_u(r, 0.02, 0.08), 0])
    b.add("gas_tank", ellipsoid(tank_c, (_u(r, 0.1, 0.16), _u(r, 0.05, 0.08), _u(r, 0.06, 0.1))))
    sl = _u(r, 0.15, 0.3)
    seat_c = tank_c + np.array([-_u(r, 0.12, 0.18) - sl / 2, -0.01, 0])
    b.add("seat", ellipsoid(seat_c, (sl / 2, 0.03, 0.07), power=0.5))
    hb = head + np.array([-0.02, _u(r, 0.05, 0.12), 0])
    hw = _u(r, 0.2, 0.3)
    bar = np.array([0, 0, hw / 2])
    b.add("handle", cyl(head, hb, 0.012, n=6), cyl(hb - bar, hb + bar, 0.01, n=6))
    for sz in (-1, 1):
        b.add("handle", cyl(hb + np.array([0, 0, sz * hw / 2]), hb + np.array([0, 0, sz * (hw / 2 + 0.05)]),
                            0.016, n=8))
    lc = head + np.array([0.05, -0.02, 0])
    if _p(r, 0.5):
        b.add("light", cyl(lc, lc + np.array([0.04, 0, 0]), _u(r, 0.03, 0.05), n=12))
    else:
        b.add("light", ellipsoid(lc + np.array([0.02, 0, 0]), (0.035, 0.035, 0.035)))
    if _p(r, 0.5):
        for x in (xf_, xr):
            b.add("frame", torus((x, wr, 0), wr + 0.03, 0.008, a0=0.3, a1=np.pi - 0.5, n_major=10, ratio=4))


def _mug(r: np.random.Generator, b: Builder) -> None:
    R0 = _u(r, 0.28, 0.45)
    R1 = R0 * _u(r, 0.85, 1.2)
    H = 1.0 * _u(r, 0.7, 1.0)
    t = 0.03
    b.add("body", lathe([(0, 0), (R0, 0), (R1, H), (R1 - t, H), (R0 - t, t), (0, t)], n=24))
    hr = H * _u(r, 0.22, 0.35)
    hm = (R0 + R1) / 2
    if _p(r, 0.7):
        b.add("handle", torus((hm - 0.02, H * 0.5, 0), hr, _u(r, 0.035, 0.06), a0=-np.pi / 2 - 0.05,
                              a1=np.pi / 2 + 0.05,
                              n_major=14, ratio=_u(r, 0.7, 1.3)))
    else:
        o = _u(r, 0.15, 0.25)
        tt = 0.04
        b.add("handle", box((hm + o / 2 - 0.02, H * 0.5 + hr, 0), (o, tt, tt)),
              box((hm + o / 2 - 0.02, H * 0.5 - hr, 0), (o, tt, tt)),
              box((hm + o - 0.02, H * 0.5, 0), (tt, 2 * hr + tt, tt)))


def _pistol(r: np.random.Generator, b: Builder) -> None:
    revolver = _p(r, 0.25)
    L = 1.0
    sh = _u(r, 0.12, 0.18)
    sl = L * _u(r, 0.55, 0.7)
    x1 = L / 2
    x0 = x1 - sl
    if revolver:
        b.add("barrel", cyl((x0 + sl * 0.35, sh * 0.6, 0), (x1, sh * 0.6, 0), 0.03, n=12),
              cyl((x0, sh * 0.3, 0), (x0 + sl * 0.3, sh * 0.3, 0), 0.07, n=14),
              box((x0 + 0.06, sh * 0.4, 0), (0.2, sh, 0.05)))
    else:
        b.add("barrel", box(((x0 + x1) / 2, sh / 2, 0), (sl, sh, _u(r, 0.05, 0.07))),
              cyl((x1, sh * 0.6, 0), (x1 + 0.02, sh * 0.6, 0), 0.018, n=10))
    ang = _u(r, 0.15, 0.45)
    gl = _u(r, 0.35, 0.5)
    gw = _u(r, 0.1, 0.15)
    gx = x0 + gw / 2 + 0.02
    Rg = rot("z", -ang)  # grip raked backwards
    b.add("handle", box((gx - np.sin(ang) * gl / 2, -np.cos(ang) * gl / 2 + 0.02, 0), (gw, gl, 0.06), R=Rg))
    if _p(r, 0.5):
        b.add("handle", box((gx - np.sin(ang) * gl, -np.cos(ang) * gl + 0.02, 0), (gw * 1.1, 0.02, 0.065), R=Rg))
    tg = _u(r, 0.06, 0.1)
    tc = np.array([gx + gw * 0.5 + tg, 0.0, 0])
    b.add("trigger_guard", torus(tc, tg, 0.01, a0=np.pi, a1=2 * np.pi, n_major=10),
          box(tc + np.array([-0.01, -tg * 0.4, 0]), (0.015, tg * 0.8, 0.015), R=rot("z", 0.3)))


def _rocket(r: np.random.Generator, b: Builder) -> None:
    R = _u(r, 0.05, 0.11)
    bl = _u(r, 0.55, 0.8)
    nl = _u(r, 0.12, 0.3)
    y0 = 0.08
    b.add("body", cyl((0, y0, 0), (0, y0 + bl, 0), R, n=18))
    sharp = _u(r, 1.2, 2.5)
    ogive = [(R * (1 - (k / 8) ** sharp), y0 + bl + nl * k / 8) for k in range(8)]
    ogive = [(0, y0 + bl)] + ogive + [(0, y0 + bl + nl)]
    b.add("nose", lathe(ogive, n=18))
    if _p(r, 0.6):
        b.add("body", frustum((0, y0, 0), (0, y0 - 0.07, 0), R * 0.7, R * 0.9, n=14))
    nf = int(r.choice([3, 4], p=[0.4, 0.6]))
    fh = _u(r, 0.1, 0.25)
    fs = R * _u(r, 0.8, 2.0)
    for k in range(nf):
        a = 2 * np.pi * k / nf
        d = np.array([np.cos(a), 0, np.sin(a)])
        b.add("fin", planform(np.array([0, y0 + fh, 0]) + d * R * 0.9, (0, 1, 0), fh, d * fs, fh * _u(r, 0.2, 0.7),
                              fh * _u(r, 0.2, 0.6), 0.012, 0.008))
    if _p(r, 0.25):
        for sx in (-1, 1):
            c = np.array([sx * R * 1.8, 0, 0])
            b.add("body", cyl(c + np.array([0, y0, 0]), c + np.array([0, y0 + bl * 0.5, 0]), R * 0.45, n=12),
                  frustum(c + np.array([0, y0 + bl * 0.5, 0]), c + np.array([0, y0 + bl * 0.5 + 0.06, 0]),
                          R * 0.45, 0.0, n=12))


def _skateboard(r: np.random.Generator, b: Builder) -> None:
    long = _p(r, 0.25)
    L = 1.0
    W = L * (_u(r, 0.2, 0.3) if not long else _u(r, 0.18, 0.25))
    t = 0.015
    hy = _u(r, 0.08, 0.12)
    flat = L * (_u(r, 0.55, 0.7) if not long else _u(r, 0.8, 0.95))
    if long or _p(r, 0.2):
        b.add("deck", cyl((0, hy, 0), (0, hy + t, 0), L / 2, n=28, ratio=W / L))
    else:
        b.add("deck", box((0, hy + t / 2, 0), (flat, t, W)))
        tail = (L - flat) / 2
        for sx in (-1, 1):
            a = _u(r, 0.15, 0.4)
            c = np.array([sx * (flat / 2 + np.cos(a) * tail / 2), hy + t / 2 + np.sin(a) * tail / 2, 0])
            b.add("deck", box(c, (tail, t, W), R=rot("z", sx * a)))
    tx = flat / 2 * _u(r, 0.6, 0.8)
    wrad = _u(r, 0.025, 0.045)
    for sx in (-1, 1):
        x = sx * tx
        b.add("truck", box((x, hy - 0.015, 0), (0.06, 0.03, W * 0.45)),
              hexa(np.stack([(x + dx * (3 - yb), (wrad + 0.005, hy - 0.03)[yb], sz * W * (0.2 - 0.05 * yb))
                             for sz in (-1, 1) for yb in (0, 1) for dx in (-0.01, 0.01)])),
              cyl((x, wrad, -W * 0.45), (x, wrad, W * 0.45), 0.006, n=6))
        for sz in (-1, 1):
            b.add("wheel", cyl((x, wrad, sz * W * 0.42), (x, wrad, sz * (W * 0.42 + 0.035)), wrad, n=14))


def _bathtub(r: np.random.Generator, b: Builder) -> None:
    L = 1.0
    W = L * _u(r, 0.38, 0.55)
    H = L * _u(r, 0.25, 0.4)
    t = _u(r, 0.03, 0.06)
    y0 = 0.0
    if _p(r, 0.3):
        y0 = _u(r, 0.05, 0.1)
        for sx in (-1, 1):
            for sz in (-1, 1):
                b.add("feet", ellipsoid((sx * L * 0.38, y0 / 2, sz * W * 0.35), (0.04, y0 / 2 + 0.01, 0.04)))
    if _p(r, 0.55):
        b.add("tub", box((0, y0 + t / 2, 0), (L, t, W)))
        b.add("tub", box((L / 2 - t / 2, y0 + H / 2, 0), (t, H, W)), box((-L / 2 + t / 2, y0 + H / 2, 0), (t, H, W)),
              box((0, y0 + H / 2, W / 2 - t / 2), (L - 2 * t, H, t)), box((0, y0 + H / 2, -W / 2 + t / 2),
                                                                          (L - 2 * t, H, t)))
        if _p(r, 0.5):
            b.add("rim", box((0, y0 + H, W / 2 - t), (L, 0.02, 2 * t)), box((0, y0 + H, -W / 2 + t), (L, 0.02,
                                                                                                      2 * t)))
    else:
        R = W / 2
        prof = [(0, y0), (R * 0.75, y0), (R, y0 + H), (R - t, y0 + H), (R * 0.75 - t, y0 + t), (0, y0 + t)]
        b.add("tub", xf(lathe(prof, n=24), s=(L / W, 1, 1)))
    if _p(r, 0.5):
        fx = -L / 2 + 0.05
        b.add("faucet", tube_path([(fx, y0 + H, 0), (fx, y0 + H + 0.1, 0), (fx + 0.1, y0 + H + 0.1, 0)], 0.012))


def _bottle(r: np.random.Generator, b: Builder) -> None:
    R = _u(r, 0.12, 0.22)
    H = 1.0
    body_h = H * _u(r, 0.45, 0.7)
    shoulder = H * _u(r, 0.05, 0.2)
    nr = R * _u(r, 0.2, 0.45)
    neck_top = H * 0.92
    prof = [(0, 0), (R * 0.95, 0), (R, 0.02), (R, body_h), (nr, body_h + shoulder), (nr, neck_top), (0, neck_top)]
    b.add("body", lathe(prof, n=20))
    b.add("cap", cyl((0, neck_top - 0.01, 0), (0, H, 0), nr * _u(r, 1.05, 1.3), n=14))
    if _p(r, 0.4):
        b.add("label", cyl((0, body_h * 0.3, 0), (0, body_h * 0.75, 0), R * 1.01, n=20))
    if _p(r, 0.12):
        b.add("handle", torus((R * 0.9, body_h * 0.8, 0), body_h * 0.15, 0.02, a0=-np.pi / 2, a1=np.pi / 2,
                              n_major=10))


def _bowl(r: np.random.Generator, b: Builder) -> None:
    R = 0.5
    H = R * _u(r, 0.35, 0.8)
    fr = R * _u(r, 0.3, 0.6)
    t = 0.025
    n = 8
    prof = [(0, 0), (fr, 0)]
    prof += [(fr + (R - fr) * np.sin(a), H * (1 - np.cos(a))) for a in np.linspace(0, np.pi / 2, n)[1:]]
    prof += [(R - t, H)] + [(fr + (R - t - fr) * np.sin(a),
                             t + (H - t) * (1 - np.cos(a))) for a in np.linspace(np.pi / 2, 0, n)[1:]]
    prof += [(0, t)]
    b.add("body", lathe(prof, n=24))
    if _p(r, 0.5):
        b.add("foot", lathe([(fr * 0.8, -0.04), (fr * 1.0, -0.04), (fr * 1.0, 0.001), (fr * 0.8, 0.001)], n=24))


def _stairs(r: np.random.Generator, b: Builder) -> None:
    n = int(r.integers(3, 10))
    W = _u(r, 0.5, 1.0)
    rise, run = 1.0 / n * _u(r, 0.7, 1.0), 1.0 / n * _u(r, 0.8, 1.3)
    solid = _p(r, 0.5)
    for k in range(n):
        if solid:
            b.add("step", box(((k + 0.5) * run, (k + 1) * rise / 2, 0), (run, (k + 1) * rise, W)))
        else:
            b.add("step", box(((k + 0.5) * run, (k + 1) * rise - 0.02, 0), (run * 1.05, 0.04, W)))
    if not solid:
        for sz in (-1, 1):
            b.add("stringer", cyl((0, 0, sz * W / 2), (n * run, n * rise, sz * W / 2), 0.035, n=4, ratio=0.4))
    if _p(r, 0.5):
        for sz in ([-1, 1] if _p(r, 0.5) else [1]):
            z = sz * (W / 2 - 0.02)
            posts = []
            for k in range(0, n, max(1, n // 3)):
                base = np.array([(k + 0.5) * run, (k + 1) * rise, z])
                posts.append(base + np.array([0, 0.3, 0]))
                b.add("railing", cyl(base, base + np.array([0, 0.3, 0]), 0.012, n=6))
            if len(posts) > 1:
                b.add("railing", tube_path(posts, 0.015))


def _vase(r: np.random.Generator, b: Builder) -> None:
    H = 1.0
    k = 6
    ctrl = np.array([_u(r, 0.12, 0.3)] + [_u(r, 0.1, 0.4) for _ in range(k - 2)] + [_u(r, 0.08, 0.25)])
    ys = np.linspace(0, H, 24)
    xs = np.linspace(0, H, k)
    rad = np.interp(ys, xs, ctrl)
    rad = np.convolve(np.pad(rad, 2, mode="edge"), np.ones(5) / 5, mode="valid")
    t = 0.02
    outer = list(zip(rad, ys))
    inner = list(zip(rad[::-1][1:-1] - t, ys[::-1][1:-1] + t * 0.5))
    prof = [(0, 0)] + outer + [(rad[-1] - t, H)] + inner + [(max(rad[0] - t, 0.01), t), (0, t)]
    b.add("body", lathe(prof, n=22))
    if _p(r, 0.2):
        for sz in (-1, 1):
            a0 = -np.pi / 2 if sz > 0 else np.pi / 2
            b.add("handle", torus((0, H * 0.75, sz * rad[18]), 0.1, 0.015, R=rot("y", np.pi / 2), a0=a0,
                                  a1=a0 + np.pi, n_major=10))


# name -> (builder, part vocabulary). ShapeNetPart categories use the official part order.
FAMILIES: dict[str, tuple[Callable, tuple[str, ...]]] = {
    "airplane": (_airplane, ("body", "wing", "tail", "engine")),
    "bag": (_bag, ("handle", "body")),
    "cap": (_cap, ("panels", "peak")),
    "car": (_car, ("roof", "hood", "wheel", "body")),
    "chair": (_chair, ("back", "seat", "leg", "arm")),
    "earphone": (_earphone, ("earphone", "headband", "cord")),
    "guitar": (_guitar, ("head", "neck", "body")),
    "knife": (_knife, ("blade", "handle")),
    "lamp": (_lamp, ("base", "shade", "canopy", "tube")),
    "laptop": (_laptop, ("keyboard", "screen")),
    "motorbike": (_motorbike, ("gas_tank", "seat", "wheel", "handle", "light", "frame")),
    "mug": (_mug, ("handle", "body")),
    "pistol": (_pistol, ("barrel", "handle", "trigger_guard")),
    "rocket": (_rocket, ("body", "fin", "nose")),
    "skateboard": (_skateboard, ("wheel", "deck", "truck")),
    "table": (_table, ("top", "leg", "support")),
    "bench": (_bench, ("seat", "leg", "back", "arm")),
    "cabinet": (_cabinet, ("body", "base", "door", "drawer", "handle")),
    "display": (_display, ("frame", "screen", "base", "neck")),
    "loudspeaker": (_loudspeaker, ("body", "driver", "stand")),
    "rifle": (_rifle, ("receiver", "barrel", "stock", "magazine", "scope")),
    "sofa": (_sofa, ("base", "cushion", "back", "arm", "leg")),
    "telephone": (_telephone, ("body", "screen", "camera", "button", "handset")),
    "watercraft": (_watercraft, ("hull", "cabin", "mast", "sail", "funnel")),
    "bin": (_bin, ("body", "lid", "pedal")),
    "box": (_box, ("body", "flap", "lid")),
    "desk": (_desk, ("top", "leg", "drawer", "handle", "panel", "shelf")),
    "door": (_door, ("leaf", "frame", "panel", "window", "handle")),
    "shelf": (_shelf, ("side", "board", "back", "book")),
    "bed": (_bed, ("frame", "mattress", "headboard", "pillow", "blanket")),
    "pillow": (_pillow, ("body", "trim", "button")),
    "sink": (_sink, ("basin", "pedestal", "cabinet", "counter", "bracket", "faucet")),
    "toilet": (_toilet, ("bowl", "base", "seat", "tank", "lid")),
    "bathtub": (_bathtub, ("tub", "rim", "feet", "faucet")),
    "bottle": (_bottle, ("body", "cap", "label", "handle")),
    "bowl": (_bowl, ("body", "foot")),
    "stairs": (_stairs, ("step", "stringer", "railing")),
    "vase": (_vase, ("body", "handle")),
}


def build_object(family: str, rng: np.random.Generator) -> PartMesh:
    """Builds one random instance of ``family`` (unnormalized, y up, resting near y = 0)."""
    if family not in FAMILIES:
        raise KeyError(f"unknown shape family {family!r}; known: {sorted(FAMILIES)}")
    fn, vocab = FAMILIES[family]
    b = Builder(vocab)
    fn(rng, b)
    return b.build()
