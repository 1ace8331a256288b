"""Reading the user's own meshes and point clouds, validated, with one normalisation convention.

Used by ``python -m datasets.prepare_meshes`` (meshes -> a ShapeNetRender-style data root) and by
tools that embed arbitrary files. Everything that is wrong with a file raises :class:`MeshError`
(a :class:`datasets.io.DatasetError`, so a ``ValueError``) whose message names the file and says
what is wrong; nothing is silently repaired.

Meshes (:data:`MESH_EXTENSIONS`): OFF (read here, including ModelNet's malformed headers with the
counts on the header line, ``OFF490 518 0``, and polygons fan-triangulated), and OBJ, PLY, STL
(ASCII and binary), GLB and GLTF through trimesh. A file with several geometries (a scene, an OBJ
with several objects, an STL with several solids) is merged into one mesh with each node's
transform applied. Colours, textures, materials and normals in the file are ignored.

Point clouds (:data:`POINT_EXTENSIONS`): PLY without faces, XYZ/TXT/PTS text, NPY, NPZ and HDF5
(the published ``data`` (M, N, 3) layout); see :func:`read_point_file`.

Normalisation (objects come in any unit and pose; only translation, scale and the up axis change):

1. Up axis (:func:`load_mesh` ``up_axis``): ``"y"`` (ShapeNet's convention) keeps the coordinates;
   ``"z"`` turns z-up input into y-up with the rotation (x, y, z) -> (x, z, -y) (-90 degrees about
   x; a proper rotation, no mirroring). ModelNet's raw OFF files are z-up.
2. :func:`normalize_mesh`: centre the axis-aligned bounding box at the origin and scale the
   bounding-box diagonal to 1 (the ShapeNetCore v1 convention of the published ShapeNetRender
   clouds and 3D-R2N2 renderings). The result does not depend on the input's unit: the same mesh
   scaled by 1e-3 or 1e4 gives the same normalised mesh up to float rounding.
3. ``unit_sphere`` (classification clouds, the ModelNet40 HDF5 convention): centroid at the
   origin, largest point norm 1. Defined in ``datasets/making/common.py``, shared with the synthetic
   generator, which normalises its clouds with it too.

Rejected as degenerate (with the reason): no faces, a face index outside the vertex list, NaN/inf
vertex coordinates, all vertices at one point (collapsed bounding box), zero surface area (every
triangle collapsed to a point or a line).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import stat
import sys
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import trimesh

from util.progress import progress_bar

from datasets.io import DatasetError, read_h5, read_ply_points
from datasets.making.common import face_areas, sample_surface as _sample_faces, unit_sphere

__all__ = [
    "MeshError", "MESH_EXTENSIONS", "POINT_EXTENSIONS", "COMPANION_EXTENSIONS", "UP_AXES",
    "load_mesh", "normalize_mesh", "sample_surface", "z_up_to_y_up",
    "ply_face_count", "input_kind", "read_point_file", "find_inputs", "UnsupportedFilesWarning",
    "encoder_clouds", "read_encoder_clouds", "file_rng", "unreadable_reason",
]

MESH_EXTENSIONS = (".glb", ".gltf", ".obj", ".off", ".ply", ".stl")
POINT_EXTENSIONS = (".h5", ".hdf5", ".npy", ".npz", ".ply", ".pts", ".txt", ".xyz")
# Files that travel with a mesh (materials, textures, glTF buffers): never inputs themselves.
COMPANION_EXTENSIONS = (".bin", ".bmp", ".jpeg", ".jpg", ".mtl", ".png", ".tga", ".tif", ".tiff")
UP_AXES = ("y", "z")
NPZ_KEYS = ("points", "data", "xyz")
# An input with 3 rows and more columns than this is a transposed (3, N) array, not 3 points with
# extra per-point columns (x y z nx ny nz r g b is the widest common layout).
_MAX_EXTRA_COLUMNS = 9


class MeshError(DatasetError):
    """A mesh or point file that cannot be used: ``str(e)`` is ``"<path>: <reason>"``.

    Attributes: ``path`` (the file, as given) and ``reason`` (what is wrong, without the path).
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across worker processes despite the two-argument constructor
        return type(self), (self.path, self.reason)


def _reason(error: DatasetError, path: str | os.PathLike) -> str:
    """The message of a DatasetError from ``datasets.io`` without its leading ``"<path>: "``."""
    text = str(error)
    prefix = f"{os.fspath(path)}: "
    return text[len(prefix):] if text.startswith(prefix) else text


# ----------------------------------------------------------------------------------------------
# Meshes
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_trimesh() -> Iterator[None]:
    """Silence trimesh's log while it loads: it logs full tracebacks for missing texture images,
    which this module ignores anyway (only geometry is used)."""
    logger = logging.getLogger("trimesh")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _off_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the non-empty lines of an OFF file, comments (``#``) removed."""
    raw = path.read_bytes()
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        raise MeshError(path, f"not an ASCII OFF file (byte {e.start} is not ASCII; binary OFF "
                              "is not supported)") from e
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            lines.append((number, line))
    return lines


def _read_off(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) float64 and triangles (F, 3) int64 of an ASCII OFF file.

    Accepts the keywords OFF, COFF, NOFF, CNOFF, STOFF... (colours, normals and texture
    coordinates after x y z are ignored), counts on their own line or on the header line
    (ModelNet's ``OFF490 518 0``), and polygons with any number of vertices (fan-triangulated).
    """
    lines = _off_lines(path)
    if not lines:
        raise MeshError(path, "empty OFF file")
    number, header = lines[0]
    m = re.fullmatch(r"(ST)?C?N?(4)?(n)?OFF\s*(.*)", header)
    if m is None:
        raise MeshError(path, f"not an OFF file: line {number} is {header[:60]!r}, expected a "
                              "header starting with OFF")
    if m.group(2) or m.group(3):
        raise MeshError(path, "4OFF/nOFF (not 3-D vertices) is not supported")
    rest = m.group(4).split()
    if rest and rest[0].upper() == "BINARY":
        raise MeshError(path, "binary OFF is not supported; convert it to ASCII OFF or PLY")
    body = lines[1:]
    if not rest:  # counts on the next line (the standard layout)
        if not body:
            raise MeshError(path, "OFF file has no vertex/face count line")
        number, counts_line = body[0]
        rest, body = counts_line.split(), body[1:]
    try:
        counts = [int(t) for t in rest[:3]]
    except ValueError:
        raise MeshError(path, f"line {number}: malformed OFF counts {' '.join(rest)!r}, expected "
                              "'<vertices> <faces> <edges>'") from None
    if len(counts) < 2 or min(counts) < 0:
        raise MeshError(path, f"line {number}: malformed OFF counts {' '.join(rest)!r}, expected "
                              "'<vertices> <faces> <edges>'")
    nv, nf = counts[0], counts[1]
    if len(body) < nv + nf:
        have_v = min(len(body), nv)
        raise MeshError(path, f"truncated OFF: header declares {nv} vertices and {nf} faces, the "
                              f"file holds {have_v} vertex lines and {max(len(body) - nv, 0)} face "
                              "lines")
    vertices = np.empty((nv, 3), dtype=np.float64)
    for i, (number, line) in enumerate(body[:nv]):
        tokens = line.split()
        try:
            if len(tokens) < 3:
                raise ValueError
            vertices[i] = [float(t) for t in tokens[:3]]
        except ValueError:
            raise MeshError(path, f"line {number}: malformed OFF vertex {line[:60]!r}, expected "
                                  "x y z") from None
    triangles: list[tuple[int, int, int]] = []
    for number, line in body[nv:nv + nf]:
        tokens = line.split()
        try:
            k = int(tokens[0])
            idx = [int(t) for t in tokens[1:1 + k]]
        except ValueError:
            raise MeshError(path, f"line {number}: malformed OFF face {line[:60]!r}, expected "
                                  "'<n> <i1> ... <in>'") from None
        if k < 3 or len(idx) != k:
            raise MeshError(path, f"line {number}: malformed OFF face {line[:60]!r}, expected "
                                  f"{k if k >= 3 else 'at least 3'} vertex indices")
        triangles.extend((idx[0], idx[j], idx[j + 1]) for j in range(1, k - 1))
    faces = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
    return vertices, faces


def _text(path: Path, what: str) -> str:
    """The file as text (UTF-8, else Latin-1); MeshError when it holds NUL bytes (binary data)."""
    raw = path.read_bytes()
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise MeshError(path, f"not a text {what} file (it holds binary data at byte {nul})")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _check_obj(path: Path) -> int:
    """Checks every ``v`` line (3 numbers) and ``f`` line (3 or more vertex indices in range) of an
    OBJ file before trimesh reads it (trimesh silently returns wrong arrays for a cut-off file);
    returns the number of faces. A file cut at a line boundary cannot be detected (OBJ has no
    counts)."""
    n_vertices = n_faces = 0
    for number, line in enumerate(_text(path, "OBJ").splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if tokens[0] == "v":
            if len(tokens) < 4 or not all(_is_number(t) for t in tokens[1:4]):
                raise MeshError(path, f"line {number}: malformed OBJ vertex {line.strip()[:60]!r}, "
                                      "expected 'v x y z'")
            n_vertices += 1
        elif tokens[0] == "f":
            if len(tokens) < 4:
                raise MeshError(path, f"line {number}: malformed OBJ face {line.strip()[:60]!r}, "
                                      "expected at least 3 vertices")
            for t in tokens[1:]:
                head = t.split("/", 1)[0]
                try:
                    index = int(head)
                except ValueError:
                    raise MeshError(path, f"line {number}: malformed OBJ face index {t!r}") from None
                if index == 0 or abs(index) > n_vertices:
                    raise MeshError(path, f"line {number}: face references vertex {index} but only "
                                          f"{n_vertices} vertices precede it")
            n_faces += 1
    return n_faces


def _check_stl(path: Path) -> None:
    """Rejects cut-off or malformed STL files that trimesh would read partially: a binary STL must
    be exactly 84 + 50 x (its triangle count) bytes; an ASCII STL needs whole facets (3 vertices
    each) and a final ``endsolid``."""
    raw = path.read_bytes()
    if len(raw) >= 84:
        count = int(np.frombuffer(raw, dtype="<u4", count=1, offset=80)[0])
        if len(raw) == 84 + 50 * count:
            return
    if raw.lstrip().startswith(b"solid") and b"\x00" in raw and len(raw) >= 84:
        raise MeshError(path, f"truncated or malformed binary STL (its header starts with 'solid' "
                              f"but it holds binary data): the header declares {count} triangles "
                              f"({84 + 50 * count} bytes), the file has {len(raw)} bytes")
    if not raw.lstrip().startswith(b"solid"):
        declared = (f"its binary header declares {count} triangles ({84 + 50 * count} bytes) but "
                    f"the file has {len(raw)} bytes" if len(raw) >= 84 else
                    f"only {len(raw)} bytes")
        raise MeshError(path, f"not a valid STL: {declared}, and it is not ASCII STL (no leading "
                              "'solid'); the file is truncated or not an STL")
    text = _text(path, "ASCII STL")
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    keywords = [t[0].lower() for t in lines]
    facets, ends, vertices = (keywords.count("facet"), keywords.count("endfacet"),
                              keywords.count("vertex"))
    if not keywords or keywords[-1] != "endsolid":
        raise MeshError(path, "truncated ASCII STL: the last line is not 'endsolid'")
    if facets != ends or vertices != 3 * facets:
        raise MeshError(path, f"malformed ASCII STL: {facets} 'facet' lines, {ends} 'endfacet' "
                              f"lines and {vertices} 'vertex' lines (expected 3 per facet)")
    for number, tokens in enumerate(lines, 1):
        if tokens[0].lower() == "vertex" and (len(tokens) != 4
                                              or not all(_is_number(t) for t in tokens[1:])):
            raise MeshError(path, f"malformed ASCII STL vertex line {' '.join(tokens)[:60]!r}")


def _check_ascii_ply(path: Path) -> int:
    """For an ASCII PLY, the header's face count after checking that the body holds at least one
    line per declared element (trimesh reads a cut-off ASCII PLY partially); -1 for binary PLY
    (trimesh checks the length of those itself)."""
    raw = path.read_bytes()
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        return -1  # trimesh reports the malformed header
    header = raw[:end].decode("ascii", errors="replace").splitlines()
    if not any(ln.split()[:2] == ["format", "ascii"] for ln in header):
        return -1
    counts: dict[str, int] = {}
    for ln in header:
        tokens = ln.split()
        if len(tokens) == 3 and tokens[0] == "element" and tokens[2].isdigit():
            counts[tokens[1]] = int(tokens[2])
    body = raw[end:].split(b"\n", 1)[1] if b"\n" in raw[end:] else b""
    lines = sum(1 for ln in body.splitlines() if ln.strip())
    if lines < sum(counts.values()):
        detail = ", ".join(f"{n} {k}" for k, n in counts.items())
        raise MeshError(path, f"truncated ASCII PLY: the header declares {detail} "
                              f"({sum(counts.values())} lines), the file holds {lines}")
    return counts.get("face", 0)


def _check_gltf(path: Path) -> None:
    """A .gltf file is JSON text (its binary form is .glb): say so, naming the file, when it is not
    (trimesh reports such a file as ``FileNotFoundError: model.gltf``)."""
    raw = path.read_bytes()
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise MeshError(path, f"cannot be read as GLTF: not valid glTF JSON (byte {e.start} is not UTF-8 "
                              "text; a binary glTF file has the extension .glb)") from e
    except json.JSONDecodeError as e:
        raise MeshError(path, f"cannot be read as GLTF: not valid glTF JSON ({e})") from e
    if not isinstance(document, dict):
        raise MeshError(path, f"cannot be read as GLTF: not valid glTF (the JSON is a "
                              f"{type(document).__name__}, not an object)")


def _read_with_trimesh(path: Path, ext: str) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) float64 and faces (F, 3) int64: every triangle mesh in the file, with its
    scene-graph transform applied, concatenated."""
    min_faces = 0
    if ext == ".obj":
        min_faces = _check_obj(path)
    elif ext == ".stl":
        _check_stl(path)
    elif ext == ".ply":
        min_faces = _check_ascii_ply(path)
    elif ext == ".gltf":
        _check_gltf(path)
    with _quiet_trimesh():
        try:
            scene = trimesh.load_scene(str(path), file_type=ext[1:], process=False)
            geometries = scene.dump(concatenate=False)
        # trimesh's loaders raise many unrelated exception types on malformed files (ValueError,
        # KeyError, IndexError, struct.error, JSONDecodeError, NotImplementedError, ...): convert
        # them here, around the library call only, into an error that names the file.
        except Exception as e:
            raise MeshError(path, f"cannot be read as {ext[1:].upper()} "
                                  f"({type(e).__name__}: {e})") from e
    meshes = [g for g in geometries if isinstance(g, trimesh.Trimesh) and len(g.faces)]
    for g in meshes:
        if g.vertices.ndim != 2 or g.vertices.shape[1] != 3 or g.faces.ndim != 2 \
                or g.faces.shape[1] != 3:
            raise MeshError(path, f"malformed {ext[1:].upper()}: read as vertices "
                                  f"{g.vertices.shape} and faces {g.faces.shape}")
    loaded_faces = sum(len(g.faces) for g in meshes)
    if meshes and loaded_faces < min_faces:
        raise MeshError(path, f"malformed {ext[1:].upper()}: the file declares {min_faces} faces, "
                              f"only {loaded_faces} could be read")
    if not meshes:
        found = sorted({type(g).__name__ for g in geometries})
        npts = sum(len(g.vertices) for g in geometries
                   if isinstance(g, trimesh.points.PointCloud))
        what = f" (a point cloud of {npts} points)" if npts else (f" (found: {', '.join(found)})"
                                                                  if found else "")
        raise MeshError(path, f"has no faces{what}; a mesh needs triangles or polygons")
    vertices, faces, offset = [], [], 0
    for g in meshes:
        vertices.append(np.asarray(g.vertices, dtype=np.float64))
        faces.append(np.asarray(g.faces, dtype=np.int64) + offset)
        offset += len(g.vertices)
    return np.concatenate(vertices), np.concatenate(faces)


def z_up_to_y_up(points: np.ndarray) -> np.ndarray:
    """(N, 3) -> (N, 3): the rotation (x, y, z) -> (x, z, -y) that turns z-up data into y-up."""
    p = np.asarray(points)
    return np.stack([p[:, 0], p[:, 2], -p[:, 1]], axis=1)


def _validated(path: Path, vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop unreferenced vertices and reject degenerate meshes (see the module docstring)."""
    if faces.size == 0:
        raise MeshError(path, "has no faces; a mesh needs triangles or polygons")
    lowest, highest = int(faces.min()), int(faces.max())
    if lowest < 0 or highest >= len(vertices):
        bad = lowest if lowest < 0 else highest
        raise MeshError(path, f"a face references vertex index {bad} but the file has "
                              f"{len(vertices)} vertices")
    used, faces = np.unique(faces, return_inverse=True)
    faces = faces.reshape(-1, 3)
    vertices = vertices[used]
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        raise MeshError(path, f"{int(bad.sum())} of its {len(vertices)} vertices have NaN/inf "
                              "coordinates")
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    with np.errstate(over="ignore"):
        diagonal = float(np.linalg.norm(hi - lo))
    if not np.isfinite(diagonal):
        raise MeshError(path, "coordinates too large to normalise (bounding-box diagonal overflows)")
    if diagonal == 0.0:
        raise MeshError(path, f"degenerate: all {len(vertices)} vertices are at one point "
                              "(collapsed bounding box)")
    area = float(face_areas((vertices - (lo + hi) / 2) / diagonal, faces).sum())
    if not area > 1e-12:
        raise MeshError(path, f"degenerate: zero surface area (all {len(faces)} faces are "
                              "collapsed to points or lines)")
    return vertices, faces


def unreadable_reason(path: str | os.PathLike, error: OSError) -> str:
    """Why ``path`` cannot be opened, from the OSError that opening (or stat-ing) it raised: a
    symbolic-link loop, a dangling link (naming its target), a missing file, or the system's reason."""
    path = Path(path)
    if error.errno == errno.ELOOP:
        return "is a symbolic link loop (it cannot be resolved to a file)"
    if error.errno == errno.ENOENT and path.is_symlink():
        return f"is a dangling symbolic link (its target {os.readlink(path)} does not exist)"
    if error.errno == errno.ENOENT:
        return "does not exist"
    return f"cannot be read ({error.strerror or error})"


def _checked_extension(path: Path, extensions: tuple[str, ...], kind: str) -> str:
    """The lower-case extension of an existing, non-empty file of a supported kind, else MeshError."""
    ext = path.suffix.lower()
    if ext not in extensions:
        raise MeshError(path, f"unsupported {kind} extension {path.suffix!r}; supported: {', '.join(extensions)}")
    try:
        info = path.stat()
    except OSError as e:
        raise MeshError(path, unreadable_reason(path, e)) from e
    if not stat.S_ISREG(info.st_mode):
        raise MeshError(path, "is not a file")
    if info.st_size == 0:
        raise MeshError(path, "is empty (0 bytes)")
    return ext


def load_mesh(path: str | os.PathLike, up_axis: str = "y") -> trimesh.Trimesh:
    """Read a mesh file into one validated triangle mesh (not yet normalised).

    Args:
        path: a file with an extension in :data:`MESH_EXTENSIONS` (case-insensitive).
        up_axis: "y" keeps the coordinates; "z" rotates z-up input to y-up (see the module
            docstring).

    Returns:
        ``trimesh.Trimesh`` with vertices (V, 3) float64 (only vertices used by a face) and
        faces (F, 3) int64; every geometry of the file merged.

    Raises:
        MeshError naming the file: missing, empty, unsupported extension, unreadable or malformed
        content, or a degenerate mesh (no faces, NaN/inf vertices, zero area, collapsed bounds).
    """
    path = Path(path)
    if up_axis not in UP_AXES:
        raise ValueError(f"up_axis must be one of {UP_AXES}, got {up_axis!r}")
    ext = _checked_extension(path, MESH_EXTENSIONS, "mesh")
    try:
        if ext == ".off":
            vertices, faces = _read_off(path)
        else:
            vertices, faces = _read_with_trimesh(path, ext)
    except OSError as e:  # e.g. no read permission
        raise MeshError(path, unreadable_reason(path, e)) from e
    vertices, faces = _validated(path, vertices, faces)
    if up_axis == "z":
        vertices = z_up_to_y_up(vertices)
    return trimesh.Trimesh(vertices=vertices, faces=faces, process=False, validate=False)


def normalize_mesh(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """A copy centred on its bounding box (over the vertices that faces use), with bounding-box
    diagonal 1. Vertices (V, 3) float64, faces unchanged (F, 3).

    Raises ValueError for a mesh whose bounding box is a point or not finite.
    """
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    used = vertices[np.unique(faces)] if faces.size else vertices
    lo, hi = used.min(axis=0), used.max(axis=0)
    diagonal = float(np.linalg.norm(hi - lo))
    if not (np.isfinite(diagonal) and diagonal > 0):
        raise ValueError(f"cannot normalise a mesh whose bounding-box diagonal is {diagonal}")
    return trimesh.Trimesh(vertices=(vertices - (lo + hi) / 2) / diagonal, faces=faces,
                           process=False, validate=False)


def sample_surface(mesh: trimesh.Trimesh, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points drawn uniformly over the surface area (a face with probability proportional to
    its area, then a uniform point in it), from ``rng`` only: (n, 3) float32.

    Every face counts, including faces hidden inside the object. Raises ValueError for n < 1 or a
    mesh without area.
    """
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not float(face_areas(np.asarray(mesh.vertices), np.asarray(mesh.faces)).sum()) > 0:
        raise ValueError("cannot sample the surface of a mesh with zero area")
    points, _ = _sample_faces(mesh, int(n), rng)  # needs only .vertices (V, 3) and .faces (F, 3)
    return points.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Point clouds
# ----------------------------------------------------------------------------------------------


def ply_face_count(path: str | os.PathLike) -> int:
    """The ``element face N`` count of a PLY header (0 when there is no face element).

    Raises MeshError when the file is unreadable or has no complete PLY header.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError as e:
        raise MeshError(path, f"cannot be read ({e.strerror or e})") from e
    if not head.startswith(b"ply"):
        raise MeshError(path, "not a PLY file (does not start with 'ply')")
    end = head.find(b"end_header")
    if end < 0:
        raise MeshError(path, "malformed PLY header (no 'end_header' within the first 64 KiB)")
    for line in head[:end].decode("ascii", errors="replace").splitlines():
        tokens = line.split()
        if len(tokens) == 3 and tokens[0] == "element" and tokens[1] == "face":
            try:
                return int(tokens[2])
            except ValueError:
                raise MeshError(path, f"malformed PLY header line {line!r}") from None
    return 0


def input_kind(path: str | os.PathLike) -> str:
    """"mesh" or "points": how a file with a supported extension is read. A PLY is a mesh when its
    header declares at least one face, else a point cloud."""
    ext = Path(path).suffix.lower()
    if ext == ".ply":
        return "mesh" if ply_face_count(path) > 0 else "points"
    if ext in MESH_EXTENSIONS:
        return "mesh"
    if ext in POINT_EXTENSIONS:
        return "points"
    raise MeshError(path, f"unsupported extension {Path(path).suffix!r}; supported: "
                          f"{', '.join(sorted(set(MESH_EXTENSIONS + POINT_EXTENSIONS)))}")


def _check_cloud(path: Path, name: str, cloud: np.ndarray) -> np.ndarray:
    """One validated cloud: (N, 3) float32, N >= 1, finite."""
    if cloud.shape[0] < 1:
        raise MeshError(path, f"{name} holds no points")
    cloud = cloud.astype(np.float32)
    bad = ~np.isfinite(cloud).all(axis=1)
    if bad.any():
        raise MeshError(path, f"{name}: {int(bad.sum())} points have NaN/inf coordinates (first "
                              f"bad point index {int(np.flatnonzero(bad)[0])})")
    return cloud


def _clouds_from_array(path: Path, array: np.ndarray, what: str) -> list[tuple[str, np.ndarray]]:
    """Entries for an (N, 3) / (N, C>3) array or an (M, N, 3) / (M, N, C>3) batch (first 3
    columns are x y z); a transposed (3, N) or (M, 3, N) array is an error."""
    array = np.asarray(array)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise MeshError(path, f"{what} has dtype {array.dtype}, expected numbers")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise MeshError(path, f"{what} has complex dtype {array.dtype}")
    if array.ndim not in (2, 3):
        raise MeshError(path, f"{what} has shape {array.shape}, expected (N, 3) or (M, N, 3)")
    rows, cols = array.shape[-2], array.shape[-1]
    if cols != 3 and rows == 3:
        raise MeshError(path, f"{what} has shape {array.shape}: it looks transposed ((3, N): one "
                              f"row per coordinate); expected one row per point, (N, 3) or "
                              f"(M, N, 3): transpose it (e.g. array.swapaxes(-1, -2))")
    if cols < 3:
        raise MeshError(path, f"{what} has shape {array.shape}, expected 3 columns (x, y, z)")
    array = array[..., :3]
    if array.ndim == 2:
        return [(str(path), _check_cloud(path, what, array))]
    if array.shape[0] < 1:
        raise MeshError(path, f"{what} has shape {array.shape}: no clouds")
    return [(f"{path}[{i}]", _check_cloud(path, f"{what}[{i}]", a)) for i, a in enumerate(array)]


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _read_text_points(path: Path) -> np.ndarray:
    """x y z from the first 3 columns of a whitespace- or comma-separated text file: (N, 3)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise MeshError(path, f"not a text point file (byte {e.start} is not UTF-8 text)") from e
    data: list[tuple[int, list[str]]] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", "//")):
            continue
        tokens = line.replace(",", " ").replace(";", " ").split()
        if not data and not any(_is_number(t) for t in tokens):
            continue  # a header line before the data (column names): nothing numeric in it
        data.append((number, tokens))
    if not data:
        raise MeshError(path, "holds no numeric lines (expected one point per line: x y z ...)")
    # The .pts convention of a first line holding only the number of points.
    if len(data[0][1]) == 1 and data[0][1][0].isdigit() and int(data[0][1][0]) == len(data) - 1:
        data = data[1:]
        if not data:
            raise MeshError(path, "holds no points (its count line says 0)")
    width = len(data[0][1])
    for number, tokens in data:
        if len(tokens) != width:
            raise MeshError(path, f"line {number} has {len(tokens)} columns, the first data line "
                                  f"has {width}")
    if width < 3:
        raise MeshError(path, f"line {data[0][0]} has {width} column(s), expected at least 3 "
                              "(x y z)")
    if len(data) == 3 and width > _MAX_EXTRA_COLUMNS:
        raise MeshError(path, f"3 lines of {width} values: it looks transposed (one line per "
                              "coordinate); write one point per line (x y z)")
    try:
        values = np.array([t for _, tokens in data for t in tokens[:3]], dtype=np.float64)
    except ValueError:
        for number, tokens in data:
            bad = [t for t in tokens[:3] if not _is_number(t)]
            if bad:
                raise MeshError(path, f"line {number}: non-numeric coordinate {bad[0]!r}") from None
        raise
    return values.reshape(-1, 3)


# The first bytes of every NumPy .npy file, and of a zip archive (.npz: one .npy per array).
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_NPZ_ERRORS = (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


def _check_signature(path: Path, magics: tuple[bytes, ...], what: str) -> None:
    """MeshError unless ``path`` starts with one of ``magics`` (an empty file is named as such)."""
    with open(path, "rb") as f:
        head = f.read(max(map(len, magics)))
    if not head:
        raise MeshError(path, f"is empty (0 bytes), not a {what} file")
    if not head.startswith(magics):
        raise MeshError(path, f"is not a valid {what} file (it does not start with the {what} signature; the file "
                              "is corrupt or of another format)")


def _numpy_reason(error: BaseException, what: str) -> str:
    """Why numpy refused a file, without its advice to load it with ``allow_pickle`` (that can run arbitrary code)."""
    text = " ".join(str(error).split())
    if "pickle" in text.lower() or "object arrays" in text.lower():
        return (f"holds Python objects (an object array or a pickle), not numbers; loading those could run "
                f"arbitrary code, so they are not read. Save the points as a numeric {what} array, e.g. float32 "
                "of shape (N, 3)")
    return f"is not a valid {what} file ({type(error).__name__}: {text.split('. ')[0].rstrip('.') or 'no detail'})"


def _load_npy(path: Path) -> np.ndarray:
    _check_signature(path, (_NPY_MAGIC,), ".npy")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise MeshError(path, _numpy_reason(e, ".npy")) from e


def _load_npz(path: Path) -> tuple[np.ndarray, str]:
    _check_signature(path, _ZIP_MAGICS, ".npz")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            key = next((k for k in NPZ_KEYS if k in keys), None)
            if key is None:
                if len(keys) != 1:
                    raise MeshError(path, f"NPZ holds arrays {keys}; expected one named "
                                          f"{' / '.join(NPZ_KEYS)}, or a single array")
                key = keys[0]
            return z[key], key
    except _NPZ_ERRORS as e:
        raise MeshError(path, _numpy_reason(e, ".npz")) from e


def read_point_file(path: str | os.PathLike) -> list[tuple[str, np.ndarray]]:
    """Point clouds of one file: ``[(name, points (N, 3) float32), ...]``.

    Formats (by extension, case-insensitive):
        ``.ply`` without faces (x/y/z vertex properties; a PLY with faces is a mesh: use
        :func:`load_mesh`); ``.xyz``/``.txt``/``.pts`` text, one point per line, whitespace- or
        comma-separated, the first 3 columns used (e.g. ModelNet's ``x,y,z,nx,ny,nz``), leading
        header lines allowed only when nothing in them is numeric, and a first line holding only
        the point count (``.pts``) when it matches; ``.npy`` (N, 3) or (M, N, 3) (more than 3
        columns: the first 3); ``.npz`` the array named ``points``, ``data`` or ``xyz``, else its
        only array; ``.h5``/``.hdf5`` the ``data`` dataset (M, N, 3) of the published layout.

    Returns:
        one entry per cloud: ``name`` is ``str(path)`` for a single cloud and ``f"{path}[{i}]"``
        for cloud ``i`` of a batch (M, N, 3).

    Raises:
        MeshError naming the file: unreadable or malformed content, a shape other than (N, 3) /
        (M, N, 3) (a transposed (3, N) array is named as such), no points, NaN/inf coordinates.
    """
    path = Path(path)
    ext = _checked_extension(path, POINT_EXTENSIONS, "point-cloud")
    if ext == ".ply":
        faces = ply_face_count(path)
        if faces > 0:
            raise MeshError(path, f"is a mesh ({faces} faces), not a point cloud: read it with "
                                  "load_mesh and sample its surface")
        try:
            return [(str(path), _check_cloud(path, "the PLY vertices", read_ply_points(path)))]
        except MeshError:
            raise
        except DatasetError as e:
            raise MeshError(path, _reason(e, path)) from e
    if ext in (".xyz", ".txt", ".pts"):
        return [(str(path), _check_cloud(path, "the file", _read_text_points(path)))]
    if ext == ".npy":
        return _clouds_from_array(path, _load_npy(path), "the array")
    if ext == ".npz":
        array, key = _load_npz(path)
        return _clouds_from_array(path, array, f"array '{key}'")
    try:
        arrays = read_h5(path, ["data"])
    except DatasetError as e:
        raise MeshError(path, _reason(e, path)) from e
    return _clouds_from_array(path, arrays["data"], "'data'")


# ----------------------------------------------------------------------------------------------
# Finding inputs
# ----------------------------------------------------------------------------------------------


class UnsupportedFilesWarning(UserWarning):
    """Files under an input folder that :func:`find_inputs` left out (unsupported extension)."""


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def find_inputs(paths: Iterable[str | os.PathLike],
                unsupported: list[Path] | None = None) -> list[Path]:
    """The mesh and point files named by ``paths`` (files or folders).

    A folder is searched recursively; its files are returned sorted by path, hidden files and
    folders (name starting with ".") skipped, companion files (:data:`COMPANION_EXTENSIONS`:
    materials, textures, glTF buffers) ignored, and any other file with an unsupported extension
    left out and reported: appended to ``unsupported`` when given, and summarised in one
    :class:`UnsupportedFilesWarning`. Paths keep the order of the arguments; duplicates are dropped.

    Raises:
        MeshError for a path that does not exist, a file named explicitly whose extension is not
        supported, or when nothing usable is found.
    """
    supported = set(MESH_EXTENSIONS) | set(POINT_EXTENSIONS)
    found: list[Path] = []
    seen: set[Path] = set()
    left_out: list[Path] = []
    args = [Path(p) for p in paths]
    for p in args:
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if not f.is_file() or _hidden(f.relative_to(p)):
                    continue
                ext = f.suffix.lower()
                if ext in supported:
                    if f not in seen:
                        seen.add(f)
                        found.append(f)
                elif ext not in COMPANION_EXTENSIONS:
                    left_out.append(f)
        elif p.is_file():
            if p.suffix.lower() not in supported:
                raise MeshError(p, f"unsupported extension {p.suffix!r}; supported: "
                                   f"{', '.join(sorted(supported))}")
            if p not in seen:
                seen.add(p)
                found.append(p)
        else:
            raise MeshError(p, "does not exist")
    if unsupported is not None:
        unsupported.extend(left_out)
    if left_out:
        examples = ", ".join(str(f) for f in left_out[:3])
        warnings.warn(f"left out {len(left_out)} file(s) with unsupported extensions (e.g. "
                      f"{examples}); supported: {', '.join(sorted(supported))}",
                      UnsupportedFilesWarning, stacklevel=2)
    if not found:
        names = ", ".join(str(p) for p in args) or "(no paths given)"
        raise MeshError(names, f"no mesh or point files found (supported extensions: "
                               f"{', '.join(sorted(supported))}; {len(left_out)} other file(s))")
    return found



# ----------------------------------------------------------------------------------------------
# Encoder inputs: any supported file -> clouds with the frozen-feature evaluation's preprocessing
# ----------------------------------------------------------------------------------------------

H5_EXTENSIONS = (".h5", ".hdf5")


def file_rng(path: str | os.PathLike, seed: int) -> np.random.Generator:
    """A generator that depends only on ``seed`` and the file's bytes (not its name or location)."""
    digest = hashlib.sha1(Path(path).read_bytes()).digest()
    return np.random.default_rng([int(seed), int.from_bytes(digest[:8], "little")])


def encoder_clouds(path: str | os.PathLike, num_points: int, seed: int = 0,
                   up_axis: str = "y") -> list[tuple[str, np.ndarray, str]]:
    """The clouds of one file, ready for a point encoder: ``[(name, points (n, 3) float32, how), ...]``.

    The preprocessing matches the frozen-feature evaluation (``eval_svm.py``):

    - HDF5 in the published layout (``data`` (M, N, 3), already unit-sphere normalised like ModelNet40 /
      ScanObjectNN): each stored cloud as it is, its first ``num_points`` points, exactly as the evaluation
      reads them (the same features for the same file);
    - a mesh: :func:`load_mesh` (``up_axis``), :func:`normalize_mesh`, ``num_points`` area-weighted surface
      samples, :func:`unit_sphere` (the convention of ModelNet40's HDF5 clouds and of ``prepare_meshes``);
    - any other point file: a seeded random subset of ``num_points`` points when it holds more (all of them
      when fewer), then :func:`unit_sphere`.

    Randomness comes from :func:`file_rng` (the seed and the file's content). ``how`` describes what was
    done. Raises MeshError naming the file when it cannot be used.
    """
    path = Path(path)
    if input_kind(path) == "mesh":
        mesh = normalize_mesh(load_mesh(path, up_axis))
        points = unit_sphere(sample_surface(mesh, num_points, file_rng(path, seed)))
        return [(str(path), points, f"mesh: {num_points} surface samples, unit sphere")]
    clouds = read_point_file(path)
    if path.suffix.lower() in H5_EXTENSIONS:
        return [(name, cloud[:num_points], f"as stored, first {min(num_points, len(cloud))} points")
                for name, cloud in clouds]
    rng = file_rng(path, seed)
    out = []
    for name, cloud in clouds:
        n = len(cloud)
        if n > num_points:
            cloud = cloud[np.sort(rng.choice(n, size=num_points, replace=False))]  # (num_points, 3)
        out.append((name, unit_sphere(cloud), f"{min(n, num_points)} of {n} points, unit sphere"))
    return out


def read_encoder_clouds(paths: Iterable[str | os.PathLike], num_points: int, seed: int = 0, up_axis: str = "y",
                        progress: bool = False) -> tuple[list[tuple[str, np.ndarray, str]], list[tuple[str, str]]]:
    """:func:`encoder_clouds` of every supported file under ``paths`` (files or folders, see :func:`find_inputs`).

    Returns:
        (clouds ``[(name, points (n, 3) float32, how)]`` in file order, skipped ``[(file, reason)]``): a file
        with an unsupported extension, or one that cannot be read (reported on stderr with the reason), is
        skipped and the others are read.
    """
    unsupported: list[Path] = []
    files = find_inputs(paths, unsupported)
    clouds, skipped = [], [(str(f), "unsupported extension") for f in unsupported]
    for f in progress_bar(files, desc="reading", enabled=progress, unit="file"):
        try:
            clouds.extend(encoder_clouds(f, num_points, seed, up_axis))
        except DatasetError as err:  # MeshError and every other reading error name the file
            reason = err.reason if isinstance(err, MeshError) else str(err)
            skipped.append((str(f), reason))
            print(f"skipped {f}: {reason}", file=sys.stderr, flush=True)
    return clouds, skipped
