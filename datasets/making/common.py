"""What the synthetic generator and mesh preparation share: seeding by name, HDF5 split files, mesh geometry.

``datasets.synthetic`` (procedural objects) and ``datasets.prepare_meshes`` (your meshes) write the same
on-disk formats from triangle meshes; the helpers both need live here, once:

- :func:`text_key`: a stable integer of a name, for seeding an object's generator by (seed, class, name);
- :func:`write_h5` / :func:`write_split_files`: ModelNet40-style ``{prefix}{i}.h5`` files without timestamps
  (same arrays, same bytes);
- :func:`rot`, :func:`face_normals`, :func:`face_areas`, :func:`sample_surface`, :func:`unit_sphere`:
  rotation matrices, per-face normals and areas, area-weighted surface samples, ModelNet40's unit-sphere
  normalisation.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Protocol

import h5py
import numpy as np


class Mesh(Protocol):
    """A triangle mesh: vertices (V, 3) float, faces (F, 3) int."""

    vertices: np.ndarray
    faces: np.ndarray


def text_key(text: str) -> int:
    """A stable integer of a name (crc32 of its UTF-8), for seeding generators by name."""
    return zlib.crc32(text.encode("utf-8"))


def write_h5(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An HDF5 file with one dataset per key; no timestamps, so identical arrays give identical bytes."""
    with h5py.File(path, "w") as f:
        for k, a in arrays.items():
            f.create_dataset(k, data=a, track_times=False)


def write_split_files(folder: Path, prefix: str, arrays: dict[str, np.ndarray], per_file: int = 2048) -> list[str]:
    """Writes ``{prefix}0.h5, {prefix}1.h5, ...`` with at most ``per_file`` shapes each (as published;
    one file, empty arrays, when N = 0). arrays: {key: (N, ...)}, all split along axis 0 alike.
    Returns the file names in order (shape i is row i % per_file of file i // per_file)."""
    n = len(next(iter(arrays.values())))
    names = []
    for k, start in enumerate(range(0, max(n, 1), per_file)):
        sl = slice(start, start + per_file)
        name = f"{prefix}{k}.h5"
        write_h5(folder / name, {key: val[sl] for key, val in arrays.items()})
        names.append(name)
    return names


def rot(axis: str, angle: float) -> np.ndarray:
    """(3, 3) rotation matrix about the x, y or z axis by ``angle`` radians (right-handed)."""
    c, s = math.cos(angle), math.sin(angle)
    if axis == "x":
        return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])
    if axis == "z":
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    raise ValueError(f"rot: axis must be 'x', 'y' or 'z', got {axis!r}")


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit face normals (F, 3); degenerate faces get (0, 1, 0)."""
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    n = np.cross(b - a, c - a)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    out = np.where(norm > 1e-12, n / np.maximum(norm, 1e-12), np.array([0.0, 1.0, 0.0]))
    return out


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Triangle areas (F,)."""
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


def sample_surface(mesh: Mesh, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted uniform surface samples: points (n, 3) float64 and their face index (n,) int64.
    ``mesh`` is any object with ``vertices`` (V, 3) and ``faces`` (F, 3) (a PartMesh, a trimesh.Trimesh)."""
    area = face_areas(mesh.vertices, mesh.faces)
    cum = np.cumsum(area)
    face = np.searchsorted(cum, rng.random(n) * cum[-1], side="right")
    face = np.minimum(face, len(area) - 1)
    u1, u2 = rng.random(n), rng.random(n)
    s = np.sqrt(u1)
    w0, w1, w2 = 1.0 - s, s * (1.0 - u2), s * u2
    tri = mesh.vertices[mesh.faces[face]]  # (n, 3, 3)
    pts = w0[:, None] * tri[:, 0] + w1[:, None] * tri[:, 1] + w2[:, None] * tri[:, 2]
    return pts, face


def unit_sphere(points: np.ndarray) -> np.ndarray:
    """(N, 3) -> (N, 3) float32: centroid at the origin, largest norm 1 (ModelNet40's HDF5
    convention, PointNet's). Computed in float64."""
    p = np.asarray(points, dtype=np.float64)
    p = p - p.mean(axis=0)
    radius = float(np.linalg.norm(p, axis=1).max())
    return (p / radius if radius > 0 else p).astype(np.float32)
