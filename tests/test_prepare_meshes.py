"""datasets/making/meshes.py, datasets/prepare_meshes/ and datasets/custom.py on real meshes.

The meshes under tests/data/meshes/ were made outside this project (sources and licences in
tests/data/meshes/SOURCES.md). Malformed, rescaled and converted variants are written here from them.
"""

import errno
import json
import os
import pickle
import re
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import trimesh
from PIL import Image

from datasets.making import render as rd
from datasets.custom import CUSTOM_DIR, CustomClassification
from datasets.io import DatasetError, DatasetNotFoundError, read_ply_points
from datasets.making.meshes import (MeshError, UnsupportedFilesWarning, find_inputs, input_kind,
                             load_mesh, normalize_mesh, read_point_file, sample_surface,
                             unit_sphere, z_up_to_y_up)
from datasets.prepare_meshes.prepare import PrepareError, main, prepare, split_objects
from datasets.shapenet_render import ShapeNetRender

MESHES = Path(__file__).parent / "data" / "meshes"
FAST = dict(num_points=128, views=2, workers=1, progress=False)

# (file, faces after triangulation and merging, vertices used by the faces)
MESH_FILES = [
    ("teapot.stl", 894, 2682),          # binary STL (unmerged vertices, as stored)
    ("multibody.stl", 32, 20),          # ASCII STL, 2 solids (trimesh merges its vertices)
    ("comments.off", 12, 8),            # OFF with comments and face colours, quads
    ("whitespace.off", 12, 8),          # ModelNet-style header "OFF8 6 12"
    ("rabbit.obj", 1252, 732),          # OBJ, 12 objects, quads + triangles
    ("two_objects.obj", 16, 12),        # OBJ, 2 objects
    ("fuze.ply", 1000, 664),            # binary PLY with texture coordinates, texture missing
    ("sphere.ply", 1280, 642),          # ASCII PLY
    ("nested.glb", 36, 72),             # GLB scene, 3 meshes under nested transforms
    ("BoxInterleaved.glb", 12, 24),     # GLB, interleaved buffers
]


def _num(x) -> str:
    """A float written so that it reads back exactly."""
    return repr(float(x))


def _write_off(path: Path, vertices: np.ndarray, faces: np.ndarray, modelnet_header: bool = False):
    """OFF with exact (repr) coordinates; ``modelnet_header`` puts the counts on the OFF line."""
    counts = f"{len(vertices)} {len(faces)} 0"
    head = f"OFF{counts}\n" if modelnet_header else f"OFF\n{counts}\n"
    body = "".join(f"{_num(x)} {_num(y)} {_num(z)}\n" for x, y, z in np.asarray(vertices, np.float64))
    body += "".join(f"{len(f)} " + " ".join(str(int(i)) for i in f) + "\n" for f in faces)
    path.write_text(head + body)


def _export_gltf(src: Path, folder: Path, name: str) -> Path:
    """A .gltf with external .bin buffers written by trimesh from a real mesh file."""
    files = trimesh.load_scene(str(src)).export(file_type="gltf")
    folder.mkdir(parents=True, exist_ok=True)
    for fname, data in files.items():
        (folder / (f"{name}.gltf" if fname == "model.gltf" else fname)).write_bytes(data)
    return folder / f"{name}.gltf"


def _flat_input(folder: Path) -> Path:
    """Three classes of real meshes in the DIR/<class>/<name>.<ext> layout (+ ignored files)."""
    layout = {"vessel": ["teapot.stl", "fuze.ply", "sphere.ply"],
              "block": ["comments.off", "whitespace.off", "BoxInterleaved.glb", "nested.glb",
                        "multibody.stl", "two_objects.obj"],
              "figure": ["rabbit.obj", "rabbit.mtl"]}
    for cls, names in layout.items():
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for n in names:
            shutil.copy(MESHES / n, folder / cls / n)
    _export_gltf(MESHES / "rabbit.obj", folder / "figure", "rabbit_copy")
    (folder / "figure" / "notes.md").write_text("not a mesh\n")
    (folder / "README.txt").write_text("top-level file\n")
    return folder


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root except the per-run report and the lock: relative path -> bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("prepare_report.json", "lock")}


@pytest.fixture(scope="module")
def flat_input(tmp_path_factory) -> Path:
    return _flat_input(tmp_path_factory.mktemp("flat_input"))


@pytest.fixture(scope="module")
def prepared(flat_input, tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("prepared")
    return root, prepare(flat_input, root, **FAST)


# ----------------------------------------------------------------------------------------------
# Reading meshes
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,faces,vertices", MESH_FILES)
def test_load_mesh_reads_every_format(name, faces, vertices):
    mesh = load_mesh(MESHES / name)
    assert mesh.faces.shape == (faces, 3) and mesh.vertices.shape == (vertices, 3)
    assert mesh.faces.min() == 0 and mesh.faces.max() == vertices - 1
    assert np.isfinite(mesh.vertices).all() and mesh.area > 0
    assert input_kind(MESHES / name) == "mesh"


def test_off_reader_matches_trimesh_and_reads_modelnet_headers(tmp_path):
    for name in ("comments.off", "whitespace.off"):
        ours = load_mesh(MESHES / name)
        ref = trimesh.load(str(MESHES / name), process=False)
        np.testing.assert_allclose(ours.vertices, ref.vertices)
        assert sorted(map(tuple, np.sort(ours.faces, 1))) == sorted(map(tuple, np.sort(ref.faces, 1)))
    teapot = load_mesh(MESHES / "teapot.stl")
    _write_off(tmp_path / "standard.off", teapot.vertices, teapot.faces)
    _write_off(tmp_path / "modelnet.off", teapot.vertices, teapot.faces, modelnet_header=True)
    assert (tmp_path / "modelnet.off").read_text().startswith(f"OFF{len(teapot.vertices)} ")
    for name in ("standard.off", "modelnet.off"):
        m = load_mesh(tmp_path / name)
        np.testing.assert_array_equal(m.vertices, teapot.vertices)
        np.testing.assert_array_equal(m.faces, teapot.faces)
    # a pentagon is fan-triangulated
    _write_off(tmp_path / "penta.off", np.array([[0, 0, 0], [1, 0, 0], [1.3, 1, 0], [0.5, 1.6, 0],
                                                 [-0.3, 1, 0]], float), [[0, 1, 2, 3, 4]])
    assert load_mesh(tmp_path / "penta.off").faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 3, 4]]


def test_gltf_with_external_buffers_equals_its_glb(tmp_path):
    gltf = _export_gltf(MESHES / "nested.glb", tmp_path, "nested")
    a, b = load_mesh(gltf), load_mesh(MESHES / "nested.glb")
    assert a.faces.shape == b.faces.shape == (36, 3)
    np.testing.assert_allclose(np.sort(a.vertices, axis=0), np.sort(b.vertices, axis=0), atol=1e-6)
    for bin_file in tmp_path.glob("*.bin"):
        bin_file.unlink()
    with pytest.raises(MeshError, match="nested.gltf"):
        load_mesh(gltf)


def test_scenes_are_merged_with_their_transforms():
    scene = trimesh.load_scene(str(MESHES / "nested.glb"))
    merged = load_mesh(MESHES / "nested.glb")
    np.testing.assert_allclose(merged.bounds, scene.bounds, atol=1e-9)
    assert len(scene.geometry) >= 1 and len(scene.graph.nodes_geometry) == 3


def _cut(data: bytes, marker: bytes, keep_after: int = 0) -> bytes:
    """``data`` cut right after the first ``marker`` (+ keep_after bytes)."""
    i = data.index(marker) + len(marker) + keep_after
    return data[:i]


def _garbage(n: int = 3000) -> bytes:
    return bytes(np.random.default_rng(7).integers(0, 256, n, dtype=np.uint8))


MALFORMED = {
    # name: (source file, bytes transform, part of the expected reason)
    "binary_stl_truncated.stl": ("teapot.stl", lambda b: b[:len(b) // 2], "truncated"),
    "binary_stl_one_byte_short.stl": ("teapot.stl", lambda b: b[:-1], "truncated"),
    "ascii_stl_truncated.stl": ("multibody.stl", lambda b: b[:int(len(b) * 0.6)], "ASCII STL"),
    "binary_stl_solid_header_truncated.stl": ("teapot.stl", lambda b: (b"solid" + b[5:])[:len(b) // 2],
                                              "header starts with 'solid'"),
    "ascii_stl_bad_vertex.stl": ("multibody.stl", lambda b: b.replace(b"vertex -0.440789347",
                                                                      b"vertex -0.44x789347", 1),
                                 "malformed ASCII STL vertex"),
    "stl_garbage.stl": ("teapot.stl", lambda b: _garbage(), "not a valid STL"),
    "off_truncated.off": ("sphere.ply", None, "truncated OFF"),
    "off_bad_header.off": ("comments.off", lambda b: b.replace(b"OFF", b"OFX", 1), "not an OFF"),
    "off_bad_vertex.off": ("whitespace.off", lambda b: b.replace(b"1.632993", b"1.63x993", 1),
                           "malformed OFF vertex"),
    "off_bad_index.off": ("comments.off", lambda b: b.replace(b"4  0 1 2 3", b"4  0 1 2 9", 1),
                          "vertex index 9"),
    "off_garbage.off": ("comments.off", lambda b: _garbage(), "not an ASCII OFF"),
    "obj_cut_mid_vertex.obj": ("rabbit.obj", lambda b: _cut(b, b"\nv 0.51118080 4.120713"),
                               "malformed OBJ vertex"),
    "obj_bad_face.obj": ("two_objects.obj", lambda b: b.replace(b"f  1  7  5", b"f  1  77  5"),
                         "face references vertex 77"),
    "obj_garbage.obj": ("rabbit.obj", lambda b: _garbage(), "binary data"),
    "ply_binary_truncated.ply": ("fuze.ply", lambda b: b[:int(len(b) * 0.7)], "PLY"),
    "ply_ascii_truncated.ply": ("sphere.ply", lambda b: b[:int(len(b) * 0.7)], "truncated ASCII PLY"),
    "ply_garbage.ply": ("sphere.ply", lambda b: _garbage(), "PLY"),
    "glb_truncated.glb": ("nested.glb", lambda b: b[:len(b) // 2], "GLB"),
    "glb_garbage.glb": ("nested.glb", lambda b: _garbage(), "GLB"),
    "gltf_garbage.gltf": ("nested.glb", lambda b: b"{\"asset\": {\"version\": \"2.0\"}, \"meshes\": [",
                          "GLTF"),
    "gltf_binary_garbage.gltf": ("nested.glb", lambda b: b"\xff" + _garbage(), "not valid glTF JSON"),
    "gltf_not_json.gltf": ("nested.glb", lambda b: b"hello", "not valid glTF JSON"),
    "gltf_json_list.gltf": ("nested.glb", lambda b: b"[1, 2]", "not valid glTF"),
    "empty.obj": ("rabbit.obj", lambda b: b"", "empty"),
    "points_only.ply": ("points_ascii.ply", lambda b: b, "no faces"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_mesh_files_raise_mesh_error_naming_the_file(tmp_path, name):
    src, transform, reason = MALFORMED[name]
    path = tmp_path / name
    if transform is None:  # an OFF of a real mesh, cut in the face list
        mesh = load_mesh(MESHES / src)
        _write_off(path, mesh.vertices, mesh.faces)
        text = path.read_bytes()
        path.write_bytes(text[:int(len(text) * 0.8)])
    else:
        path.write_bytes(transform((MESHES / src).read_bytes()))
    with pytest.raises(MeshError) as info:
        load_mesh(path)
    assert str(path) in str(info.value) and info.value.path == str(path)
    assert reason in info.value.reason, info.value.reason
    assert isinstance(info.value, DatasetError)
    copy = pickle.loads(pickle.dumps(info.value))  # crosses process boundaries intact
    assert (type(copy), copy.path, copy.reason, str(copy)) == (MeshError, str(path),
                                                              info.value.reason, str(info.value))


def _comments_off_with(tmp_path, vertices) -> Path:
    mesh = load_mesh(MESHES / "comments.off")
    path = tmp_path / "cube.off"
    _write_off(path, vertices(mesh.vertices.copy()), mesh.faces)
    return path


@pytest.mark.parametrize("change,reason", [
    (lambda v: np.where(np.arange(len(v))[:, None] == 3, np.nan, v), "NaN/inf"),
    (lambda v: np.where(np.arange(len(v))[:, None] == 0, np.inf, v), "NaN/inf"),
    (lambda v: np.zeros_like(v) + 2.5, "at one point"),
    (lambda v: np.outer(np.arange(len(v)), [1.0, 2.0, 3.0]), "zero surface area"),
    (lambda v: v * 1e308, "too large"),
])
def test_degenerate_meshes_are_rejected_with_the_reason(tmp_path, change, reason):
    with pytest.raises(MeshError, match=reason):
        load_mesh(_comments_off_with(tmp_path, change))


def test_unsupported_and_missing_mesh_files(tmp_path):
    with pytest.raises(MeshError, match="unsupported mesh extension"):
        load_mesh(MESHES / "points_agisoft.xyz")
    with pytest.raises(MeshError, match="does not exist"):
        load_mesh(tmp_path / "missing.obj")
    with pytest.raises(ValueError, match="up_axis"):
        load_mesh(MESHES / "teapot.stl", up_axis="x")


def test_normalisation_does_not_depend_on_the_unit(tmp_path):
    teapot = load_mesh(MESHES / "teapot.stl")
    ref = normalize_mesh(teapot)
    lo, hi = ref.bounds
    np.testing.assert_allclose((lo + hi) / 2, 0, atol=1e-12)
    assert np.linalg.norm(hi - lo) == pytest.approx(1.0, abs=1e-12)
    clouds = {}
    for scale in (1.0, 1e-3, 1e4):
        _write_off(tmp_path / f"teapot_{scale}.off", teapot.vertices * scale, teapot.faces)
        mesh = normalize_mesh(load_mesh(tmp_path / f"teapot_{scale}.off"))
        np.testing.assert_allclose(mesh.vertices, ref.vertices, rtol=0, atol=1e-12)
        clouds[scale] = sample_surface(mesh, 512, np.random.default_rng(3))
    for scale in (1e-3, 1e4):
        np.testing.assert_allclose(clouds[scale], clouds[1.0], rtol=0, atol=1e-6)


def test_scaled_copies_give_the_same_prepared_ply(tmp_path):
    teapot = load_mesh(MESHES / "teapot.stl")
    plys = {}
    for scale in (1e-3, 1.0, 1e4):
        inp = tmp_path / f"in_{scale}"
        (inp / "vessel").mkdir(parents=True)
        _write_off(inp / "vessel" / "teapot.off", teapot.vertices * scale, teapot.faces)
        shutil.copy(MESHES / "sphere.ply", inp / "vessel" / "sphere.ply")
        prepare(inp, tmp_path / f"out_{scale}", **FAST)
        plys[scale] = read_ply_points(tmp_path / f"out_{scale}" / "ShapeNet" / "vessel" / "teapot.ply")
    for scale in (1e-3, 1e4):
        np.testing.assert_allclose(plys[scale], plys[1.0], rtol=0, atol=1e-6)


def test_z_up_input_is_rotated_to_y_up():
    y = load_mesh(MESHES / "teapot.stl")
    z = load_mesh(MESHES / "teapot.stl", up_axis="z")
    np.testing.assert_array_equal(z.vertices, z_up_to_y_up(y.vertices))
    ext_y, ext_z = np.ptp(y.vertices, axis=0), np.ptp(z.vertices, axis=0)
    np.testing.assert_allclose(ext_z, ext_y[[0, 2, 1]])
    assert np.argmin(ext_y) == 2 and np.argmin(ext_z) == 1  # the teapot's height is its smallest extent
    # a rotation, not a mirror: the orientation of every triangle is kept
    np.testing.assert_allclose(z.face_normals, z_up_to_y_up(y.face_normals), atol=1e-9)


def test_sample_surface_is_area_weighted_and_seeded():
    # two_objects.obj: the unit cube [0, 1]^3 and the tetrahedron (0,0,0), e_x, e_y, e_z; only the
    # tetrahedron's slanted face (area sqrt(3)/2) lies on the plane x + y + z = 1 inside the cube
    mesh = normalize_mesh(load_mesh(MESHES / "two_objects.obj"))
    a = sample_surface(mesh, 6000, np.random.default_rng(0))
    b = sample_surface(mesh, 6000, np.random.default_rng(0))
    assert a.dtype == np.float32 and a.shape == (6000, 3)
    np.testing.assert_array_equal(a, b)
    p = a.astype(np.float64) * np.sqrt(3) + 0.5  # back to the file's coordinates
    on_cube = (np.abs(p) < 1e-5).any(axis=1) | (np.abs(p - 1) < 1e-5).any(axis=1)
    on_slant = np.abs(p.sum(axis=1) - 1) < 1e-5
    assert (on_cube | on_slant).all() and (p > -1e-5).all() and (p < 1 + 1e-5).all()
    expected = (np.sqrt(3) / 2) / (6 + 1.5 + np.sqrt(3) / 2)
    assert on_slant.mean() == pytest.approx(expected, abs=0.015)
    with pytest.raises(ValueError):
        sample_surface(mesh, 0, np.random.default_rng(0))


def test_unit_sphere():
    p = unit_sphere(read_ply_points(MESHES / "points_bin.ply") * 1000 + 5)
    np.testing.assert_allclose(p.mean(axis=0), 0, atol=1e-6)
    assert np.linalg.norm(p, axis=1).max() == pytest.approx(1.0, abs=1e-6)


# ----------------------------------------------------------------------------------------------
# Reading point clouds
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scan() -> np.ndarray:
    """The 100 points of the real Agisoft scan (x y z r g b), float64 (100, 6)."""
    return np.loadtxt(MESHES / "points_agisoft.xyz")


def test_read_point_files_of_every_format(tmp_path, scan):
    xyz = scan[:, :3]
    (name, cloud), = read_point_file(MESHES / "points_agisoft.xyz")
    assert name == str(MESHES / "points_agisoft.xyz") and cloud.dtype == np.float32
    np.testing.assert_allclose(cloud, xyz.astype(np.float32))
    for f in ("points_ascii.ply", "points_bin.ply"):
        (_, cloud), = read_point_file(MESHES / f)
        assert cloud.shape == (5, 3) and input_kind(MESHES / f) == "points"
    (tmp_path / "scan.txt").write_text("X,Y,Z,R,G,B\n" + "".join(",".join(map(_num, r)) + "\n"
                                                                 for r in scan))
    (tmp_path / "scan.pts").write_text(f"{len(scan)}\n" + "".join(" ".join(map(_num, r)) + "\n"
                                                                  for r in scan))
    np.save(tmp_path / "scan.npy", xyz)
    np.save(tmp_path / "scan_normals.npy", scan)
    np.save(tmp_path / "batch.npy", np.stack([xyz, xyz + 1]))
    np.savez(tmp_path / "named.npz", labels=np.arange(3), points=xyz)
    np.savez(tmp_path / "single.npz", xyz)
    with h5py.File(tmp_path / "published.h5", "w") as f:
        f["data"] = np.stack([xyz, xyz * 2, xyz * 3]).astype(np.float32)
        f["label"] = np.zeros((3, 1), np.uint8)
    for f in ("scan.txt", "scan.pts", "scan.npy", "scan_normals.npy", "named.npz", "single.npz"):
        (name, cloud), = read_point_file(tmp_path / f)
        assert name == str(tmp_path / f)
        np.testing.assert_allclose(cloud, xyz.astype(np.float32))
    clouds = read_point_file(tmp_path / "batch.npy")
    assert [n for n, _ in clouds] == [f"{tmp_path / 'batch.npy'}[0]", f"{tmp_path / 'batch.npy'}[1]"]
    np.testing.assert_allclose(clouds[1][1], (xyz + 1).astype(np.float32))
    clouds = read_point_file(tmp_path / "published.h5")
    assert [n for n, _ in clouds] == [f"{tmp_path / 'published.h5'}[{i}]" for i in range(3)]
    np.testing.assert_allclose(clouds[2][1], (xyz * 3).astype(np.float32), rtol=1e-6)


@pytest.mark.parametrize("name,write,reason", [
    ("transposed.npy", lambda p, s: np.save(p, s[:, :3].T), "transposed"),
    ("transposed_batch.npy", lambda p, s: np.save(p, s[None, :, :3].transpose(0, 2, 1)), "transposed"),
    ("transposed.txt", lambda p, s: p.write_text("\n".join(" ".join(map(_num, c)) for c in s[:, :3].T)),
     "transposed"),
    ("two_columns.npy", lambda p, s: np.save(p, s[:, :2]), "3 columns"),
    ("flat.npy", lambda p, s: np.save(p, s[:, 0]), "expected (N, 3)"),
    ("empty.npy", lambda p, s: np.save(p, np.zeros((0, 3))), "no points"),
    ("nan.npy", lambda p, s: np.save(p, np.where(np.arange(100)[:, None] == 42, np.nan, s[:, :3])),
     "first bad point index 42"),
    ("strings.npy", lambda p, s: np.save(p, s[:, :3].astype(str)), "expected numbers"),
    ("truncated.npy", lambda p, s: (np.save(p, s), p.write_bytes(p.read_bytes()[:300])), "not a valid .npy file"),
    ("ambiguous.npz", lambda p, s: np.savez(p, a=s, b=s), "expected one named"),
    ("garbage.npz", lambda p, s: p.write_bytes(_garbage()), "not a valid .npz file"),
    ("no_data.h5", lambda p, s: h5py.File(p, "w").create_dataset("points", data=s).file.close(),
     "missing HDF5 key"),
    ("garbage.h5", lambda p, s: p.write_bytes(_garbage()), "HDF5"),
    ("mid_text.xyz", lambda p, s: p.write_text("1 2 3\n4 five 6\n"), "line 2"),
    ("ragged.xyz", lambda p, s: p.write_text("1 2 3\n4 5 6 7\n"), "line 2 has 4 columns"),
    ("numeric_header.xyz", lambda p, s: p.write_text("count 2\n1 2 3\n4 5 6\n"), "columns"),
    ("header_only.txt", lambda p, s: p.write_text("x y z\n"), "no numeric lines"),
    ("binary.xyz", lambda p, s: p.write_bytes(b"\xff\xfe" + _garbage()), "not a text point file"),
    ("empty.xyz", lambda p, s: p.write_text(""), "empty"),
    ("mesh.ply", lambda p, s: shutil.copy(MESHES / "sphere.ply", p), "is a mesh"),
    ("truncated.ply", lambda p, s: p.write_bytes((MESHES / "points_bin.ply").read_bytes()[:-20]),
     "PLY"),
])
def test_malformed_point_files_raise_mesh_error(tmp_path, scan, name, write, reason):
    path = tmp_path / name
    write(path, scan)
    with pytest.raises(MeshError) as info:
        read_point_file(path)
    assert str(path) in str(info.value)
    assert reason in str(info.value), str(info.value)


def test_find_inputs(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "a" / ".hidden").mkdir()
    for rel, src in [("a/deep/z.STL", "teapot.stl"), ("a/b.obj", "two_objects.obj"),
                     ("a/b.mtl", "rabbit.mtl"), ("a/.hidden/h.obj", "two_objects.obj"),
                     ("c.xyz", "points_agisoft.xyz")]:
        shutil.copy(MESHES / src, tmp_path / rel)
    (tmp_path / "a" / "notes.docx").write_text("x")
    left_out: list[Path] = []
    with pytest.warns(UnsupportedFilesWarning, match="notes.docx"):
        found = find_inputs([tmp_path / "c.xyz", tmp_path / "a", tmp_path / "a" / "b.obj"], left_out)
    assert found == [tmp_path / "c.xyz", tmp_path / "a" / "b.obj", tmp_path / "a" / "deep" / "z.STL"]
    assert left_out == [tmp_path / "a" / "notes.docx"]
    with pytest.raises(MeshError, match="unsupported extension"):
        find_inputs([tmp_path / "a" / "notes.docx"])
    with pytest.raises(MeshError, match="does not exist"):
        find_inputs([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(MeshError, match="no mesh or point files"):
        find_inputs([tmp_path / "empty"])


# ----------------------------------------------------------------------------------------------
# prepare_meshes: the folder layout
# ----------------------------------------------------------------------------------------------


def test_prepare_writes_the_shapenet_render_layout(prepared):
    root, report = prepared
    assert report["ok"] and report["layout"] == "folders"
    assert {c: v["usable"] for c, v in report["classes"].items()} == {"block": 6, "figure": 2,
                                                                      "vessel": 3}
    assert not report["skipped"] and not report["empty_classes"]
    ignored = {i["file"]: i["reason"] for i in report["ignored"]}
    assert "unsupported extension" in ignored["figure/notes.md"]
    assert "companion" in ignored["figure/rabbit.mtl"] and "class folder" in ignored["README.txt"]
    marker = json.loads((root / "PREPARED.json").read_text())
    assert marker["counts"]["objects"] == 11 and marker["settings"]["views"] == 2
    for cls in ("block", "figure", "vessel"):
        for ply in (root / "ShapeNet" / cls).glob("*.ply"):
            pts = read_ply_points(ply)
            assert pts.shape == (128, 3)
            lo, hi = pts.min(0), pts.max(0)
            assert np.linalg.norm(hi - lo) <= 1.0 + 1e-5 and np.abs(pts).max() <= 0.5 + 1e-5
            assert (root / "ShapeNetRendering" / cls / ply.stem / "rendering").is_dir()
    assert sorted(p.stem for p in (root / "ShapeNet" / "figure").glob("*.ply")) == ["rabbit",
                                                                                     "rabbit_copy"]


def test_renders_are_137px_rgba_with_transparent_background_and_a_visible_object(prepared):
    root, _ = prepared
    folders = sorted((root / "ShapeNetRendering").glob("*/*/rendering"))
    assert len(folders) == 11
    for folder in folders:
        names = (folder / "renderings.txt").read_text().split()
        assert names == ["00.png", "01.png"]
        meta = [line.split() for line in (folder / "rendering_metadata.txt").read_text().splitlines()]
        assert len(meta) == 2
        for (az, el, rot, ratio, fov), name in zip(meta, names):
            assert 0 <= float(az) < 360 and 25 <= float(el) <= 30 and float(rot) == 0
            assert 0.7 <= float(ratio) <= 0.9 and float(fov) == pytest.approx(rd.BLENDER_FOV_DEG)
            with Image.open(folder / name) as im:
                assert im.mode == "RGBA" and im.size == (137, 137)
                a = np.asarray(im)
            alpha = a[..., 3]
            assert set(np.unique(alpha)) <= {0, 255}
            assert 0.01 < (alpha > 0).mean() < 0.8, folder  # an object, not a blank or full frame
            assert alpha[0, :].max() == alpha[-1, :].max() == alpha[:, 0].max() == 0
            rgb = a[..., :3][alpha > 0].astype(int)
            assert rgb.max() > 60 and np.ptp(rgb) > 10  # shaded, not flat
            assert (a[..., :3][alpha == 0] == 0).all()


def test_custom_classification_loads_the_prepared_set(prepared):
    root, report = prepared
    classes = ["block", "figure", "vessel"]
    train, test = CustomClassification(root, "train", num_points=64), CustomClassification(root, "test",
                                                                                           num_points=None)
    assert train.class_names == test.class_names == classes
    assert len(train) + len(test) == 11 and train.num_points == 64 and test.num_points == 128
    assert train.dir == root / CUSTOM_DIR and [f.name for f in train.files] == ["ply_data_train0.h5"]
    for ds in (train, test):
        assert ds.data.dtype == np.float32 and ds.labels.dtype == np.int64
        assert len(ds.objects) == len(ds)
        for row, label in zip(ds.objects, ds.labels):
            assert row["source"].split("/")[0] == classes[label] == row["class"]
        points, label = ds[0]
        assert tuple(points.shape) == (ds.num_points, 3) and isinstance(label, int)
    full = test.data  # unit sphere: centroid 0, max norm 1
    np.testing.assert_allclose(full.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(full, axis=2).max(axis=1), 1, atol=1e-5)
    # every class with >= 2 objects has a test object; each split keeps its points = the PLY's
    assert sorted(set(test.labels.tolist())) == [0, 1, 2]
    row = test.objects[0]
    ply = read_ply_points(root / "ShapeNet" / row["class"] / f"{row['object']}.ply")
    np.testing.assert_allclose(test.data[0], unit_sphere(ply), atol=1e-6)
    with h5py.File(root / CUSTOM_DIR / "ply_data_test0.h5") as f:
        assert f["label"].shape == (len(test), 1) and f["label"].dtype == np.int64
    csv_lines = (root / CUSTOM_DIR / "objects.csv").read_text().splitlines()
    assert csv_lines[0] == "h5_file,row,class,label,split,object,source" and len(csv_lines) == 12
    assert report["classes"]["block"]["test"] == 1 and report["classes"]["block"]["train"] == 5


def test_custom_classification_errors(tmp_path, prepared):
    with pytest.raises(DatasetNotFoundError, match="python -m datasets.prepare_meshes"):
        CustomClassification(tmp_path)
    root, _ = prepared
    with pytest.raises(ValueError, match="split"):
        CustomClassification(root, "val")
    with pytest.raises(DatasetError, match="fewer than the 1024 requested"):
        CustomClassification(root, "train", num_points=1024)


def test_shapenet_render_loads_the_prepared_root(prepared):
    root, _ = prepared
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = ShapeNetRender(root, num_points=128, image_size=32)
    assert len(ds) == 11 and ds.classes == ["block", "figure", "vessel"]
    assert not any(ds.skipped.values())
    pc1, pc2, img = ds[0]
    assert tuple(pc1.shape) == tuple(pc2.shape) == (128, 3) and tuple(img.shape) == (3, 32, 32)


def test_split_is_stratified_and_seeded():
    names = {"a": [f"o{i}" for i in range(10)], "b": ["x", "y"], "c": ["only"]}
    split = split_objects(names, seed=0, test_fraction=0.2)
    assert split == split_objects(names, seed=0, test_fraction=0.2)
    count = {c: sum(split[(c, n)] == "test" for n in ns) for c, ns in names.items()}
    assert count == {"a": 2, "b": 1, "c": 0}
    assert split_objects(names, seed=1, test_fraction=0.2) != split
    assert sum(v == "test" for v in split_objects(names, 0, 0.99).values()) == 9 + 1


# ----------------------------------------------------------------------------------------------
# prepare_meshes: ModelNet's layout, determinism, resume, idempotence, failures
# ----------------------------------------------------------------------------------------------


def test_modelnet_layout_keeps_its_split(tmp_path):
    teapot = load_mesh(MESHES / "teapot.stl")
    inp = tmp_path / "ModelNet"
    for cls, split, name, src in [("teapot", "train", "teapot_0001", None),
                                  ("teapot", "train", "teapot_0002", None),
                                  ("teapot", "test", "teapot_0003", None),
                                  ("sphere", "train", "sphere_0001", "sphere.ply"),
                                  ("sphere", "test", "sphere_0002", "comments.off")]:
        (inp / cls / split).mkdir(parents=True, exist_ok=True)
        dst = inp / cls / split / f"{name}.off"
        if src is None:
            _write_off(dst, teapot.vertices * (1 + int(name[-1])), teapot.faces, modelnet_header=True)
        else:
            m = load_mesh(MESHES / src)
            _write_off(dst, m.vertices, m.faces, modelnet_header=True)
    report = prepare(inp, tmp_path / "out", up_axis="z", test_fraction=0.5, **FAST)
    assert report["ok"] and report["layout"] == "modelnet"
    rows = json.loads((tmp_path / "out" / CUSTOM_DIR / "objects.json").read_text())
    assert {r["object"]: r["split"] for r in rows} == {
        "teapot_0001": "train", "teapot_0002": "train", "teapot_0003": "test",
        "sphere_0001": "train", "sphere_0002": "test"}
    assert {r["object"]: r["source"] for r in rows}["teapot_0003"] == "teapot/test/teapot_0003.off"
    assert CustomClassification(tmp_path / "out", "test", num_points=128).class_names == ["sphere",
                                                                                          "teapot"]
    # z-up input -> y-up: the teapot's height (smallest extent) is along y in the PLY
    pts = read_ply_points(tmp_path / "out" / "ShapeNet" / "teapot" / "teapot_0001.ply")
    assert np.argmin(np.ptp(pts, axis=0)) == 1
    (inp / "nothing").mkdir()  # an empty class folder: reported, not a layout of its own
    report = prepare(inp, tmp_path / "out", up_axis="z", **FAST)
    assert not report["ok"] and report["empty_classes"] == ["nothing"]
    (inp / "nothing").rmdir()
    (inp / "teapot" / "loose.off").write_text((inp / "sphere" / "test" / "sphere_0002.off").read_text())
    with pytest.raises(PrepareError, match="next to the train/test folders"):
        prepare(inp, tmp_path / "out", **FAST)
    (inp / "teapot" / "loose.off").unlink()
    (inp / "flat").mkdir()
    shutil.copy(MESHES / "sphere.ply", inp / "flat" / "s.ply")
    with pytest.raises(PrepareError, match="mixed layouts"):
        prepare(inp, tmp_path / "out", **FAST)


def test_output_is_identical_for_any_worker_count_and_on_a_rerun(tmp_path):
    inp = tmp_path / "in"
    for cls, names in {"a": ["teapot.stl", "sphere.ply", "nested.glb"],
                       "b": ["rabbit.obj", "two_objects.obj", "whitespace.off"]}.items():
        (inp / cls).mkdir(parents=True)
        for n in names:
            shutil.copy(MESHES / n, inp / cls / n)
    one = prepare(inp, tmp_path / "w1", **{**FAST, "workers": 1})
    two = prepare(inp, tmp_path / "w2", **{**FAST, "workers": 2})
    assert one["ok"] and two["ok"] and two["run"]["workers"] == 2
    first = _snapshot(tmp_path / "w1")
    assert first == _snapshot(tmp_path / "w2")
    assert len([k for k in first if k.endswith(".png")]) == 12
    again = prepare(inp, tmp_path / "w1", **FAST)
    assert again["run"]["prepared"] == 0 and again["run"]["reused"] == 6
    assert _snapshot(tmp_path / "w1") == first


def test_resume_redoes_only_unfinished_objects(tmp_path):
    inp = tmp_path / "in"
    (inp / "a").mkdir(parents=True)
    for n in ("teapot.stl", "sphere.ply", "fuze.ply", "comments.off"):
        shutil.copy(MESHES / n, inp / "a" / n)
    root = tmp_path / "out"
    prepare(inp, root, **FAST)
    before = _snapshot(root)
    # A run killed while writing "sphere": no completion mark, a temporary PLY and render folder,
    # a render folder with a missing view. And "fuze" lost its PLY after being marked done.
    (root / ".prepare" / "done" / "a" / "sphere.json").unlink()
    (root / "ShapeNet" / "a" / ".sphere.ply.999.tmp").write_bytes(b"partial")
    (root / "ShapeNetRendering" / "a" / ".sphere.999.tmp" / "rendering").mkdir(parents=True)
    (root / "ShapeNetRendering" / "a" / "sphere" / "rendering" / "01.png").unlink()
    (root / "ShapeNet" / "a" / "fuze.ply").unlink()
    (root / "PREPARED.json").unlink()
    report = prepare(inp, root, **FAST)
    assert report["run"]["prepared"] == 2 and report["run"]["reused"] == 2
    assert _snapshot(root) == before
    assert not list(root.rglob("*.tmp"))
    # a changed source file is redone; a removed one is removed from the output
    shutil.copy(MESHES / "whitespace.off", inp / "a" / "comments.off")
    (inp / "a" / "teapot.stl").unlink()
    report = prepare(inp, root, **FAST)
    assert (report["run"]["prepared"], report["run"]["reused"], report["run"]["removed"]) == (1, 2, 1)
    assert not (root / "ShapeNet" / "a" / "teapot.ply").exists()
    assert not (root / "ShapeNetRendering" / "a" / "teapot").exists()
    assert len(CustomClassification(root, "train", 128)) + len(CustomClassification(root, "test", 128)) == 3


def test_changed_settings_need_force_and_foreign_roots_are_refused(tmp_path):
    inp = tmp_path / "in"
    (inp / "a").mkdir(parents=True)
    shutil.copy(MESHES / "sphere.ply", inp / "a" / "sphere.ply")
    root = tmp_path / "out"
    prepare(inp, root, **FAST)
    with pytest.raises(PrepareError, match="views: 2 there, 3 now.*--force"):
        prepare(inp, root, **{**FAST, "views": 3})
    with pytest.raises(PrepareError, match="num_points"):
        prepare(inp, root, **{**FAST, "num_points": 64})
    report = prepare(inp, root, **{**FAST, "views": 3, "force": True})
    assert report["ok"] and len(list(root.glob("ShapeNetRendering/a/sphere/rendering/*.png"))) == 3
    assert prepare(inp, root, **{**FAST, "views": 3, "test_fraction": 0.5})["ok"]
    foreign = tmp_path / "foreign"
    (foreign / "ShapeNet").mkdir(parents=True)
    with pytest.raises(PrepareError, match="not written by prepare_meshes"):
        prepare(inp, foreign, **{**FAST, "force": True})
    with pytest.raises(PrepareError, match="must not contain each other"):
        prepare(inp, inp / "out", **FAST)
    assert not (inp / "out").exists() and not (foreign / ".prepare").exists()
    with pytest.raises(PrepareError, match="test_fraction"):
        prepare(inp, root, **{**FAST, "test_fraction": 0.0})


def test_same_names_in_a_class_get_distinct_objects(tmp_path):
    inp = tmp_path / "in"
    (inp / "a").mkdir(parents=True)
    shutil.copy(MESHES / "two_objects.obj", inp / "a" / "box.obj")
    shutil.copy(MESHES / "comments.off", inp / "a" / "box.off")
    shutil.copy(MESHES / "sphere.ply", inp / "a" / "ball.ply")
    prepare(inp, tmp_path / "out", **FAST)
    assert sorted(p.name for p in (tmp_path / "out" / "ShapeNet" / "a").iterdir()) == [
        "ball.ply", "box_obj.ply", "box_off.ply"]


def test_cli_skips_bad_files_and_fails_only_when_a_class_is_empty(tmp_path, capsys):
    inp = tmp_path / "in"
    for cls, names in {"good": ["sphere.ply", "teapot.stl"], "mixed": ["rabbit.obj", "comments.off"]}.items():
        (inp / cls).mkdir(parents=True)
        for n in names:
            shutil.copy(MESHES / n, inp / cls / n)
    (inp / "mixed" / "cut.stl").write_bytes((MESHES / "teapot.stl").read_bytes()[:5000])
    (inp / "mixed" / "noise.obj").write_bytes(_garbage())
    shutil.copy(MESHES / "points_bin.ply", inp / "mixed" / "cloud.ply")
    args = ["--input", str(inp), "--output", str(tmp_path / "out"), "--num_points", "128",
            "--views", "2", "--workers", "1", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    reasons = {s["file"]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"mixed/cut.stl", "mixed/noise.obj", "mixed/cloud.ply"}
    assert "truncated" in reasons["mixed/cut.stl"] and "binary data" in reasons["mixed/noise.obj"]
    assert "no faces" in reasons["mixed/cloud.ply"]
    assert report["classes"]["mixed"] == {"usable": 2, "skipped": 3, "train": 1, "test": 1}
    assert "mixed/cut.stl: " in out and re.search(r"mixed\s+2\s+1\s+1\s+3", out)
    assert (tmp_path / "out" / "PREPARED.json").is_file()
    # every file of a class unusable: exit 1 naming the class, no classification set or marker
    (inp / "broken").mkdir()
    (inp / "broken" / "x.off").write_text("OFF\n3 1 0\n0 0 0\n1 1 1\n2 2 2\n3 0 1 2\n")
    (inp / "empty").mkdir()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "broken, empty" in err and "zero surface area" in json.dumps(
        json.loads((tmp_path / "out" / "prepare_report.json").read_text())["skipped"])
    assert not (tmp_path / "out" / "PREPARED.json").exists()
    assert not (tmp_path / "out" / CUSTOM_DIR).exists()
    assert main(args[:2] + ["--output", str(inp / "x")] + args[4:]) == 2


def _cli_args(inp: Path, out: Path) -> list[str]:
    return ["--input", str(inp), "--output", str(out), "--num_points", "128", "--views", "2", "--workers", "1",
            "--quiet"]


def test_links_that_cannot_be_opened_are_skipped_with_the_reason(tmp_path, capsys):
    inp = tmp_path / "in"
    (inp / "a").mkdir(parents=True)
    shutil.copy(MESHES / "sphere.ply", inp / "a" / "ball.ply")
    shutil.copy(MESHES / "comments.off", inp / "a" / "cube.off")
    os.symlink(tmp_path / "gone.obj", inp / "a" / "dangling.obj")
    os.symlink("loop.stl", inp / "a" / "loop.stl")  # points at itself
    (inp / "a" / "noise.gltf").write_bytes(b"\xff" + _garbage())
    assert main(_cli_args(inp, tmp_path / "out")) == 0
    out = capsys.readouterr().out
    reasons = {s["file"]: s["reason"] for s in json.loads((tmp_path / "out" / "prepare_report.json").read_text())[
        "skipped"]}
    assert reasons == {
        "a/dangling.obj": f"is a dangling symbolic link (its target {tmp_path / 'gone.obj'} does not exist)",
        "a/loop.stl": "is a symbolic link loop (it cannot be resolved to a file)",
        "a/noise.gltf": "cannot be read as GLTF: not valid glTF JSON (byte 0 is not UTF-8 text; a binary glTF "
                        "file has the extension .glb)"}
    assert "done: 2 objects in 1 classes" in out and "a/loop.stl: is a symbolic link loop" in out


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _no_tmp_left(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in root.rglob("*") if ".tmp" in p.name]


def test_full_disk_and_read_only_output_give_one_line_naming_the_path(tmp_path, monkeypatch, capsys):
    """ENOSPC while rendering an object, while writing the classification set, and EROFS on the output
    (simulated: the tests run as root, who may write into a chmod-ed folder)."""
    import datasets.prepare_meshes.prepare as pm

    inp, out = tmp_path / "in", tmp_path / "out"
    (inp / "a").mkdir(parents=True)
    for n in ("sphere.ply", "comments.off"):
        shutil.copy(MESHES / n, inp / "a" / n)

    def render_until_full(mesh, rng, n_views, out_dir, *args):
        (out_dir / "00.png").write_bytes(b"\x89PNG half")  # a partial file, then the disk is full
        _disk_full()

    with monkeypatch.context() as m:
        m.setattr(pm, "render_views", render_until_full)
        assert main(_cli_args(inp, out)) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: --output {out}: no space left on the device holding "
                   f"{out / 'ShapeNetRendering' / 'a' / 'comments'} (No space left on device); nothing partial "
                   "was left: free disk space (or choose another --output) and run the same command again "
                   "(finished objects are kept)"), err
    assert _no_tmp_left(out) == [] and not list((out / "ShapeNetRendering" / "a").iterdir())

    def write_until_full(folder, *args):
        (folder / "ply_data_train0.h5").write_bytes(b"half")
        _disk_full()

    with monkeypatch.context() as m:
        m.setattr(pm, "write_split_files", write_until_full)
        assert main(_cli_args(inp, out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --output {out}: no space left on the device holding {out} ") and "\n" not in err
    assert _no_tmp_left(out) == [] and not (out / CUSTOM_DIR).exists()
    assert main(_cli_args(inp, out)) == 0  # the same command once there is space: every object is done

    mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if str(self).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    capsys.readouterr()
    assert main(_cli_args(inp, tmp_path / "ro")) == 2
    assert capsys.readouterr().err == (f"error: --output {tmp_path / 'ro'}: cannot write {tmp_path / 'ro'} "
                                       "(Read-only file system); choose a writable --output folder\n")


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _running(pid: int) -> bool:
    """Exists and is not a zombie (an ended process its new parent has not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc (Linux)")
def test_pool_workers_end_when_the_writer_is_killed(tmp_path):
    """SIGKILL of a process using datasets.making.parallel.Runner with 2 workers, while both run a task that holds
    the GIL: no worker, forkserver or resource tracker survives it for more than a few seconds."""
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "busy.py").write_text(
        "import os\n"
        "def hog(folder):\n"
        "    open(os.path.join(folder, str(os.getpid())), 'w').close()\n"
        "    return sum(range(10**11))  # minutes of work inside one C call that holds the GIL\n")
    marks = tmp_path / "marks"
    marks.mkdir()
    code = ("from datasets.making.parallel import Runner\nimport busy\n"
            f"with Runner(2, False) as r:\n    r.map(busy.hog, [{str(marks)!r}] * 4, 'busy')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).resolve().parents[1])])}
    writer = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=tmp_path)
    pids = []
    try:
        deadline = time.monotonic() + 120
        while len(os.listdir(marks)) < 2 and writer.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(os.listdir(marks)) == 2, "the two workers did not start"
        pids = _descendants(writer.pid)
        assert len(pids) >= 3, pids  # two workers and the forkserver (and the resource tracker)
        writer.kill()
        writer.wait()
        deadline = time.monotonic() + 10
        while any(_running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in pids if _running(p)], "processes of the killed writer still run"
    finally:
        writer.kill()
        for p in pids:
            if _running(p):
                os.kill(p, signal.SIGKILL)


@pytest.mark.slow
def test_end_to_end_published_settings_with_workers(tmp_path):
    """24 views, 2048 points, 2 workers, the CLI in a subprocess; the loaders read the result."""
    import subprocess
    import sys

    inp = _flat_input(tmp_path / "in")
    root = tmp_path / "root"
    cmd = [sys.executable, "-m", "datasets.prepare_meshes", "--input", str(inp), "--output", str(root),
           "--workers", "2", "--quiet"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert "done: 11 objects in 3 classes" in out.stdout
    ds = ShapeNetRender(root)
    assert len(ds) == 11 and all(len(o.views) == 24 for o in ds.objects)
    assert ds.load_points(0).shape == (2048, 3)
    train = CustomClassification(root, "train")
    assert train.data.shape[1:] == (1024, 3)
    marker = json.loads((root / "PREPARED.json").read_text())
    assert marker["counts"]["views_per_object"] == 24 and marker["counts"]["points_per_object"] == 2048
