"""File reading and validation shared by every loader in ``datasets/``.

Everything here fails loudly: a problem with the data raises :class:`DatasetError` (a
``ValueError``) whose message names the file and what is wrong; a missing dataset directory
raises :class:`DatasetNotFoundError` (both a ``DatasetError`` and a ``FileNotFoundError``) whose
message names the path and how to create it.

Contents:
- PLY point reading (:func:`read_ply_points`, through the ``plyfile`` package like the original
  code): ASCII, binary little- and big-endian; the x/y/z vertex properties of any numeric type;
  extra vertex properties and other elements ignored.
- Image reading (:func:`load_image_rgb`, :func:`read_image_rgb`); a truncated PNG loads in part as
  in the original code, and :func:`load_image_rgb` says so.
- Published file lists (:func:`read_file_list`, a split's h5 files: :func:`split_h5_files`) and
  the data-root checks (:func:`require_dir`, :func:`root_is_file_message`).
- HDF5 reading with key/shape checks (:func:`read_h5`) and array validation
  (:func:`check_points`, :func:`check_labels`); :class:`LabelledClouds`, the item access of the
  in-memory classification sets read by :func:`load_h5_split`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import BinaryIO, Iterable, Sequence

import h5py
import numpy as np
import plyfile
import torch
from PIL import Image, ImageFile, UnidentifiedImageError
from torch.utils.data import Dataset

from util.fileio import InputFileError

__all__ = [
    "LabelledClouds",
    "DatasetError",
    "DatasetNotFoundError",
    "CREATE_HINT",
    "ROOT_HOLDS",
    "root_is_file_message",
    "require_dir",
    "read_lines",
    "read_file_list",
    "read_ply_points",
    "write_ply",
    "load_image_rgb",
    "read_image_rgb",
    "read_h5",
    "transposed_problem",
    "check_points",
    "check_labels",
    "h5_files",
    "split_h5_files",
    "load_h5_split",
]

CREATE_HINT = (
    "Download the published data with `bash data/download_data.sh --root {root}`, or create a "
    "small synthetic stand-in with `python -m datasets.synthetic --root {root} --preset tiny`."
)


class DatasetError(InputFileError):
    """Malformed, inconsistent or unreadable dataset content; the message names the file."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset directory or file that should exist does not; the message names the path."""


ROOT_HOLDS = ("the dataset folders (ShapeNet/, ShapeNetRendering/, modelnet40_ply_hdf5_2048/, "
              "ScanObjectNN/, shapenet_part_seg_hdf5_data/)")


def root_is_file_message(root: str | os.PathLike, holds: str = ROOT_HOLDS) -> str | None:
    """The problem when the data root ``root`` (or a folder above it) is an existing file, or None.

    No folder can be created there, so the how-to-create hint (:data:`CREATE_HINT`) would suggest
    commands that fail; the message says to pass the folder that holds ``holds`` instead.
    """
    p = Path(root)
    for q in (p, *p.parents):
        if q.is_file():
            also = "" if q == p else f" (so {p} cannot exist)"
            return f"{q} is a file, not a directory{also}; pass the folder that holds {holds}"
    return None


def _hint(root: str | os.PathLike) -> str:
    return CREATE_HINT.format(root=os.fspath(root))


def require_dir(path: str | os.PathLike, what: str, root: str | os.PathLike,
                holds: str | None = None) -> Path:
    """Return ``Path(path)`` if it is a directory, else raise :class:`DatasetNotFoundError`.

    Args:
        path: the directory that must exist.
        what: human-readable name of the dataset part (for the message).
        root: the data root the user passed (for the how-to-create hint).
        holds: what the data root must hold (for the message when ``root`` is a file); default
            ``path`` relative to ``root``, e.g. "modelnet40_ply_hdf5_2048/".
    """
    p = Path(path)
    if not p.is_dir():
        if holds is None:
            try:
                holds = f"{p.relative_to(root).as_posix()}/"
            except ValueError:
                holds = f"{p.name}/"
        problem = root_is_file_message(root, holds)
        if problem:
            raise DatasetNotFoundError(f"{what}: {problem}.")
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


def read_file_list(listing: str | os.PathLike, directory: str | os.PathLike) -> list[Path]:
    """The files named in a published file list (``train_files.txt``, ``train_hdf5_file_list.txt``).

    Each non-empty line names one file; any directory prefix is dropped (the published lists say
    e.g. "data/modelnet40_ply_hdf5_2048/ply_data_train0.h5") and the file is looked up in
    ``directory``.

    Returns:
        the listed files in list order (empty for an empty list: the caller then globs).

    Raises:
        DatasetNotFoundError naming the list and the missing file when a listed file does not
        exist.
    """
    listing, directory = Path(listing), Path(directory)
    files = []
    for line in read_lines(listing):
        f = directory / os.path.basename(line.replace("\\", "/"))
        if not f.is_file():
            raise DatasetNotFoundError(f"{listing}: lists {line!r} but {f} does not exist")
        files.append(f)
    return files


# ----------------------------------------------------------------------------------------------
# PLY
# ----------------------------------------------------------------------------------------------

def _ply_is_ascii(f: BinaryIO) -> bool:
    """Whether the header of the open PLY file ``f`` says ``format ascii``."""
    f.seek(0)
    head = f.read(1024)
    end = head.find(b"end_header")
    if end < 0:
        head += f.read(1 << 16)
        end = head.find(b"end_header")
    return b"format ascii" in (head if end < 0 else head[:end])


def _ply_header_problem(e: plyfile.PlyHeaderParseError) -> str:
    """The message for one of plyfile's header errors (what the former parser said)."""
    msg = e.message
    where = f"line {e.line}" if e.line else "header"
    if msg == "expected 'ply'":
        return "not a PLY file (does not start with 'ply')"
    if msg == "early end-of-file":
        return "malformed PLY header (no 'end_header' line)"
    if msg.startswith("don't understand format"):
        return f"unsupported PLY format ({where}: {msg})"
    if msg.startswith("field type"):
        return f"unsupported PLY property type ({where}: {msg})"
    return f"malformed PLY header ({where}: {msg})"


def _ply_data_problem(e: plyfile.PlyElementParseError, ascii_format: bool, size: int) -> str:
    """The message for one of plyfile's element (body) errors (what the former parser said)."""
    kind = "ASCII" if ascii_format else "binary"
    el = e.element
    where = (f"element '{el.name}'" if el is not None else "data") + (
        f" row {e.row}" if e.row is not None else "") + (
        f" property '{e.prop.name}'" if e.prop is not None else "")
    if e.message == "early end-of-file":
        declared = f"header declares {el.count} '{el.name}' rows" if el is not None else "header"
        return f"truncated {kind} PLY: {declared}, the file ({size} bytes) ends at {where}"
    if e.message == "malformed input":
        return f"non-numeric or malformed value in {kind} PLY data ({where})"
    return f"malformed {kind} PLY data ({where}: {e.message})"


def read_ply_points(path: str | os.PathLike) -> np.ndarray:
    """Read the x/y/z vertex coordinates of a PLY file (with the ``plyfile`` package, as the
    original CrossPoint code does).

    Supports ``ascii``, ``binary_little_endian`` and ``binary_big_endian`` files whose vertex
    element has x, y, z scalar properties of any PLY numeric type (extra properties such as
    normals or colours are ignored, as are other elements, e.g. a ``face`` element). Binary
    elements without list properties are memory-mapped, then copied.

    Returns:
        np.ndarray float32 (N, 3).

    Raises:
        DatasetError naming the file on unreadable, malformed, truncated or unsupported content
        (plyfile's exceptions are turned into messages that say what is wrong).
    """
    path = os.fspath(path)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DatasetError(f"{path}: cannot read PLY file ({e.strerror or e})") from e
    with f:
        ascii_format = _ply_is_ascii(f)
        f.seek(0)
        try:
            if ascii_format:
                # A text stream of our own: plyfile would wrap the binary file in a TextIOWrapper
                # that it never closes (a ResourceWarning per file).
                with open(path, "r", encoding="ascii", newline="") as text:
                    ply = plyfile.PlyData.read(text)
            else:
                ply = plyfile.PlyData.read(f)
        except plyfile.PlyHeaderParseError as e:
            raise DatasetError(f"{path}: {_ply_header_problem(e)}") from e
        except plyfile.PlyElementParseError as e:
            size = os.fstat(f.fileno()).st_size
            raise DatasetError(f"{path}: {_ply_data_problem(e, ascii_format, size)}") from e
        except UnicodeDecodeError as e:
            raise DatasetError(f"{path}: malformed PLY (non-ASCII bytes in the header or in ASCII "
                               f"data: {e.reason})") from e
        except (ValueError, TypeError, OSError) as e:
            raise DatasetError(f"{path}: unreadable PLY file ({e})") from e
    names = [el.name for el in ply.elements]
    if "vertex" not in names:
        raise DatasetError(f"{path}: PLY has no 'vertex' element (elements: {names})")
    vertex = ply["vertex"]
    prop_names = [p.name for p in vertex.properties]
    missing = [c for c in ("x", "y", "z") if c not in prop_names]
    if missing:
        raise DatasetError(f"{path}: PLY vertex element lacks properties {missing} "
                           f"(has {prop_names})")
    lists = [p.name for p in vertex.properties
             if p.name in ("x", "y", "z") and isinstance(p, plyfile.PlyListProperty)]
    if lists:
        raise DatasetError(f"{path}: unsupported PLY: {lists} are list properties in the vertex "
                           "element, expected scalars")
    table = vertex.data  # structured (N,), memory-mapped for binary files
    out = np.empty((len(table), 3), dtype=np.float32)
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

# The start of the OSError PIL raises when the image data ends early (ImageFile.load).
_PIL_TRUNCATED = "image file is truncated"
# Serializes the temporary change of PIL's global LOAD_TRUNCATED_IMAGES between threads.
_TRUNCATED_LOCK = threading.Lock()


def _decode_rgb(path: str) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        return im.convert("RGB")


def load_image_rgb(path: str | os.PathLike) -> tuple[Image.Image, bool]:
    """Decode an image file and convert it to RGB (RGBA renderings drop their alpha channel, as
    ``PIL.Image.convert('RGB')`` does in the original code), tolerating a truncated file.

    A file whose data ends early (PIL: "image file is truncated") is decoded again with
    ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` enabled for this call only (the global is restored
    afterwards): the original code sets that flag globally, so such a rendering loads there, with
    the rows PIL could not decode left black.

    Returns:
        (image: RGB ``PIL.Image`` of the file's size (W, H), truncated: True when the file could
        be decoded only in part).

    Raises:
        DatasetError naming the file when it does not exist or cannot be decoded at all.
    """
    path = os.fspath(path)
    try:
        return _decode_rgb(path), False
    except FileNotFoundError as e:
        raise DatasetError(f"{path}: image file does not exist") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if isinstance(e, UnidentifiedImageError) or not str(e).startswith(_PIL_TRUNCATED):
            raise DatasetError(f"{path}: unreadable image ({e})") from e
    with _TRUNCATED_LOCK:
        saved = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            return _decode_rgb(path), True
        except (OSError, SyntaxError, ValueError) as e:
            raise DatasetError(f"{path}: unreadable image (truncated, and not decodable even in "
                               f"part: {e})") from e
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = saved


def read_image_rgb(path: str | os.PathLike, allow_truncated: bool = False) -> Image.Image:
    """:func:`load_image_rgb` without the flag: an RGB ``PIL.Image`` (W, H), fully decoded.

    A truncated file raises DatasetError naming it unless ``allow_truncated`` (then it loads in
    part, as in the original code).
    """
    img, truncated = load_image_rgb(path)
    if truncated and not allow_truncated:
        raise DatasetError(f"{os.fspath(path)}: unreadable image (image file is truncated: PIL "
                           "decodes it only in part)")
    return img


# ----------------------------------------------------------------------------------------------
# HDF5
# ----------------------------------------------------------------------------------------------

def h5_files(directory: Path, patterns: Sequence[str]) -> list[Path]:
    """Sorted, de-duplicated files in ``directory`` matching any of the glob ``patterns``."""
    found: set[Path] = set()
    for pat in patterns:
        found.update(p for p in directory.glob(pat) if p.is_file())
    return sorted(found)


def split_h5_files(directory: Path, split: str, listing: str, what: str) -> list[Path]:
    """The h5 files of one published split (the ModelNet40, ShapeNetPart and ``custom_cls``
    layouts): the files named in ``directory / listing`` (e.g. ``train_files.txt``) when that list
    exists and names any, else ``ply_data_<split>*.h5`` in ``directory``, sorted.

    Raises:
        DatasetNotFoundError naming the list and the file when a listed file is missing, and, when
        no file is found, naming the pattern and the list's state; ``what`` starts that message
        (e.g. "ModelNet40 split 'train'").
    """
    path = directory / listing
    files = read_file_list(path, directory) if path.is_file() else []
    pattern = f"ply_data_{split}*.h5"
    if not files:
        files = h5_files(directory, [pattern])
    if not files:
        state = f"{listing} is empty" if path.is_file() else f"no {listing}"
        raise DatasetNotFoundError(f"{what}: no files matching {directory / pattern} ({state})")
    return files


class H5Arrays(dict):
    """``{key: np.ndarray}`` as read, plus ``.shapes``: ``{key: shape stored in the file}``."""

    shapes: dict[str, tuple[int, ...]]


def transposed_problem(key: str, shape: Sequence[int],
                       cloud_shape: Sequence[int] | None = None) -> str | None:
    """Say so when an array's shape looks transposed, else None.

    A cloud batch ``key`` of shape (N, 3, P) with P != 3 (expected (N, P, 3)); or, when
    ``cloud_shape`` (the clouds' stored shape (N, P, 3)) is given, a per-point array of shape
    (P, N) with P != N (expected (N, P), e.g. ShapeNetPart's 'pid').
    """
    shape = tuple(int(x) for x in shape)
    if cloud_shape is None:
        if len(shape) == 3 and shape[1] == 3 and shape[2] != 3:
            return (f"'{key}' has shape {shape}, i.e. (N, 3, P): the clouds look transposed; "
                    f"expected (N, P, 3) = {(shape[0], shape[2], 3)} (N clouds of P points, "
                    "x/y/z along the last axis); write the array as data.transpose(0, 2, 1)")
        return None
    if len(cloud_shape) < 2:
        return None
    n, p = int(cloud_shape[0]), int(cloud_shape[1])
    if len(shape) == 2 and shape == (p, n) and p != n:
        return (f"'{key}' has shape {shape}, i.e. (P, N): it looks transposed; expected (N, P) = "
                f"{(n, p)} to match the clouds {tuple(cloud_shape)}; write {key}.T instead")
    return None


def read_h5(path: str | os.PathLike, keys: Iterable[str],
            point_slice: dict[str, int | None] | None = None,
            ndim: dict[str, int] | None = None,
            per_point: dict[str, str] | None = None) -> H5Arrays:
    """Read datasets ``keys`` from an HDF5 file.

    Args:
        path: the .h5 file.
        keys: dataset names that must be present (others are ignored).
        point_slice: optional {key: n}: read only the first n entries along axis 1 of that key
            (e.g. the first 1024 of 2048 points) to save memory; None reads everything.
        ndim: optional {key: number of dimensions the array must have}.
        per_point: optional {key: clouds key}: ``key`` holds one value per point of the clouds
            (N, P, 3) in the clouds key (e.g. {"pid": "data"}); used to recognise a transposed
            (P, N) array.

    Returns:
        :class:`H5Arrays` (a dict of arrays with the stored shapes in ``.shapes``).

    Raises:
        DatasetError naming the file when it cannot be opened or lacks a key (listing the keys
        it has), when an array looks transposed ((N, 3, P) clouds, (P, N) per-point values), or
        when a requested slice is longer than what is stored.
    """
    path = os.fspath(path)
    keys = list(keys)
    point_slice = point_slice or {}
    ndim = ndim or {}
    per_point = per_point or {}
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
        for k in keys:
            ds = f[k]
            clouds = per_point.get(k)
            cloud_shape = f[clouds].shape if clouds is not None and clouds in f else None
            problem = transposed_problem(k, ds.shape, cloud_shape)
            if problem and (cloud_shape is not None or k in point_slice or ndim.get(k) == 3):
                raise DatasetError(f"{path}: {problem}")
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
    problem = transposed_problem(key, data.shape)
    if problem:
        raise DatasetError(f"{path}: {problem}")
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


class LabelledClouds(Dataset):
    """Labelled point clouds held in memory (ModelNet40, ScanObjectNN, the custom set).

    A subclass sets ``data`` float32 (M, P, 3) and ``labels`` int64 (M,) in its ``__init__``
    (usually from :func:`load_h5_split`). Item ``i``: ``(points float32 (P, 3), label int)``; the
    points are a copy, so a transform may change them in place.
    """

    data: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.data[index].copy()), int(self.labels[index])
