"""Loaders, file readers, datasets.check and data/download_data.sh on tiny hand-made files in the
exact published layouts (and, when available, on the synthetic generator's tiny output)."""

import os
import shutil
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from datasets import check as check_mod
from datasets.io import DatasetError, DatasetNotFoundError, read_image_rgb, read_ply_points
from datasets.modelnet40 import ModelNet40
from datasets.scanobjectnn import SCANOBJECTNN_CLASSES, ScanObjectNN
from datasets.shapenet_part import (CATEGORIES, NUM_PARTS, PART_OFFSETS, PARTS_PER_CATEGORY,
                                    ShapeNetPart)
from datasets.shapenet_render import DatasetWarning, ShapeNetRender
from datasets.transforms import eval_image_transform

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "data" / "download_data.sh"


# ------------------------------------------------------------------------------------------------
# Writers of the published formats
# ------------------------------------------------------------------------------------------------

def points(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)


def write_ply_binary(path, pts, endian="<", extra=True, face=True, pre_element=False, nl="\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "binary_little_endian" if endian == "<" else "binary_big_endian"
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    header = ["ply", f"format {fmt} 1.0", "comment made by a test"]
    if pre_element:
        header += ["element camera 1", "property float fx", "property uchar id"]
    header += [f"element vertex {len(pts)}", "property float x", "property float y",
               "property float z"]
    if extra:
        header += ["property double nx", "property uchar red"]
        fields += [("nx", "f8"), ("red", "u1")]
    if face:
        header += ["element face 0", "property list uchar int vertex_indices"]
    header.append("end_header")
    table = np.zeros(len(pts), dtype=[(n, endian + t) for n, t in fields])
    table["x"], table["y"], table["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    body = b""
    if pre_element:
        body += np.array([(1.5, 7)], dtype=[("fx", endian + "f4"), ("id", "u1")]).tobytes()
    path.write_bytes((nl.join(header) + nl).encode() + body + table.tobytes())


def write_ply_ascii(path, pts):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["ply", "format ascii 1.0", f"element vertex {len(pts)}", "property float x",
             "property float y", "property float z", "property uchar red", "element face 1",
             "property list uchar int vertex_indices", "end_header"]
    lines += [f"{x:.7g} {y:.7g} {z:.7g} 255" for x, y, z in pts]
    lines.append("3 0 1 2")
    path.write_text("\n".join(lines) + "\n")


def write_png_rgba(path, size=8, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size, size, 4), value, np.uint8)
    arr[..., 3] = 255
    arr[: size // 2, :, 3] = 0  # transparent background like the renderings
    Image.fromarray(arr, "RGBA").save(path)


def make_shapenet_render(root, n_points=32, views=3):
    """Two usable objects (binary and ASCII PLY), one cloud without images, one image folder
    without a cloud, one renderings.txt listing a missing view."""
    cls = "02691156"
    write_ply_binary(root / "ShapeNet" / cls / "objA.ply", points(n_points, 1))
    write_ply_ascii(root / "ShapeNet" / "03001627" / "objB.ply", points(n_points, 2))
    write_ply_binary(root / "ShapeNet" / cls / "objNoImg.ply", points(n_points, 3))
    (root / "ShapeNet" / cls / "._objA.ply").write_bytes(b"macos junk")
    ra = root / "ShapeNetRendering" / cls / "objA" / "rendering"
    for v in range(views):
        write_png_rgba(ra / f"{v:02d}.png", value=40 * v)
    (ra / "renderings.txt").write_text("\n".join(f"{v:02d}.png" for v in range(views + 1)) + "\n")
    meta = "\n".join("30.0 25.0 0 0.8 25" for _ in range(views))
    (ra / "rendering_metadata.txt").write_text(meta)
    rb = root / "ShapeNetRendering" / "03001627" / "objB" / "rendering"
    write_png_rgba(rb / "00.png", value=200)
    write_png_rgba(root / "ShapeNetRendering" / cls / "objNoPly" / "rendering" / "00.png")
    return root


def write_h5(path, **arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)


def make_modelnet40(root, n_per_file=(3, 2), n_test=2, p=16, names=40):
    d = root / "modelnet40_ply_hdf5_2048"
    train_files = []
    for i, n in enumerate(n_per_file):
        write_h5(d / f"ply_data_train{i}.h5", data=points(n * p, i).reshape(n, p, 3),
                 label=(np.arange(n) % names).astype(np.uint8).reshape(n, 1),
                 normal=np.zeros((n, p, 3), np.float32), faceId=np.zeros((n, p), np.int32))
        train_files.append(f"data/modelnet40_ply_hdf5_2048/ply_data_train{i}.h5")
    write_h5(d / "ply_data_test0.h5", data=points(n_test * p, 9).reshape(n_test, p, 3),
             label=np.full((n_test, 1), names - 1, np.uint8),
             normal=np.zeros((n_test, p, 3), np.float32), faceId=np.zeros((n_test, p), np.int32))
    (d / "shape_names.txt").write_text("\n".join(f"class{i}" for i in range(names)) + "\n")
    (d / "train_files.txt").write_text("\n".join(train_files) + "\n")
    (d / "test_files.txt").write_text("data/modelnet40_ply_hdf5_2048/ply_data_test0.h5\n")
    return d


def write_scanobjectnn(path, n=4, p=16, seed=0, label_shift=0):
    write_h5(path, data=points(n * p, seed).reshape(n, p, 3),
             label=((np.arange(n) + label_shift) % 15).astype(np.int64),
             mask=np.zeros((n, p), np.int64))


def make_scanobjectnn(root, official=False):
    d = root / "ScanObjectNN" / "main_split"
    tr, te = (("training_objectdataset.h5", "test_objectdataset.h5") if official
              else ("train.h5", "test.h5"))
    write_scanobjectnn(d / tr, n=5)
    write_scanobjectnn(d / te, n=3, seed=1)
    return d


def part_ids_for(category, p, seed=0):
    rng = np.random.default_rng(seed)
    return PART_OFFSETS[category] + rng.integers(0, PARTS_PER_CATEGORY[category], size=p)


def make_shapenet_part(root, p=16):
    d = root / "shapenet_part_seg_hdf5_data"
    for name, cats in (("ply_data_train0.h5", [0, 10, 15]), ("ply_data_train1.h5", [4]),
                       ("ply_data_val0.h5", [10]), ("ply_data_test0.h5", [0, 15])):
        n = len(cats)
        write_h5(d / name, data=points(n * p, n).reshape(n, p, 3),
                 label=np.array(cats, np.uint8).reshape(n, 1),
                 pid=np.stack([part_ids_for(c, p, i) for i, c in enumerate(cats)]).astype(np.uint8))
    (d / "all_object_categories.txt").write_text(
        "\n".join(f"{c}\t{i:08d}" for i, c in enumerate(CATEGORIES)) + "\n")
    return d


# ------------------------------------------------------------------------------------------------
# PLY and PNG readers
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["le", "be", "ascii", "pre_element", "plain", "crlf"])
def test_read_ply_formats(tmp_path, kind):
    pts = points(20)
    f = tmp_path / "c.ply"
    if kind == "ascii":
        write_ply_ascii(f, pts)
    elif kind == "be":
        write_ply_binary(f, pts, endian=">")
    elif kind == "pre_element":
        write_ply_binary(f, pts, pre_element=True)
    elif kind == "plain":
        write_ply_binary(f, pts, extra=False, face=False)
    elif kind == "crlf":  # the plyfile package writes "\r\n" header lines
        write_ply_binary(f, pts, nl="\r\n")
    else:
        write_ply_binary(f, pts)
    out = read_ply_points(f)
    assert out.dtype == np.float32 and out.shape == (20, 3)
    np.testing.assert_allclose(out, pts, rtol=1e-6, atol=1e-6)


def test_read_ply_matches_trimesh_export(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    pts = points(50)
    f = tmp_path / "t.ply"
    trimesh.PointCloud(pts).export(f)
    np.testing.assert_allclose(read_ply_points(f), pts, rtol=1e-6)


@pytest.mark.parametrize("content, problem", [
    (b"not a ply at all", "not a PLY file"),
    (b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\n"
     b"property float y\nproperty float z\n", "no 'end_header'"),
    (b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\n"
     b"property float y\nend_header\n" + bytes(24), r"lacks properties \['z'\]"),
    (b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\n"
     b"property float y\nproperty float z\nend_header\n" + bytes(20), "truncated binary PLY"),
    (b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
     b"property float z\nend_header\n1 2 3\n4 5 6\n", "truncated ASCII PLY"),
    (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
     b"property float z\nend_header\n1 2 abc\n", "non-numeric"),
    (b"ply\nformat binary_middle_endian 1.0\nelement vertex 1\nend_header\n",
     "unsupported PLY format"),
    (b"ply\nformat ascii 1.0\nelement face 1\nproperty list uchar int v\nend_header\n3 0 1 2\n",
     "no 'vertex' element"),
    (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float16 x\nend_header\n",
     "unsupported PLY property"),
])
def test_read_ply_errors_name_file_and_problem(tmp_path, content, problem):
    f = tmp_path / "bad_cloud.ply"
    f.write_bytes(content)
    with pytest.raises(DatasetError, match=f"bad_cloud.ply.*{problem}"):
        read_ply_points(f)


def test_read_image_errors(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DatasetError, match="broken.png.*unreadable image"):
        read_image_rgb(bad)
    with pytest.raises(DatasetError, match="absent.png.*does not exist"):
        read_image_rgb(tmp_path / "absent.png")
    good = tmp_path / "ok.png"
    write_png_rgba(good)
    assert read_image_rgb(good).mode == "RGB"


# ------------------------------------------------------------------------------------------------
# ShapeNetRender
# ------------------------------------------------------------------------------------------------

def test_shapenet_render_index_items_and_report(tmp_path):
    make_shapenet_render(tmp_path)
    with pytest.warns(DatasetWarning, match="points_without_images=1.*objNoImg"):
        ds = ShapeNetRender(tmp_path, num_points=32, image_size=16)
    assert len(ds) == 2
    assert ds.classes == ["02691156", "03001627"]
    assert [o.object_id for o in ds.objects] == ["objA", "objB"]
    assert ds.objects[0].views == ("00.png", "01.png", "02.png")  # from renderings.txt
    assert ds.skipped == {"points_without_images": 1, "images_without_points": 1,
                          "listed_views_missing": 1, "empty_class_folders": 0}
    torch.manual_seed(0)
    pc1, pc2, img = ds[0]
    assert pc1.shape == pc2.shape == (32, 3) and pc1.dtype == torch.float32
    assert not torch.equal(pc1, pc2)  # two independent augmentations
    assert img.shape == (3, 16, 16) and img.dtype == torch.float32
    pc1b, _, imgb = ds[1]  # the ASCII cloud
    assert pc1b.shape == (32, 3)
    raw = ds.load_points(0)
    np.testing.assert_allclose(raw, points(32, 1), rtol=1e-6)


def test_shapenet_render_takes_first_num_points_and_rejects_fewer(tmp_path):
    make_shapenet_render(tmp_path)
    with pytest.warns(DatasetWarning):
        ds = ShapeNetRender(tmp_path, num_points=10, img_transform=lambda im, r: im)
    np.testing.assert_allclose(ds.load_points(0), points(32, 1)[:10], rtol=1e-6)
    with pytest.warns(DatasetWarning):
        ds = ShapeNetRender(tmp_path, num_points=64)
    with pytest.raises(DatasetError, match=r"objA.ply: has 32 points, fewer than num_points=64"):
        ds[0]


def test_shapenet_render_bad_files(tmp_path):
    make_shapenet_render(tmp_path)
    bad = points(32, 1)
    bad[5, 1] = np.nan
    write_ply_binary(tmp_path / "ShapeNet" / "02691156" / "objA.ply", bad)
    for v in range(3):  # every view of objA unreadable
        (tmp_path / "ShapeNetRendering" / "02691156" / "objA" / "rendering" / f"{v:02d}.png"
         ).write_bytes(b"not png")
    with pytest.warns(DatasetWarning):
        ds = ShapeNetRender(tmp_path, num_points=32)
    with pytest.raises(DatasetError,
                       match=r"objA.ply: NaN/inf coordinates \(first bad point index 5"):
        ds[0]
    write_ply_binary(tmp_path / "ShapeNet" / "02691156" / "objA.ply", points(32, 1))
    with pytest.raises(DatasetError, match=r"objA[/\\]rendering[/\\]0\d.png: unreadable image"):
        ds[0]


def test_shapenet_render_missing_and_empty(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"ShapeNet does not exist.*download_data.sh.*"
                                                   r"datasets.synthetic"):
        ShapeNetRender(tmp_path)
    (tmp_path / "ShapeNet").mkdir()
    with pytest.raises(FileNotFoundError, match="ShapeNetRendering does not exist"):
        ShapeNetRender(tmp_path)
    write_ply_binary(tmp_path / "ShapeNet" / "c" / "o.ply", points(8))
    (tmp_path / "ShapeNetRendering" / "c" / "o" / "rendering").mkdir(parents=True)
    with pytest.warns(DatasetWarning), pytest.raises(DatasetError, match="no usable object"):
        ShapeNetRender(tmp_path)


def _seed_worker(worker_id):
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)


def _epoch(ds, seed):
    torch.manual_seed(seed)
    loader = DataLoader(ds, batch_size=2, shuffle=True, num_workers=2,
                        worker_init_fn=_seed_worker, persistent_workers=False)
    return [tuple(t.clone() for t in batch) for batch in loader]


def test_shapenet_render_dataloader_workers_deterministic(tmp_path):
    make_shapenet_render(tmp_path)
    for i in range(2):  # 4 usable objects -> 2 batches, one per worker
        write_ply_binary(tmp_path / "ShapeNet" / "02691156" / f"extra{i}.ply", points(32, 1))
        write_png_rgba(tmp_path / "ShapeNetRendering" / "02691156" / f"extra{i}" / "rendering"
                       / "00.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        ds = ShapeNetRender(tmp_path, num_points=32, image_size=8)
    assert len(ds) == 4
    a, b, c = _epoch(ds, 1), _epoch(ds, 1), _epoch(ds, 2)
    assert len(a) == 2
    for batch in a:
        assert [t.shape for t in batch] == [(2, 32, 3), (2, 32, 3), (2, 3, 8, 8)]
    for x, y in zip(a, b):
        assert all(torch.equal(s, t) for s, t in zip(x, y))
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(a, c))


# ------------------------------------------------------------------------------------------------
# ModelNet40
# ------------------------------------------------------------------------------------------------

def test_modelnet40_reads_published_layout(tmp_path):
    make_modelnet40(tmp_path)
    ds = ModelNet40(tmp_path, "train", num_points=8)
    assert len(ds) == 5 and ds.data.shape == (5, 8, 3) and ds.data.dtype == np.float32
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == [0, 1, 2, 0, 1]
    assert ds.class_names[:2] == ["class0", "class1"] and len(ds.class_names) == 40
    x, y = ds[3]
    assert x.shape == (8, 3) and x.dtype == torch.float32 and y == 0
    np.testing.assert_allclose(x.numpy(), points(2 * 16, 1).reshape(2, 16, 3)[0, :8])
    test = ModelNet40(tmp_path, "test", num_points=None)
    assert test.data.shape == (2, 16, 3) and test.labels.tolist() == [39, 39]


def test_modelnet40_glob_without_file_lists(tmp_path):
    d = make_modelnet40(tmp_path)
    (d / "train_files.txt").unlink()
    (d / "shape_names.txt").unlink()
    ds = ModelNet40(tmp_path, "train", num_points=4)
    assert len(ds) == 5 and ds.class_names is None


def test_modelnet40_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="modelnet40_ply_hdf5_2048 does not exist.*"
                                                   "download_data.sh"):
        ModelNet40(tmp_path, "train")
    d = make_modelnet40(tmp_path)
    (d / "test_files.txt").unlink()
    (d / "ply_data_test0.h5").unlink()
    with pytest.raises(DatasetError, match=r"split 'test': no files matching .*ply_data_test\*.h5"):
        ModelNet40(tmp_path, "test")
    (d / "test_files.txt").write_text("data/modelnet40_ply_hdf5_2048/ply_data_test7.h5\n")
    with pytest.raises(DatasetNotFoundError, match="test_files.txt: lists .*ply_data_test7.h5"):
        ModelNet40(tmp_path, "test")
    (d / "test_files.txt").unlink()

    cases = [
        (dict(points=np.zeros((2, 16, 3), np.float32)), r"missing HDF5 key\(s\) \['data', "
         r"'label'\]; present keys: \['points'\]"),
        (dict(data=np.zeros((2, 16), np.float32), label=np.zeros((2, 1))),
         r"'data' has shape \(2, 16\), expected 3-D"),
        (dict(data=np.zeros((3, 16, 3), np.float32), label=np.zeros((2, 1), np.uint8)),
         "'label' has 2 entries but 'data' has 3 shapes"),
        (dict(data=np.zeros((2, 16, 3), np.float32), label=np.array([[1], [40]], np.uint8)),
         r"'label' value 40 at index 1 is out of range 0..39"),
        (dict(data=np.zeros((2, 16, 3), np.float32), label=np.zeros((2, 3), np.uint8)),
         r"'label' has shape \(2, 3\)"),
    ]
    nan = np.zeros((4, 16, 3), np.float32)
    nan[2, 3, 1] = np.inf
    cases.append((dict(data=nan, label=np.zeros((4, 1), np.uint8)),
                  "'data' has NaN/inf coordinates \\(first bad sample index 2"))
    for arrays, problem in cases:
        f = d / "ply_data_test0.h5"
        f.unlink(missing_ok=True)
        write_h5(f, **arrays)
        with pytest.raises(DatasetError, match=f"ply_data_test0.h5: {problem}"):
            ModelNet40(tmp_path, "test", num_points=8)
    write_h5(d / "ply_data_test0.h5", data=np.zeros((2, 4, 3), np.float32),
             label=np.zeros((2, 1), np.uint8))
    with pytest.raises(DatasetError, match="ply_data_test0.h5: 'data' holds 4 points per shape, "
                                           "fewer than the 8 requested"):
        ModelNet40(tmp_path, "test", num_points=8)
    (d / "ply_data_test0.h5").write_bytes(b"this is not hdf5")
    with pytest.raises(DatasetError, match="ply_data_test0.h5: cannot open as HDF5"):
        ModelNet40(tmp_path, "test")
    (d / "shape_names.txt").write_text("a\nb\n")
    with pytest.raises(DatasetError, match="ply_data_train0.h5: 'label' value 2 .* range 0..1"):
        ModelNet40(tmp_path, "train", num_points=8)
    with pytest.raises(ValueError, match="split must be"):
        ModelNet40(tmp_path, "val")


# ------------------------------------------------------------------------------------------------
# ScanObjectNN
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("official", [False, True])
def test_scanobjectnn_renamed_and_official_names(tmp_path, official):
    d = make_scanobjectnn(tmp_path, official=official)
    ds = ScanObjectNN(tmp_path, "train", num_points=8)
    assert ds.data.shape == (5, 8, 3) and ds.labels.tolist() == [0, 1, 2, 3, 4]
    assert ds.class_names == SCANOBJECTNN_CLASSES and len(ds.class_names) == 15
    x, y = ds[1]
    assert x.shape == (8, 3) and y == 1
    direct = ScanObjectNN(d, "test", num_points=8)  # root = the split folder itself
    assert len(direct) == 3 and direct.file.parent == d


def test_scanobjectnn_variants(tmp_path):
    base = tmp_path / "ScanObjectNN"
    write_scanobjectnn(base / "main_split_nobg" / "train.h5", n=2)
    write_scanobjectnn(base / "main_split_nobg" / "test.h5", n=2)
    write_scanobjectnn(base / "main_split" / "training_objectdataset_augmentedrot_scale75.h5", n=6)
    write_scanobjectnn(base / "main_split" / "test_objectdataset_augmentedrot_scale75.h5", n=1)
    assert len(ScanObjectNN(tmp_path, "train", variant="obj_only", num_points=8)) == 2
    assert len(ScanObjectNN(tmp_path, "train", variant="pb_t50_rs", num_points=8)) == 6
    with pytest.raises(DatasetNotFoundError, match="ScanObjectNN obj_bg: none of .*train.h5"):
        ScanObjectNN(tmp_path, "train", variant="obj_bg")
    with pytest.raises(DatasetNotFoundError, match="is the main_split folder, but variant "
                                                   "'obj_only' lives in main_split_nobg"):
        ScanObjectNN(base / "main_split", "train", variant="obj_only")
    with pytest.raises(ValueError, match="variant must be one of"):
        ScanObjectNN(tmp_path, "train", variant="hardest")


def test_scanobjectnn_errors(tmp_path):
    d = tmp_path / "ScanObjectNN" / "main_split"
    write_scanobjectnn(d / "train.h5", n=20)
    with pytest.raises(DatasetError, match=r"split 'test': no test.h5 or test_objectdataset.h5"):
        ScanObjectNN(tmp_path, "test")
    write_h5(d / "test.h5", data=np.zeros((2, 8, 3), np.float32), label=np.array([3, 15]),
             mask=np.zeros((2, 8)))
    with pytest.raises(DatasetError, match=r"test.h5: 'label' value 15 at index 1 is out of range "
                                           r"0..14"):
        ScanObjectNN(tmp_path, "test", num_points=8)
    (d / "test.h5").unlink()
    write_h5(d / "test.h5", data=np.zeros((2, 8, 3), np.float32), mask=np.zeros((2, 8)))
    with pytest.raises(DatasetError, match=r"test.h5: missing HDF5 key\(s\) \['label'\]; present "
                                           r"keys: \['data', 'mask'\]"):
        ScanObjectNN(tmp_path, "test", num_points=8)


# ------------------------------------------------------------------------------------------------
# ShapeNetPart
# ------------------------------------------------------------------------------------------------

def test_shapenet_part_constants():
    assert len(CATEGORIES) == 16 and sum(PARTS_PER_CATEGORY) == NUM_PARTS == 50
    assert list(PART_OFFSETS) == list(np.cumsum((0,) + PARTS_PER_CATEGORY[:-1]))


def test_shapenet_part_splits_and_items(tmp_path):
    make_shapenet_part(tmp_path)
    assert len(ShapeNetPart(tmp_path, "train", num_points=16)) == 4
    assert len(ShapeNetPart(tmp_path, "val", num_points=16)) == 1
    test = ShapeNetPart(tmp_path, "test", num_points=8)
    assert len(test) == 2 and test.seg_num_all == 50 and test.seg_start_index == 0
    tv = ShapeNetPart(tmp_path, "trainval", num_points=16)
    assert len(tv) == 5 and tv.labels.tolist() == [0, 10, 15, 4, 10]
    x, c, pid = tv[1]
    assert x.shape == (16, 3) and x.dtype == torch.float32 and c == 10
    assert pid.shape == (16,) and pid.dtype == torch.int64
    assert int(pid.min()) >= 30 and int(pid.max()) < 36
    moto = ShapeNetPart(tmp_path, "trainval", num_points=16, class_choice="motor")
    assert len(moto) == 2 and moto.seg_num_all == 6 and moto.seg_start_index == 30
    with pytest.raises(DatasetError, match="no shape of category 'mug'"):
        ShapeNetPart(tmp_path, "trainval", num_points=16, class_choice="mug")
    with pytest.raises(ValueError, match="class_choice must be one of"):
        ShapeNetPart(tmp_path, "trainval", num_points=16, class_choice="spaceship")


def test_shapenet_part_augment_keeps_point_part_pairs(tmp_path):
    make_shapenet_part(tmp_path)
    plain = ShapeNetPart(tmp_path, "trainval", num_points=16)
    aug = ShapeNetPart(tmp_path, "trainval", num_points=16, augment=True)
    torch.manual_seed(0)
    x, c, pid = aug[0]
    x0, c0, pid0 = plain[0]
    assert c == c0 and not torch.equal(x, x0)
    assert sorted(pid.tolist()) == sorted(pid0.tolist())
    # A positive per-axis scale plus shift keeps the order along x: sorting both clouds by x
    # aligns the points, which must then be an affine map per axis with the same part ids.
    xa, xo = x.numpy()[np.argsort(x.numpy()[:, 0])], x0.numpy()[np.argsort(x0.numpy()[:, 0])]
    for axis in range(3):
        design = np.c_[xo[:, axis], np.ones(len(xo))]  # (N, 2)
        (scale, shift), *_ = np.linalg.lstsq(design, xa[:, axis], rcond=None)
        np.testing.assert_allclose(design @ [scale, shift], xa[:, axis], atol=1e-5)
        assert 2 / 3 - 1e-5 <= scale <= 1.5 + 1e-5 and abs(shift) <= 0.2 + 1e-5
    np.testing.assert_array_equal(pid.numpy()[np.argsort(x.numpy()[:, 0])],
                                  pid0.numpy()[np.argsort(x0.numpy()[:, 0])])
    torch.manual_seed(0)
    x2, _, pid2 = aug[0]
    assert torch.equal(x, x2) and torch.equal(pid, pid2)


def test_shapenet_part_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="shapenet_part_seg_hdf5_data does not exist"):
        ShapeNetPart(tmp_path)
    d = make_shapenet_part(tmp_path)
    pid = np.stack([part_ids_for(0, 16), part_ids_for(4, 16)]).astype(np.uint8)
    pid[1, 7] = 3  # an airplane part id in a chair
    (d / "ply_data_test0.h5").unlink()
    write_h5(d / "ply_data_test0.h5", data=np.zeros((2, 16, 3), np.float32),
             label=np.array([[0], [4]], np.uint8), pid=pid)
    with pytest.raises(DatasetError, match=r"ply_data_test0.h5: shape index 1 \(category 4 chair\) "
                                           r"has part ids \[3\] outside its range 12..15"):
        ShapeNetPart(tmp_path, "test", num_points=16)
    (d / "ply_data_test0.h5").unlink()
    write_h5(d / "ply_data_test0.h5", data=np.zeros((2, 16, 3), np.float32),
             label=np.array([[0], [4]], np.uint8), pid=pid[:, :8])
    with pytest.raises(DatasetError, match=r"ply_data_test0.h5: 'pid' holds 8 points per shape"):
        ShapeNetPart(tmp_path, "test", num_points=16)
    with pytest.raises(DatasetError, match=r"ply_data_test0.h5: 'pid' has shape \(2, 8\), "
                                           r"expected \(2, 16\) to match 'data'"):
        ShapeNetPart(tmp_path, "test", num_points=4)
    (d / "ply_data_test0.h5").unlink()
    write_h5(d / "ply_data_test0.h5", data=np.zeros((1, 16, 3), np.float32),
             label=np.array([[16]], np.uint8), pid=np.zeros((1, 16), np.uint8))
    with pytest.raises(DatasetError, match="'label' value 16 at index 0 is out of range 0..15"):
        ShapeNetPart(tmp_path, "test", num_points=16)
    for f in d.glob("ply_data_test*.h5"):
        f.unlink()
    with pytest.raises(DatasetError, match="split 'test': no files matching"):
        ShapeNetPart(tmp_path, "test", num_points=16)


# ------------------------------------------------------------------------------------------------
# datasets.check
# ------------------------------------------------------------------------------------------------

def make_all(root, n_points=32):
    make_shapenet_render(root, n_points=n_points)
    make_modelnet40(root)
    make_scanobjectnn(root)
    make_shapenet_part(root)
    return root


def test_check_reports_all(tmp_path, capsys):
    make_all(tmp_path, n_points=2048)
    assert check_mod.main(["--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "shapenet_render: ok" in out and "objects: 2 usable in 2 classes" in out
    assert "points_without_images 1" in out and "images per object: min 1 / median 2 / max 3" in out
    assert "points per cloud (2 clouds read): min 2048" in out
    assert "modelnet40: ok" in out and "train: 5 clouds x 16 points" in out
    assert "class0: 2" in out
    assert "obj_bg train: 5 clouds" in out and "obj_only: not found" in out
    assert "shapenet_part: ok" in out and "motorbike: 1" in out


def test_check_missing_and_invalid(tmp_path, capsys):
    assert check_mod.main(["--root", str(tmp_path)]) == 1
    assert "no dataset found" in capsys.readouterr().err
    make_modelnet40(tmp_path)
    assert check_mod.main(["--root", str(tmp_path)]) == 0
    assert "scanobjectnn: not found" in capsys.readouterr().out
    assert check_mod.main(["--root", str(tmp_path), "--only", "modelnet40,scanobjectnn"]) == 1
    assert "requested dataset(s) not found" in capsys.readouterr().err
    write_h5(tmp_path / "modelnet40_ply_hdf5_2048" / "ply_data_train9.h5",
             data=np.zeros((1, 16, 3), np.float32))
    (tmp_path / "modelnet40_ply_hdf5_2048" / "train_files.txt").unlink()
    assert check_mod.main(["--root", str(tmp_path), "--only", "modelnet40"]) == 1
    err = capsys.readouterr().err
    assert "modelnet40: INVALID" in err and "ply_data_train9.h5: missing HDF5 key" in err


# ------------------------------------------------------------------------------------------------
# data/download_data.sh
# ------------------------------------------------------------------------------------------------

def make_archive(path, src_root, members, arc_prefix=""):
    with tarfile.open(path, "w:gz") as tar:
        for m in members:
            tar.add(src_root / m, arcname=arc_prefix + m)


def run_script(args, env_extra=None, path=None):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON",)}
    env["PYTHON"] = sys.executable
    if path is not None:
        env["PATH"] = path
    env.update(env_extra or {})
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """The five published archives, built from hand-made data (2048-point clouds)."""
    src = make_all(tmp_path_factory.mktemp("src"), n_points=2048)
    out = tmp_path_factory.mktemp("archives")
    make_archive(out / "shapenet.tar.gz", src, ["ShapeNet"])
    make_archive(out / "shapenet_render.tar.gz", src, ["ShapeNetRendering"])
    make_archive(out / "scanobjectnn.tar.gz", src, ["ScanObjectNN"])
    make_archive(out / "modelnet40.tar.gz", src, ["modelnet40_ply_hdf5_2048"])
    make_archive(out / "shapenet_part.tar.gz", src, ["shapenet_part_seg_hdf5_data"])
    return src, out


def _same_tree(a, b):
    """Same relative file names (macOS ._* files are excluded by the script) and contents."""
    def files(d):
        return {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob("*")
                if p.is_file() and not p.name.startswith("._")}
    return files(a) == files(b)


def test_download_script_archives_mode(archives, tmp_path):
    src, arch = archives
    # Variants: a wrapping folder with "./" prefixes, and ScanObjectNN without its top folder.
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("shapenet.tar.gz", "shapenet_render.tar.gz", "shapenet_part.tar.gz"):
        shutil.copy(arch / name, mixed / name)
    make_archive(mixed / "mn.tgz", src, ["modelnet40_ply_hdf5_2048"], arc_prefix="./wrap/")
    make_archive(mixed / "sonn.tar.gz", src / "ScanObjectNN", ["main_split"])
    root = tmp_path / "root"
    r = run_script(["--archives", str(mixed), "--root", str(root), "--skip-check"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "shapenet_render.tar.gz: holds ShapeNetRendering" in r.stdout
    assert "sonn.tar.gz: holds ScanObjectNN (main_split)" in r.stdout
    assert "all five dataset folders are present" in r.stdout
    for d in ("ShapeNet", "ShapeNetRendering", "ScanObjectNN", "modelnet40_ply_hdf5_2048",
              "shapenet_part_seg_hdf5_data"):
        assert _same_tree(src / d, root / d), d
    assert not (root / "wrap").exists() and not (root / "main_split").exists()


def test_download_script_fake_gdown_then_check(archives, tmp_path):
    src, arch = archives
    ids = ["1F9XIhF1qngLt-GtdnOnXiTsXH84YtrbC", "1UUY729-4VK_igjKUzLn_ygm3LxwW23pX",
           "1r3nJ6gEu6cL59h7cIfMrBeY5p1P_JiIV", "15lmtRaHvVIPLOp_o7rms8e6VQp_en8WF",
           "1-Yhqgi7KH6guIej_4X8pciiybQB4pBWQ"]
    store = tmp_path / "drive"
    store.mkdir()
    names = ["shapenet_part", "modelnet40", "shapenet", "scanobjectnn", "shapenet_render"]
    for i, n in zip(ids, names):  # a deliberately different order from the script's list
        (store / i).mkdir()
        shutil.copy(arch / f"{n}.tar.gz", store / i / f"{n}.tar.gz")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "gdown"
    fake.write_text('#!/bin/sh\n# fake gdown: --continue ID -O DIR/\n'
                    'cp "$FAKE_DRIVE/$2/"*.tar.gz "$4"\n')
    fake.chmod(0o755)
    root = tmp_path / "root"
    r = run_script(["--root", str(root)], env_extra={"FAKE_DRIVE": str(store)},
                   path=f"{bindir}:/usr/bin:/bin")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "shapenet_render: ok" in r.stdout and "shapenet_part: ok" in r.stdout
    assert _same_tree(src / "ShapeNet", root / "ShapeNet")
    assert len(list((root / "downloads").glob("*/.complete"))) == 5
    r2 = run_script(["--root", str(root), "--skip-check"], path=f"{bindir}:/usr/bin:/bin",
                    env_extra={"FAKE_DRIVE": "/nonexistent"})
    assert r2.returncode == 0 and r2.stdout.count("already downloaded") == 5


def test_download_script_failures(archives, tmp_path):
    _, arch = archives
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake_python = bindir / "nopython"
    fake_python.write_text("#!/bin/sh\nexit 1\n")
    fake_python.chmod(0o755)
    r = run_script(["--root", str(tmp_path / "r1")], env_extra={"PYTHON": str(fake_python)},
                   path="/usr/bin:/bin")
    assert r.returncode != 0 and "gdown not found" in r.stderr
    (bindir / "gdown").write_text("#!/bin/sh\nexit 1\n")
    (bindir / "gdown").chmod(0o755)
    r = run_script(["--root", str(tmp_path / "r2")], path=f"{bindir}:/usr/bin:/bin")
    assert r.returncode != 0
    assert "download of Drive file 1F9XIhF1qngLt-GtdnOnXiTsXH84YtrbC failed" in r.stderr
    junk_dir = tmp_path / "junk"
    (junk_dir / "stuff").mkdir(parents=True)
    (junk_dir / "stuff" / "readme.txt").write_text("x")
    make_archive(junk_dir / "other.tar.gz", junk_dir, ["stuff"])
    r = run_script(["--archives", str(junk_dir), "--root", str(tmp_path / "r3"), "--skip-check"])
    assert r.returncode != 0 and "unrecognised archive" in r.stderr and "other.tar.gz" in r.stderr
    (junk_dir / "other.tar.gz").write_bytes(b"truncated download")
    r = run_script(["--archives", str(junk_dir), "--root", str(tmp_path / "r3"), "--skip-check"])
    assert r.returncode != 0 and "cannot list" in r.stderr
    r = run_script(["--bogus"])
    assert r.returncode != 0 and "unknown argument" in r.stderr


# ------------------------------------------------------------------------------------------------
# The synthetic generator's tiny output
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic_root(request, tmp_path_factory):
    try:
        return request.getfixturevalue("tiny_data_root")
    except pytest.FixtureLookupError:
        from datasets.synthetic.generator import generate
        root = tmp_path_factory.mktemp("tiny_synthetic")
        generate(root, preset="tiny", seed=0, progress=False)
        return root


def test_loaders_read_synthetic_tiny(synthetic_root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        sr = ShapeNetRender(synthetic_root, img_transform=eval_image_transform(16))
    torch.manual_seed(0)
    pc1, pc2, img = sr[0]
    assert pc1.shape == (2048, 3) and img.shape == (3, 16, 16)
    for split in ("train", "test"):
        mn = ModelNet40(synthetic_root, split, num_points=1024)
        assert len(mn) > 0 and mn[0][0].shape == (1024, 3)
        so = ScanObjectNN(synthetic_root, split, num_points=1024)
        assert len(so) > 0 and so[0][0].shape == (1024, 3)
    for split in ("trainval", "test"):
        sp = ShapeNetPart(synthetic_root, split)
        assert len(sp) > 0 and sp[0][2].shape == (2048,)
    assert check_mod.main(["--root", str(synthetic_root)]) == 0


# ------------------------------------------------------------------------------------------------
# Truncated renderings (loaded in part, as the original's LOAD_TRUNCATED_IMAGES = True does)
# ------------------------------------------------------------------------------------------------

def write_truncated_png(path, size=32, keep=0.5, seed=0):
    """A valid RGBA PNG of random pixels with the last (1 - keep) of its bytes cut off."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 4), dtype=np.uint8)
    Image.fromarray(arr, "RGBA").save(path)
    raw = path.read_bytes()
    path.write_bytes(raw[:int(len(raw) * keep)])
    return arr


def test_load_image_truncated_png_loads_in_part(tmp_path):
    from PIL import ImageFile

    from datasets.io import load_image_rgb

    f = tmp_path / "cut.png"
    arr = write_truncated_png(f, size=32, keep=0.6)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    img, truncated = load_image_rgb(f)
    assert truncated and img.mode == "RGB" and img.size == (32, 32)
    got = np.asarray(img)
    np.testing.assert_array_equal(got[0], arr[0, :, :3])  # the first rows decode
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # restored after the tolerant retry
    with pytest.raises(DatasetError, match="cut.png: unreadable image .*truncated"):
        read_image_rgb(f)  # strict unless asked
    assert read_image_rgb(f, allow_truncated=True).size == (32, 32)
    good = tmp_path / "good.png"
    write_png_rgba(good)
    assert load_image_rgb(good)[1] is False
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(DatasetError, match="garbage.png: unreadable image"):
        load_image_rgb(garbage)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def make_truncated_render(root, n_objects=4, n_points=32):
    """``n_objects`` objects with one view each, every view a truncated PNG."""
    for i in range(n_objects):
        write_ply_binary(root / "ShapeNet" / "c" / f"o{i}.ply", points(n_points, i))
        write_truncated_png(root / "ShapeNetRendering" / "c" / f"o{i}" / "rendering" / "00.png",
                            seed=i)
    return root


def _log_warnings_to(log_dir, worker_id):
    """worker_init_fn: write every warning of this worker process to a file of its own."""
    warnings.simplefilter("always")

    def show(message, category, filename, lineno, file=None, line=None):
        with open(Path(log_dir) / f"worker-{os.getpid()}.txt", "a") as f:
            f.write(f"{category.__name__}: {message}\n")

    warnings.showwarning = show


def test_shapenet_render_truncated_views_warn_once_per_file_across_workers(tmp_path):
    import functools

    from datasets.shapenet_render import TruncatedImageWarning

    root = make_truncated_render(tmp_path / "root")
    ds = ShapeNetRender(root, num_points=32, image_size=8)
    with pytest.warns(TruncatedImageWarning, match=r"o0[/\\]rendering[/\\]00.png: truncated image"):
        ds[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncatedImageWarning)
        ds[0]  # the same file again: counted, not warned
    assert ds.image_stats() == {"truncated_loads": 2, "truncated_files": 1}
    ds.reset_image_stats()
    assert ds.image_stats() == {"truncated_loads": 0, "truncated_files": 1}

    logs = tmp_path / "logs"
    logs.mkdir()
    for epoch in range(2):  # workers are re-created every epoch
        loader = DataLoader(ds, batch_size=1, shuffle=False, num_workers=2,
                            worker_init_fn=functools.partial(_log_warnings_to, logs))
        assert sum(1 for _ in loader) == 4
    assert ds.image_stats() == {"truncated_loads": 8, "truncated_files": 4}
    lines = [ln for f in logs.iterdir() for ln in f.read_text().splitlines()]
    warned = sorted(ln.split("rendering")[0][-3:-1] for ln in lines
                    if ln.startswith("TruncatedImageWarning"))
    assert warned == ["o1", "o2", "o3"]  # o0 was warned about in this process already
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncatedImageWarning)
        ds[3]  # warned about in a worker: not again here


def test_shapenet_render_truncated_views_counted_with_spawned_workers(tmp_path):
    root = make_truncated_render(tmp_path)
    ds = ShapeNetRender(root, num_points=32, image_size=8)
    loader = DataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context="spawn")
    assert [b[2].shape for b in loader] == [(2, 3, 8, 8)] * 2
    assert ds.image_stats() == {"truncated_loads": 4, "truncated_files": 4}


def _loader_error(loader):
    """The message of the DatasetError a DataLoader raises, or None. The traceback is dropped so
    that the loader's workers shut down now: a traceback cycle would keep the iterator alive until
    a garbage collection, whose shutdown then waits out the workers' 5 s polling timeouts."""
    try:
        for _ in loader:
            pass
    except DatasetError as e:
        e.__traceback__ = None
        return str(e)
    return None


def test_shapenet_render_undecodable_view_raises_through_workers(tmp_path):
    import re

    root = make_truncated_render(tmp_path)
    (root / "ShapeNetRendering" / "c" / "o2" / "rendering" / "00.png").write_bytes(b"garbage")
    ds = ShapeNetRender(root, num_points=32, image_size=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        message = _loader_error(DataLoader(ds, batch_size=1, num_workers=2))
    assert message and re.search(r"o2[/\\]rendering[/\\]00.png: unreadable image", message)


# ------------------------------------------------------------------------------------------------
# ShapeNetPart file lists (read like ModelNet40's train_files.txt)
# ------------------------------------------------------------------------------------------------

def test_shapenet_part_reads_file_lists(tmp_path):
    d = make_shapenet_part(tmp_path)
    # Only train0 listed (with a directory prefix, as some copies have): train1 is not read.
    (d / "train_hdf5_file_list.txt").write_text("shapenet_part_seg_hdf5_data/ply_data_train0.h5\n")
    (d / "val_hdf5_file_list.txt").write_text("ply_data_val0.h5\n")
    tv = ShapeNetPart(tmp_path, "trainval", num_points=16)
    assert [f.name for f in tv.files] == ["ply_data_train0.h5", "ply_data_val0.h5"]
    assert tv.labels.tolist() == [0, 10, 15, 10]
    (d / "test_hdf5_file_list.txt").write_text("ply_data_test0.h5\nply_data_test1.h5\n")
    with pytest.raises(DatasetNotFoundError, match=r"test_hdf5_file_list.txt: lists "
                                                   r"'ply_data_test1.h5' but .*ply_data_test1.h5 "
                                                   r"does not exist"):
        ShapeNetPart(tmp_path, "test", num_points=16)


def test_shapenet_part_missing_val_split_is_an_error(tmp_path):
    d = make_shapenet_part(tmp_path)
    (d / "ply_data_val0.h5").unlink()
    assert len(ShapeNetPart(tmp_path, "train", num_points=16)) == 4
    with pytest.raises(DatasetNotFoundError, match=r"split 'val' \(part of 'trainval'\): no files "
                                                   r"matching .*ply_data_val\*.h5 \(no "
                                                   r"val_hdf5_file_list.txt\)"):
        ShapeNetPart(tmp_path, "trainval", num_points=16)
    (d / "val_hdf5_file_list.txt").write_text("ply_data_val0.h5\n")
    with pytest.raises(DatasetNotFoundError, match="val_hdf5_file_list.txt: lists"):
        ShapeNetPart(tmp_path, "trainval", num_points=16)


def test_file_lists_written_by_the_synthetic_generator_are_used(synthetic_root):
    d = synthetic_root / "shapenet_part_seg_hdf5_data"
    for split in ("train", "val", "test"):
        assert (d / f"{split}_hdf5_file_list.txt").is_file()
    tv = ShapeNetPart(synthetic_root, "trainval", num_points=16)
    assert [f.name for f in tv.files] == ["ply_data_train0.h5", "ply_data_val0.h5"]
    assert [f.name for f in ModelNet40(synthetic_root, "test", num_points=16).files] == [
        "ply_data_test0.h5"]


# ------------------------------------------------------------------------------------------------
# python -m datasets.check --full
# ------------------------------------------------------------------------------------------------

def make_damaged_root(root):
    """make_all with 8 views for objA: 07.png is garbage, 06.png truncated, objA.ply cut short,
    and an unlisted ModelNet40 file that is not HDF5."""
    make_all(root, n_points=2048)
    ra = root / "ShapeNetRendering" / "02691156" / "objA" / "rendering"
    for v in range(8):
        write_png_rgba(ra / f"{v:02d}.png", value=10 * v)
    (ra / "renderings.txt").write_text("\n".join(f"{v:02d}.png" for v in range(8)) + "\n")
    (ra / "07.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    write_truncated_png(ra / "06.png", keep=0.6)
    ply = root / "ShapeNet" / "02691156" / "objA.ply"
    ply.write_bytes(ply.read_bytes()[:-100])
    (root / "modelnet40_ply_hdf5_2048" / "ply_data_train9.h5").write_bytes(b"junk")
    return root


@pytest.mark.parametrize("workers", [1, 2])
def test_check_full_reports_every_bad_file(tmp_path, capsys, workers):
    root = make_damaged_root(tmp_path)
    assert check_mod.main(["--root", str(root), "--full", "--workers", str(workers)]) == 1
    out = capsys.readouterr().out
    ra = root / "ShapeNetRendering" / "02691156" / "objA" / "rendering"
    assert f"BAD {ra / '07.png'}: unreadable image" in out
    assert (f"BAD {root / 'ShapeNet' / '02691156' / 'objA.ply'}: truncated binary PLY: header "
            "declares 2048 'vertex' rows") in out
    assert (f"BAD {root / 'modelnet40_ply_hdf5_2048' / 'ply_data_train9.h5'}: cannot open as "
            "HDF5") in out
    assert f"truncated (loads in part, as in the original; not an error): {ra / '06.png'}" in out
    assert "shapenet_render: FAILED (--full)" in out and "modelnet40: FAILED (--full)" in out
    assert "full decode: 13 files (3 PLY, 10 PNG" in out and "2 bad, 1 truncated" in out
    assert "scanobjectnn: ok (--full)" in out and "shapenet_part: ok (--full)" in out


def test_check_sampled_mode_and_num_points(tmp_path, capsys):
    make_all(tmp_path, n_points=2048)
    assert check_mod.main(["--root", str(tmp_path), "--only", "shapenet_render"]) == 0
    assert "points per cloud (2 clouds read): min 2048" in capsys.readouterr().out
    assert check_mod.main(["--root", str(tmp_path), "--only", "shapenet_render",
                           "--num_points", "4096"]) == 1
    assert "objA.ply: has 2048 points, fewer than 4096" in capsys.readouterr().err
    assert check_mod.main(["--root", str(tmp_path), "--only", "shapenet_render", "--full",
                           "--workers", "1", "--num_points", "4096"]) == 1
    out = capsys.readouterr().out
    assert "objNoImg.ply: has 2048 points, fewer than --num_points 4096" in out
    assert out.count("fewer than --num_points 4096") == 3  # every PLY, paired or not


def test_check_sampled_mode_says_what_it_decoded_and_full_finds_a_later_view(tmp_path, capsys):
    make_shapenet_render(tmp_path, n_points=2048)
    bad = tmp_path / "ShapeNetRendering" / "02691156" / "objA" / "rendering" / "02.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")  # a later view: the sampled check reads view 00 only
    assert check_mod.main(["--root", str(tmp_path), "--only", "shapenet_render"]) == 0
    ok = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("shapenet_render: ok")]
    assert ok == ["shapenet_render: ok (sampled: decoded 2 of 2 clouds and 2 of 4 views (the first view of "
                  "each object read); --full decodes every file)"], ok
    assert check_mod.main(["--root", str(tmp_path), "--only", "shapenet_render", "--full", "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "shapenet_render: ok (index only, no file decoded here; --full decodes every file)" in out
    assert f"BAD {bad}: unreadable image" in out and "shapenet_render: FAILED (--full)" in out


# ------------------------------------------------------------------------------------------------
# Empty class folders, a data root that is a file, transposed clouds
# ------------------------------------------------------------------------------------------------

def test_shapenet_render_reports_empty_class_folders(tmp_path, capsys):
    make_shapenet_render(tmp_path, n_points=2048)
    (tmp_path / "ShapeNet" / "04379243").mkdir()
    (tmp_path / "ShapeNetRendering" / "03636649").mkdir()
    with pytest.warns(DatasetWarning, match=r"empty_class_folders=2 \(ShapeNet/04379243, "
                                            r"ShapeNetRendering/03636649\)"):
        ds = ShapeNetRender(tmp_path)
    assert ds.skipped["empty_class_folders"] == 2 and len(ds) == 2
    assert check_mod.main(["--root", str(tmp_path), "--only", "shapenet_render"]) == 0
    out = capsys.readouterr().out
    assert "empty_class_folders 2" in out and "ShapeNet/04379243" in out


def test_data_root_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "data.tar.gz"
    f.write_bytes(b"an archive, not a folder")
    file_msg = f"{f} is a file, not a directory; pass the folder that holds"
    cases = [(lambda r: ShapeNetRender(r), "ShapeNet/ and ShapeNetRendering/"),
             (lambda r: ModelNet40(r), "modelnet40_ply_hdf5_2048/"),
             (lambda r: ScanObjectNN(r), "ScanObjectNN/"),
             (lambda r: ShapeNetPart(r), "shapenet_part_seg_hdf5_data/")]
    for make, holds in cases:
        for root in (f, f / "sub"):
            with pytest.raises(DatasetNotFoundError) as e:
                make(root)
            msg = str(e.value)
            assert f"{f} is a file, not a directory" in msg, msg
            assert "; pass the folder that holds " + holds in msg, msg
            assert "datasets.synthetic" not in msg and "download_data.sh" not in msg
        with pytest.raises(DatasetNotFoundError, match=re_escape(file_msg)):
            make(f)
    assert check_mod.main(["--root", str(f)]) == 1
    captured = capsys.readouterr()
    assert file_msg in captured.err and "datasets.synthetic" not in captured.err


def re_escape(s):
    import re
    return re.escape(s)


def test_transposed_clouds_are_named(tmp_path):
    tr = np.zeros((2, 3, 16), np.float32)  # (N, 3, P)
    d = make_modelnet40(tmp_path)
    (d / "ply_data_test0.h5").unlink()
    write_h5(d / "ply_data_test0.h5", data=tr, label=np.zeros((2, 1), np.uint8))
    problem = (r"ply_data_test0.h5: 'data' has shape \(2, 3, 16\), i.e. \(N, 3, P\): the clouds "
               r"look transposed; expected \(N, P, 3\) = \(2, 16, 3\)")
    for n in (8, 1024, None):
        with pytest.raises(DatasetError, match=problem):
            ModelNet40(tmp_path, "test", num_points=n)
    so = tmp_path / "ScanObjectNN" / "main_split"
    write_h5(so / "train.h5", data=tr, label=np.zeros(2, np.int64), mask=np.zeros((2, 16)))
    for n in (1024, None):
        with pytest.raises(DatasetError, match=problem.replace("ply_data_test0", "train")):
            ScanObjectNN(tmp_path, "train", num_points=n)
    sp = make_shapenet_part(tmp_path)
    (sp / "ply_data_test0.h5").unlink()
    pid = np.stack([part_ids_for(0, 16), part_ids_for(4, 16)]).astype(np.uint8)  # (2, 16)
    write_h5(sp / "ply_data_test0.h5", data=tr, label=np.array([[0], [4]], np.uint8), pid=pid)
    for n in (2048, None):
        with pytest.raises(DatasetError, match=problem):
            ShapeNetPart(tmp_path, "test", num_points=n)
    (sp / "ply_data_test0.h5").unlink()
    write_h5(sp / "ply_data_test0.h5", data=tr.transpose(0, 2, 1),
             label=np.array([[0], [4]], np.uint8), pid=pid.T)  # pid (P, N)
    for n in (16, None):
        with pytest.raises(DatasetError, match=r"ply_data_test0.h5: 'pid' has shape \(16, 2\), i.e. "
                                               r"\(P, N\): it looks transposed; expected \(N, P\) "
                                               r"= \(2, 16\)"):
            ShapeNetPart(tmp_path, "test", num_points=n)


# ------------------------------------------------------------------------------------------------
# PLY through plyfile: files the former hand-written parser rejected or misread
# ------------------------------------------------------------------------------------------------

# plyfile 1.1.5 writes the scalar properties of a big-endian element that has list properties in
# native byte order, so the big-endian case has no list property in its vertex element.
@pytest.mark.parametrize("text, byte_order, vertex_list", [(False, "<", True), (False, ">", False),
                                                           (True, "=", True)])
def test_read_ply_written_by_plyfile_with_lists_before_vertex(tmp_path, text, byte_order,
                                                              vertex_list):
    import plyfile

    pts = points(30, 4)
    vertex = np.zeros(30, dtype=[("x", "f8"), ("y", "f8"), ("z", "f8")]
                      + ([("nbrs", "O")] if vertex_list else []))
    vertex["x"], vertex["y"], vertex["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    if vertex_list:
        vertex["nbrs"] = [np.arange(1 + i % 3, dtype=np.int32) for i in range(30)]  # a list property
    cams = np.zeros(2, dtype=[("ids", "O")])
    cams["ids"] = [np.array([1, 2, 3], np.int32), np.array([4], np.int32)]  # variable-length lists
    data = plyfile.PlyData([plyfile.PlyElement.describe(cams, "camera"),
                            plyfile.PlyElement.describe(vertex, "vertex")],
                           text=text, byte_order=byte_order,
                           comments=["a comment that mentions end_header"])
    f = tmp_path / "lists.ply"
    data.write(str(f))
    out = read_ply_points(f)
    assert out.dtype == np.float32 and out.shape == (30, 3)
    np.testing.assert_allclose(out, pts, rtol=1e-6)
