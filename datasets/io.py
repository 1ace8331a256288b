"""File reading and validation shared by every loader in ``datasets/``.

Everything here fails loudly: a problem with the data raises :class:`DatasetError` (a
``ValueError``) whose message names the file and what is wrong; a missing dataset directory
raises :class:`DatasetNotFoundError` (both a ``DatasetError`` and a ``FileNotFoundError``) whose
message names the path and how to create it.

Contents:
- PLY point reading (:func:`read_ply_points`): ASCII, binary little- and big-endian; the x/y/z
  vertex properties of any numeric type; extra vertex properties and other elements ignored.
- PNG reading (:func:`read_image_rgb`).
- HDF5 reading with key/shape checks (:func:`read_h5`) and array validation
  (:func:`check_points`, :func:`check_labels`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import h5py
import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "DatasetError",
    "DatasetNotFoundError",
    "CREATE_HINT",
    "require_dir",
    "read_lines",
    "read_ply_points",
    "write_ply",
    "read_image_rgb",
    "read_h5",
    "check_points",
    "check_labels",
    "h5_files",
    "load_h5_split",
]

CREATE_HINT = (
    "Download the published data with `bash data/download_data.sh --root {root}`, or create a "
    "small synthetic stand-in with `python -m datasets.synthetic --root {root} --preset tiny`."
)


class DatasetError(ValueError):
    """Malformed, inconsistent or unreadable dataset content; the message names the file."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset directory or file that should exist does not; the message names the path."""


def _hint(root: str | os.PathLike) -> str:
    return CREATE_HINT.format(root=os.fspath(root))


def require_dir(path: str | os.PathLike, what: str, root: str | os.PathLike) -> Path:
    """Return ``Path(path)`` if it is a directory, else raise :class:`DatasetNotFoundError`.

    Args:
        path: the directory that must exist.
        what: human-readable name of the dataset part (for the message).
        root: the data root the user passed (for the how-to-create hint).
    """
    p = Path(path)
    if not p.is_dir():
        state = "is not a directory" if p.exists() else "does not exist"
        raise DatasetNotFoundError(f"{what}: directory {p} {state}. {_hint(root)}")
    return p


def read_lines(path: str | os.PathLike) -> list[str]:
    """Non-empty, stripped lines of a small text file (UTF-8)."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not a UTF-8 text file ({e})") from e


# ----------------------------------------------------------------------------------------------
# PLY
# ----------------------------------------------------------------------------------------------

_PLY_TYPES = {
    "char": "i1", "int8": "i1",
    "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4",
    "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}
_PLY_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}


class _PlyElement:
    def __init__(self, name: str, count: int) -> None:
        self.name = name
        self.count = count
        # (name, numpy type code) for scalar properties; (name, None) marks a list property.
        self.props: list[tuple[str, str | None]] = []
        self.list_types: list[tuple[str, str]] = []

    @property
    def has_list(self) -> bool:
        return any(t is None for _, t in self.props)


def _parse_ply_header(raw: bytes, path: str) -> tuple[str, list[_PlyElement], int]:
    """Return (format, elements, byte offset of the body)."""
    if not raw.startswith(b"ply"):
        raise DatasetError(f"{path}: not a PLY file (does not start with 'ply')")
    end = raw.find(b"end_header")
    if end < 0:
        raise DatasetError(f"{path}: malformed PLY header (no 'end_header' line)")
    body = raw.find(b"\n", end)
    if body < 0:
        raise DatasetError(f"{path}: malformed PLY header (nothing after 'end_header')")
    try:
        header = raw[:end].decode("ascii")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: malformed PLY header (non-ASCII bytes)") from e
    fmt = None
    elements: list[_PlyElement] = []
    for lineno, line in enumerate(header.splitlines()[1:], start=2):
        tok = line.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        if tok[0] == "format":
            if len(tok) < 2 or tok[1] not in _PLY_FORMATS:
                raise DatasetError(f"{path}: unsupported PLY format line {lineno}: {line!r}")
            fmt = tok[1]
        elif tok[0] == "element":
            if len(tok) != 3 or not tok[2].isdigit():
                raise DatasetError(f"{path}: malformed PLY element line {lineno}: {line!r}")
            elements.append(_PlyElement(tok[1], int(tok[2])))
        elif tok[0] == "property":
            if not elements:
                raise DatasetError(f"{path}: PLY property before any element (line {lineno})")
            el = elements[-1]
            if len(tok) == 5 and tok[1] == "list":
                if tok[2] not in _PLY_TYPES or tok[3] not in _PLY_TYPES:
                    raise DatasetError(f"{path}: unsupported PLY list type line {lineno}: {line!r}")
                el.props.append((tok[4], None))
                el.list_types.append((_PLY_TYPES[tok[2]], _PLY_TYPES[tok[3]]))
            elif len(tok) == 3 and tok[1] in _PLY_TYPES:
                el.props.append((tok[2], _PLY_TYPES[tok[1]]))
            else:
                raise DatasetError(f"{path}: unsupported PLY property line {lineno}: {line!r}")
        else:
            raise DatasetError(f"{path}: unknown PLY header keyword line {lineno}: {line!r}")
    if fmt is None:
        raise DatasetError(f"{path}: malformed PLY header (no 'format' line)")
    return fmt, elements, body + 1


def read_ply_points(path: str | os.PathLike) -> np.ndarray:
    """Read the x/y/z vertex coordinates of a PLY file.

    Supports ``ascii``, ``binary_little_endian`` and ``binary_big_endian`` files whose vertex
    element has scalar properties of any PLY numeric type (extra properties such as normals or
    colours are ignored, as are elements after the vertex element, e.g. an empty ``face``).

    Returns:
        np.ndarray float32 (N, 3).

    Raises:
        DatasetError naming the file on unreadable, malformed, truncated or unsupported content.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read PLY file ({e.strerror or e})") from e
    fmt, elements, offset = _parse_ply_header(raw, path)
    names = [el.name for el in elements]
    if "vertex" not in names:
        raise DatasetError(f"{path}: PLY has no 'vertex' element (elements: {names})")
    vi = names.index("vertex")
    vertex = elements[vi]
    prop_names = [n for n, _ in vertex.props]
    missing = [c for c in ("x", "y", "z") if c not in prop_names]
    if missing:
        raise DatasetError(f"{path}: PLY vertex element lacks properties {missing} "
                           f"(has {prop_names})")
    if vertex.has_list:
        raise DatasetError(f"{path}: unsupported PLY: list property in the vertex element")
    n = vertex.count

    if fmt == "ascii":
        lines = raw[offset:].decode("ascii", errors="replace").splitlines()
        lines = [ln for ln in lines if ln.strip()]
        skip = sum(el.count for el in elements[:vi])  # one line per element instance
        rows = lines[skip:skip + n]
        if len(rows) < n:
            raise DatasetError(f"{path}: truncated ASCII PLY: header declares {n} vertices, "
                               f"found {len(rows)}")
        try:
            values = np.array(" ".join(rows).split(), dtype=np.float64)
        except ValueError as e:
            raise DatasetError(f"{path}: non-numeric value in ASCII PLY vertex data ({e})") from e
        nprop = len(vertex.props)
        if values.size != n * nprop:
            raise DatasetError(f"{path}: ASCII PLY vertex lines hold {values.size} values, "
                               f"expected {n} x {nprop}")
        table = values.reshape(n, nprop)  # (N, P)
        cols = [prop_names.index(c) for c in ("x", "y", "z")]
        return np.ascontiguousarray(table[:, cols], dtype=np.float32)

    endian = _PLY_FORMATS[fmt]
    for el in elements[:vi]:
        if el.has_list and el.count > 0:
            raise DatasetError(f"{path}: unsupported binary PLY: element '{el.name}' with list "
                               "properties precedes the vertex element")
        offset += el.count * np.dtype([(nm, endian + t) for nm, t in el.props]).itemsize
    dtype = np.dtype([(nm, endian + t) for nm, t in vertex.props])
    needed = offset + n * dtype.itemsize
    if len(raw) < needed:
        raise DatasetError(f"{path}: truncated binary PLY: {len(raw)} bytes, header implies at "
                           f"least {needed}")
    table = np.frombuffer(raw, dtype=dtype, count=n, offset=offset)
    out = np.empty((n, 3), dtype=np.float32)
    for i, c in enumerate(("x", "y", "z")):
        out[:, i] = table[c]
    return out


def write_ply(path: str | os.PathLike, points: np.ndarray) -> None:
    """Write (N, 3) points as a binary little-endian PLY with one vertex element of float32 x, y, z
    (the layout of the published ShapeNetRender clouds)."""
    pts = np.ascontiguousarray(points, dtype="<f4")
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(pts)}\nproperty float x\nproperty float y\nproperty float z\nend_header\n")
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(pts.tobytes())


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------

def read_image_rgb(path: str | os.PathLike) -> Image.Image:
    """Open an image file and convert it to RGB (RGBA renderings drop their alpha channel, as
    ``PIL.Image.convert('RGB')`` does in the original code). Fully decoded before returning."""
    path = os.fspath(path)
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError as e:
        raise DatasetError(f"{path}: image file does not exist") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"{path}: unreadable image ({e})") from e


# ----------------------------------------------------------------------------------------------
# HDF5
# ----------------------------------------------------------------------------------------------

def h5_files(directory: Path, patterns: Sequence[str]) -> list[Path]:
    """Sorted, de-duplicated files in ``directory`` matching any of the glob ``patterns``."""
    found: set[Path] = set()
    for pat in patterns:
        found.update(p for p in directory.glob(pat) if p.is_file())
    return sorted(found)


class H5Arrays(dict):
    """``{key: np.ndarray}`` as read, plus ``.shapes``: ``{key: shape stored in the file}``."""

    shapes: dict[str, tuple[int, ...]]


def read_h5(path: str | os.PathLike, keys: Iterable[str],
            point_slice: dict[str, int | None] | None = None,
            ndim: dict[str, int] | None = None) -> H5Arrays:
    """Read datasets ``keys`` from an HDF5 file.

    Args:
        path: the .h5 file.
        keys: dataset names that must be present (others are ignored).
        point_slice: optional {key: n}: read only the first n entries along axis 1 of that key
            (e.g. the first 1024 of 2048 points) to save memory; None reads everything.

    Returns:
        :class:`H5Arrays` (a dict of arrays with the stored shapes in ``.shapes``).

    Raises:
        DatasetError naming the file when it cannot be opened or lacks a key (listing the keys
        it has), or when a requested slice is longer than what is stored.
    """
    path = os.fspath(path)
    point_slice = point_slice or {}
    ndim = ndim or {}
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(f"{path}: cannot open as HDF5 ({e})") from e
    with f:
        present = sorted(f.keys())
        missing = [k for k in keys if k not in f]
        if missing:
            raise DatasetError(f"{path}: missing HDF5 key(s) {missing}; present keys: {present}")
        out = H5Arrays()
        out.shapes = {}
        for k in keys:
            ds = f[k]
            if not isinstance(ds, h5py.Dataset):
                raise DatasetError(f"{path}: '{k}' is a group, expected a dataset")
            out.shapes[k] = tuple(ds.shape)
            if k in ndim and ds.ndim != ndim[k]:
                raise DatasetError(f"{path}: '{k}' has shape {ds.shape}, expected {ndim[k]}-D")
            n = point_slice.get(k)
            if n is not None:
                if ds.ndim < 2:
                    raise DatasetError(f"{path}: '{k}' has shape {ds.shape}, expected at least 2-D")
                if ds.shape[1] < n:
                    raise DatasetError(f"{path}: '{k}' holds {ds.shape[1]} points per shape, "
                                       f"fewer than the {n} requested")
                out[k] = ds[:, :n]
            else:
                out[k] = ds[()]
    return out


def check_points(data: np.ndarray, path: str | os.PathLike, key: str = "data") -> np.ndarray:
    """Validate a (M, P, 3) batch of point clouds; return it as float32.

    Raises DatasetError naming the file for a wrong shape, a non-numeric dtype, or NaN/inf
    coordinates (naming the first bad sample index).
    """
    data = np.asarray(data)
    if data.ndim != 3 or data.shape[2] != 3:
        raise DatasetError(f"{path}: '{key}' has shape {data.shape}, expected (N, P, 3)")
    if not np.issubdtype(data.dtype, np.number):
        raise DatasetError(f"{path}: '{key}' has non-numeric dtype {data.dtype}")
    data = data.astype(np.float32, copy=False)
    finite = np.isfinite(data).all(axis=(1, 2))  # (M,)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise DatasetError(f"{path}: '{key}' has NaN/inf coordinates (first bad sample index "
                           f"{bad}, {int((~finite).sum())} bad samples)")
    return data


def check_labels(labels: np.ndarray, n: int, num_classes: int, path: str | os.PathLike,
                 key: str = "label") -> np.ndarray:
    """Validate labels of shape (n,) or (n, 1) and return them as int64 (n,).

    Raises DatasetError naming the file for a wrong shape, a length different from the number
    of shapes ``n``, non-integer values, or values outside [0, num_classes).
    """
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DatasetError(f"{path}: '{key}' has shape {labels.shape}, expected (N,) or (N, 1)")
    if labels.shape[0] != n:
        raise DatasetError(f"{path}: '{key}' has {labels.shape[0]} entries but 'data' has {n} "
                           "shapes")
    if np.issubdtype(labels.dtype, np.floating):
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise DatasetError(f"{path}: '{key}' holds non-integer values")
    elif not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{path}: '{key}' has non-numeric dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{path}: '{key}' value {int(labels[i])} at index {i} is out of range "
                           f"0..{num_classes - 1}")
    return labels


def load_h5_split(files: list[Path], num_points: int | None, num_classes: int,
                  label_key: str = "label") -> tuple[np.ndarray, np.ndarray]:
    """Read and validate ``data``/``label`` from each file and concatenate.

    Returns:
        data float32 (M, num_points or P, 3), labels int64 (M,).
    """
    all_data, all_labels = [], []
    for f in files:
        arrays = read_h5(f, ["data", label_key], point_slice={"data": num_points},
                         ndim={"data": 3})
        data = check_points(arrays["data"], f)
        all_labels.append(check_labels(arrays[label_key], data.shape[0], num_classes, f,
                                       key=label_key))
        all_data.append(data)
    if len({d.shape[1] for d in all_data}) > 1:
        shapes = {str(f.name): d.shape for f, d in zip(files, all_data)}
        raise DatasetError(f"files hold different numbers of points per shape: {shapes}")
    return np.concatenate(all_data, axis=0), np.concatenate(all_labels, axis=0)
