"""The synthetic data generator (datasets/synthetic/: generator.py, shapes.py) and what it uses from
datasets/making/ (common.py, render.py)."""

import hashlib
import math
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from datasets.making import common
from datasets.making import render as rd
from datasets.synthetic import generator as syn
from datasets.synthetic import shapes as ss
from datasets.io import read_ply_points

TINY = syn.PRESETS["tiny"]


def _tree_hash(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _png_chunks(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    pos, names = 8, []
    while pos < len(raw):
        (length,) = struct.unpack(">I", raw[pos:pos + 4])
        names.append(raw[pos + 4:pos + 8])
        pos += 12 + length
    return names


# ----------------------------------------------------------------------------------------------
# Layouts and formats (on the shared session-scoped tiny data)
# ----------------------------------------------------------------------------------------------


def test_tiny_writes_every_layout(tiny_data_root):
    root = tiny_data_root
    for folder in ("ShapeNet", "ShapeNetRendering", "modelnet40_ply_hdf5_2048", "ScanObjectNN/main_split",
                   "ScanObjectNN/main_split_nobg", "shapenet_part_seg_hdf5_data"):
        assert (root / folder).is_dir(), folder
    marker = syn._read_json(root / syn.MARKER)
    assert marker["preset"] == "tiny" and marker["seed"] == 0 and marker["version"] == syn.VERSION
    assert set(marker["datasets"]) == set(syn.DATASETS)
    assert (root / "contact_sheet.png").is_file()
    assert not list(root.glob(syn.TMP_PREFIX + "*")) and not (root / syn.SWAP_NOTE).exists()
    sheet = Image.open(root / "contact_sheet.png")
    assert sheet.size[0] > 200 and sheet.size[1] > 200


def test_shapenet_render_layout(tiny_data_root):
    root = tiny_data_root
    synsets = sorted(p.name for p in (root / "ShapeNet").iterdir())
    assert synsets == sorted(s for f, s in syn.SHAPENET_RENDER_CLASSES if f in TINY.render_classes)
    assert sorted(p.name for p in (root / "ShapeNetRendering").iterdir()) == synsets
    for synset in synsets:
        plys = sorted((root / "ShapeNet" / synset).glob("*.ply"))
        assert len(plys) == TINY.render_objects
        renders = sorted(p.name for p in (root / "ShapeNetRendering" / synset).iterdir())
        assert renders == [p.stem for p in plys]
        for ply in plys:
            assert len(ply.stem) == 32 and all(c in "0123456789abcdef" for c in ply.stem)
            raw = ply.read_bytes()
            header = raw[:raw.index(b"end_header\n") + len(b"end_header\n")].decode("ascii")
            assert header.splitlines() == ["ply", "format binary_little_endian 1.0", "element vertex 2048",
                                           "property float x", "property float y", "property float z",
                                           "end_header"]
            assert len(raw) == len(header) + 2048 * 12
            pts = read_ply_points(ply)
            assert pts.shape == (2048, 3) and np.isfinite(pts).all()
            diag = np.linalg.norm(pts.max(0) - pts.min(0))
            assert 0.8 < diag <= 1.0 + 1e-5  # ShapeNetCore v1: bounding-box diagonal 1, centred
            assert np.abs((pts.max(0) + pts.min(0)) / 2).max() < 0.1


def test_renderings_are_real_views_of_the_cloud(tiny_data_root):
    """PNGs are 137x137 RGBA with a transparent background, metadata has the five 3D-R2N2 columns,
    and the point cloud projected with the metadata camera lands on the rendered silhouette."""
    root = tiny_data_root
    n_checked = 0
    for ply in sorted((root / "ShapeNet").rglob("*.ply")):
        rdir = root / "ShapeNetRendering" / ply.parent.name / ply.stem / "rendering"
        names = (rdir / "renderings.txt").read_text().split()
        assert names == [f"{i:02d}.png" for i in range(TINY.views)]
        meta = [line.split() for line in (rdir / "rendering_metadata.txt").read_text().splitlines()]
        assert len(meta) == len(names) and all(len(m) == 5 for m in meta)
        pts = read_ply_points(ply).astype(np.float64)
        for name, cols in zip(names, meta):
            az, el, inplane, ratio, fov = (float(c) for c in cols)
            assert 0 <= az < 360 and 25 <= el <= 30 and inplane == 0 and 0.7 <= ratio <= 0.9
            assert fov == pytest.approx(rd.BLENDER_FOV_DEG, abs=1e-6)
            png = rdir / name
            assert not {b"tIME", b"tEXt", b"zTXt", b"iTXt"} & set(_png_chunks(png))
            img = Image.open(png)
            assert img.mode == "RGBA" and img.size == (137, 137)
            alpha = np.asarray(img)[..., 3]
            assert alpha[0, 0] == alpha[0, -1] == alpha[-1, 0] == alpha[-1, -1] == 0
            assert 0.01 < (alpha > 0).mean() < 0.9
            center, basis = rd.camera_basis(az, el, ratio * rd.MAX_CAMERA_DISTANCE)
            c, r = rd.project(pts, center, basis, fov, 137)
            mask = alpha > 0
            grown = mask.copy()  # allow one pixel at the silhouette's edge
            grown[1:] |= mask[:-1]
            grown[:-1] |= mask[1:]
            grown[:, 1:] |= grown[:, :-1].copy()
            grown[:, :-1] |= grown[:, 1:].copy()
            ci, ri = np.floor(c).astype(int), np.floor(r).astype(int)
            inside = (ci >= 0) & (ci < 137) & (ri >= 0) & (ri < 137)
            assert inside.all()
            assert grown[ri, ci].mean() > 0.98
            n_checked += 1
    assert n_checked == len(TINY.render_classes) * TINY.render_objects * TINY.views


def test_modelnet40_format(tiny_data_root):
    folder = tiny_data_root / "modelnet40_ply_hdf5_2048"
    names = (folder / "shape_names.txt").read_text().splitlines()
    assert names == sorted(TINY.modelnet_classes)
    assert (folder / "train_files.txt").read_text() == "data/modelnet40_ply_hdf5_2048/ply_data_train0.h5\n"
    assert (folder / "test_files.txt").read_text() == "data/modelnet40_ply_hdf5_2048/ply_data_test0.h5\n"
    for split, per_class in (("train", TINY.modelnet[0]), ("test", TINY.modelnet[1])):
        with h5py.File(folder / f"ply_data_{split}0.h5", "r") as f:
            assert sorted(f.keys()) == ["data", "faceId", "label", "normal"]
            data, label, normal, face = f["data"][:], f["label"][:], f["normal"][:], f["faceId"][:]
        n = per_class * len(names)
        assert data.dtype == np.float32 and data.shape == (n, 2048, 3)
        assert label.dtype == np.uint8 and label.shape == (n, 1)
        assert normal.dtype == np.float32 and normal.shape == (n, 2048, 3)
        assert face.dtype == np.int32 and face.shape == (n, 2048) and face.min() >= 0
        assert np.bincount(label[:, 0], minlength=len(names)).tolist() == [per_class] * len(names)
        np.testing.assert_allclose(np.linalg.norm(normal, axis=2), 1.0, atol=1e-4)
        np.testing.assert_allclose(np.linalg.norm(data, axis=2).max(1), 1.0, atol=1e-5)  # unit sphere
        np.testing.assert_allclose(data.mean(1), 0.0, atol=1e-5)


def test_scanobjectnn_format(tiny_data_root):
    for variant in ("main_split", "main_split_nobg"):
        for split, per_class in (("train", TINY.scan[0]), ("test", TINY.scan[1])):
            with h5py.File(tiny_data_root / "ScanObjectNN" / variant / f"{split}.h5", "r") as f:
                assert sorted(f.keys()) == ["data", "label", "mask"]
                data, label, mask = f["data"][:], f["label"][:], f["mask"][:]
            n = per_class * TINY.scan_classes
            assert data.dtype == np.float32 and data.shape == (n, 2048, 3)
            assert label.ndim == 1 and label.shape == (n,) and np.issubdtype(label.dtype, np.integer)
            assert np.bincount(label).tolist() == [per_class] * TINY.scan_classes
            assert mask.shape == (n, 2048) and set(np.unique(mask)) <= {-1, 1}
            np.testing.assert_allclose(np.linalg.norm(data, axis=2).max(1), 1.0, atol=1e-5)
            obj = (mask == 1).mean(1)
            if variant == "main_split":  # object plus some background (floor, walls, clutter)
                assert (obj > 0.2).all() and (obj < 1).mean() > 0.5
            else:
                assert (obj == 1).all()


def test_scanobjectnn_pb_t50_rs_format(tiny_data_root):
    from datasets import check
    from datasets.scanobjectnn import ScanObjectNN

    folder = tiny_data_root / "ScanObjectNN" / "main_split"
    for split, per_class in (("train", TINY.scan[0]), ("test", TINY.scan[1])):
        name = {"train": "training", "test": "test"}[split] + "_objectdataset_augmentedrot_scale75.h5"
        with h5py.File(folder / name, "r") as f:
            assert sorted(f.keys()) == ["data", "label", "mask"]
            data, label, mask = f["data"][:], f["label"][:], f["mask"][:]
        with h5py.File(folder / f"{split}.h5", "r") as f:
            bg_label = f["label"][:]
        n = per_class * TINY.scan_classes * syn.PB_COPIES
        assert data.dtype == np.float32 and data.shape == (n, 2048, 3)
        assert label.dtype == np.int64 and label.shape == (n,) and mask.shape == (n, 2048)
        np.testing.assert_array_equal(label, np.repeat(bg_label, syn.PB_COPIES))  # 5 copies each
        assert set(np.unique(mask)) == {-1, 1}
        obj = (mask == 1).mean(1)
        assert (obj > 0).all() and (obj < 1).mean() > 0.5  # background points included
        radius = np.linalg.norm(data, axis=2).max(1)  # unit sphere, then scaled by 0.75..1.25
        assert (radius > 0.75 - 1e-5).all() and (radius < 1.25 + 1e-5).all()
        copies = data.reshape(-1, syn.PB_COPIES, 2048, 3)
        assert all(not np.allclose(c[0], c[k]) for c in copies for k in range(1, syn.PB_COPIES))
        ds = ScanObjectNN(tiny_data_root, split, variant="pb_t50_rs", num_points=1024)
        assert len(ds) == n and ds.file.name == name
    counts = syn._read_json(tiny_data_root / syn.MARKER)["datasets"]["scanobjectnn"]["variant_counts"]
    assert counts["pb_t50_rs"] == {"train": 5 * 6 * TINY.scan[0], "test": 5 * 6 * TINY.scan[1]}
    assert counts["obj_bg"] == counts["obj_only"] == {"train": 6 * TINY.scan[0], "test": 6 * TINY.scan[1]}
    lines = check.check_scanobjectnn(tiny_data_root)
    assert any(ln.startswith(f"  pb_t50_rs train: {counts['pb_t50_rs']['train']} clouds") for ln in lines)


def test_pb_t50_rs_copies_shift_rotate_and_scale_the_box():
    rng = np.random.default_rng(0)
    obj_pts = rng.uniform(-0.2, 0.2, size=(4000, 3)) + [0, 0.2, 0]  # object in its box
    floor = np.c_[rng.uniform(-1, 1, 3000), np.zeros(3000), rng.uniform(-1, 1, 3000)]
    scene = np.concatenate([obj_pts, floor])
    is_obj = np.r_[np.ones(4000, bool), np.zeros(3000, bool)]
    data, mask = syn._pb_t50_rs_copies(np.random.default_rng(0), scene, is_obj,
                                       np.array([-0.25, -0.01, -0.25]), np.array([0.25, 0.45, 0.25]))
    assert data.shape == (syn.PB_COPIES, 2048, 3) and mask.shape == (syn.PB_COPIES, 2048)
    offsets = [tuple(np.round(d[m == 1].mean(0), 3)) for d, m in zip(data, mask)]
    assert len(set(offsets)) == syn.PB_COPIES  # each copy its own box shift, rotation and scale
    assert max(np.linalg.norm(o) for o in offsets) > 0.05  # the object sits off-centre
    # the floor stays horizontal: rotation is about the up (y) axis only
    with_floor = [(d, m) for d, m in zip(data, mask) if (m == -1).sum() > 10]
    assert with_floor  # a box shifted upwards may leave the floor out, not every box does
    for d, m in with_floor:
        assert np.ptp(d[m == -1][:, 1]) < 1e-4


def test_old_marker_without_pb_t50_rs_regenerates_scanobjectnn(tmp_path):
    root = tmp_path / "old"
    syn.generate(root, preset="tiny", seed=0, progress=False, only="scanobjectnn")
    before = _tree_hash(root / "ScanObjectNN")
    # What a run before PB_T50_RS existed left: no PB files, no variant_counts in the marker.
    for f in (root / "ScanObjectNN" / "main_split").glob("*_augmentedrot_scale75.h5"):
        f.unlink()
    marker = syn._read_json(root / syn.MARKER)
    del marker["datasets"]["scanobjectnn"]["variant_counts"]
    (root / syn.MARKER).write_text(__import__("json").dumps(marker))
    out = syn.generate(root, preset="tiny", seed=0, progress=False, only="scanobjectnn")
    assert out["reused"] is False and _tree_hash(root / "ScanObjectNN") == before
    assert syn.generate(root, preset="tiny", seed=0, progress=False, only="scanobjectnn")["reused"]


def test_docstring_cites_files_inside_the_repository():
    assert "data/README.md" in syn.__doc__ and "/work/" not in syn.__doc__


def test_shapenet_part_format(tiny_data_root):
    folder = tiny_data_root / "shapenet_part_seg_hdf5_data"
    lines = (folder / "all_object_categories.txt").read_text().splitlines()
    assert lines[0] == "Airplane\t02691156" and lines[-1] == "Table\t04379243" and len(lines) == 16
    assert syn.PART_OFFSETS == (0, 4, 6, 8, 12, 16, 19, 22, 24, 28, 30, 36, 38, 41, 44, 47)
    for k, (name, _, family) in enumerate(syn.SHAPENET_PART_CATEGORIES):
        assert len(ss.FAMILIES[family][1]) == syn.PARTS_PER_CATEGORY[k], name
    for split, per_cat in zip(("train", "val", "test"), TINY.part):
        assert (folder / f"{split}_hdf5_file_list.txt").read_text() == f"ply_data_{split}0.h5\n"
        with h5py.File(folder / f"ply_data_{split}0.h5", "r") as f:
            assert sorted(f.keys()) == ["data", "label", "pid"]
            data, label, pid = f["data"][:], f["label"][:], f["pid"][:]
        n = per_cat * 16
        assert data.dtype == np.float32 and data.shape == (n, 2048, 3)
        assert label.dtype == np.uint8 and label.shape == (n, 1)
        assert pid.dtype == np.uint8 and pid.shape == (n, 2048)
        assert np.bincount(label[:, 0], minlength=16).tolist() == [per_cat] * 16
        lo = np.asarray(syn.PART_OFFSETS)[label[:, 0]][:, None]
        hi = lo + np.asarray(syn.PARTS_PER_CATEGORY)[label[:, 0]][:, None]
        assert ((pid >= lo) & (pid < hi)).all()


# ----------------------------------------------------------------------------------------------
# Determinism, reuse, atomicity
# ----------------------------------------------------------------------------------------------


def test_same_seed_identical_bytes_any_workers_and_other_seed_differs(tiny_data_root, tmp_path):
    ref = _tree_hash(tiny_data_root)
    again = _tree_hash(Path(syn.generate(tmp_path / "a", preset="tiny", seed=0, progress=False,
                                         workers=2)["root"]))
    assert again == ref  # byte-identical, including h5 files, PNGs and the marker; worker count irrelevant
    other = _tree_hash(Path(syn.generate(tmp_path / "b", preset="tiny", seed=1, progress=False)["root"]))
    assert other.keys() != ref.keys()  # object ids depend on the seed
    for rel in ("modelnet40_ply_hdf5_2048/ply_data_train0.h5", "ScanObjectNN/main_split/train.h5",
                "shapenet_part_seg_hdf5_data/ply_data_test0.h5"):
        assert other[rel] != ref[rel]


def test_reuse_conflict_and_force(tmp_path, capsys):
    root = tmp_path / "d"
    first = syn.generate(root, preset="tiny", seed=3, progress=False, only="modelnet40")
    assert first["reused"] is False and first["datasets"]["modelnet40"]["counts"] == {"train": 24, "test": 12}
    before = _tree_hash(root)
    again = syn.generate(root, preset="tiny", seed=3, progress=True, only=["modelnet40"])
    assert again["reused"] is True and "reusing" in capsys.readouterr().err
    assert _tree_hash(root) == before
    with pytest.raises(FileExistsError, match="--force"):
        syn.generate(root, preset="tiny", seed=4, progress=False, only="modelnet40")
    forced = syn.generate(root, preset="tiny", seed=4, progress=False, only="modelnet40", force=True)
    assert forced["reused"] is False and syn._read_json(root / syn.MARKER)["seed"] == 4
    with pytest.raises(ValueError, match="unknown dataset"):
        syn.generate(root, preset="tiny", seed=4, only="modelnet")
    with pytest.raises(ValueError, match="unknown preset"):
        syn.generate(root, preset="huge")


def test_foreign_folder_is_not_overwritten(tmp_path):
    root = tmp_path / "real"
    (root / "modelnet40_ply_hdf5_2048").mkdir(parents=True)
    (root / "modelnet40_ply_hdf5_2048" / "ply_data_train0.h5").write_bytes(b"real data")
    with pytest.raises(FileExistsError, match="modelnet40_ply_hdf5_2048"):
        syn.generate(root, preset="tiny", seed=0, progress=False, only="modelnet40")
    assert (root / "modelnet40_ply_hdf5_2048" / "ply_data_train0.h5").read_bytes() == b"real data"


def test_killed_run_leaves_nothing_complete_looking(tmp_path, monkeypatch):
    root = tmp_path / "k"
    calls = {"n": 0}
    real_write = syn.write_h5

    def failing_write(path, arrays):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated kill while writing")
        real_write(path, arrays)

    monkeypatch.setattr(syn, "write_h5", failing_write)  # the ScanObjectNN files
    monkeypatch.setattr(common, "write_h5", failing_write)  # the split files of ModelNet40
    with pytest.raises(RuntimeError, match="simulated kill"):
        syn.generate(root, preset="tiny", seed=0, progress=False, only="modelnet40,scanobjectnn")
    assert not (root / syn.MARKER).exists()
    assert sorted(p.name for p in root.iterdir()) == []  # nothing was moved into place, temp dir removed
    monkeypatch.setattr(syn, "write_h5", real_write)
    monkeypatch.setattr(common, "write_h5", real_write)
    # what a SIGKILL leaves behind: a temp dir of a dead process, and folders listed in the swap note
    stale = root / f"{syn.TMP_PREFIX}999999999"
    (stale / "modelnet40_ply_hdf5_2048").mkdir(parents=True)
    (root / "ScanObjectNN").mkdir()
    (root / syn.SWAP_NOTE).write_text('{"folders": ["ScanObjectNN"]}')
    out = syn.generate(root, preset="tiny", seed=0, progress=False, only="modelnet40,scanobjectnn")
    assert out["reused"] is False and (root / syn.MARKER).exists()
    assert not stale.exists() and not (root / syn.SWAP_NOTE).exists()
    assert sorted(syn._read_json(root / syn.MARKER)["datasets"]) == ["modelnet40", "scanobjectnn"]


def test_cli_main(tmp_path, capsys):
    summary = syn.main(["--root", str(tmp_path / "c"), "--preset", "tiny", "--only", "scanobjectnn", "--quiet"])
    assert summary["datasets"]["scanobjectnn"]["counts"] == {"train": 24, "test": 12}
    assert "scanobjectnn" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# Geometry and learnability
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(ss.FAMILIES))
def test_every_family_builds_closed_outward_parts(family):
    for i in range(3):
        mesh = ss.build_object(family, np.random.default_rng([i, 11]))
        assert np.isfinite(mesh.vertices).all() and mesh.faces.max() < len(mesh.vertices)
        assert mesh.face_part.max() < len(mesh.part_names)
        a, b, c = (mesh.vertices[mesh.faces[:, k]] for k in range(3))
        assert np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6 > 0  # outward winding


def test_primitives_are_outward_and_render_matches_geometry():
    for v, f in (ss.box((0, 0, 0), (1, 2, 3)), ss.frustum((0, 0, 0), (0, 1, 1), 0.3, 0.1), ss.torus((0, 0, 0), 1, 0.2),
                 ss.lathe([(0, 0), (1, 0), (1, 1), (0.9, 1), (0.9, 0.1), (0, 0.1)]),
                 ss.planform((0, 0, 0), (1, 0, 0), 1, (0, 0, -2), 0.3, 0.5, 0.1, 0.05)):
        a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
        assert np.einsum("ij,ij->i", a, np.cross(b, c)).sum() > 0
    # a sphere of radius 0.3 seen from distance 1.4 covers a disc of known angular radius
    v, f = ss.ellipsoid((0, 0, 0), (0.3, 0.3, 0.3), n_lat=24, n_lon=48)
    img = rd.render_view(rd.RayCaster(v, f), v, common.face_normals(v, f), np.full((len(f), 3), 0.8),
                         30.0, 20.0, 1.4, 40.0, 137)
    area = (img[..., 3] > 0).sum()
    r_pix = math.tan(math.asin(0.3 / 1.4)) / math.tan(math.radians(20)) * 68.5
    assert area == pytest.approx(math.pi * r_pix ** 2, rel=0.05)


def test_classes_learnable_from_structure_not_from_one_scalar():
    """A crude shape descriptor separates the classes, single scalars (size, extents) do not."""
    classes = ["airplane", "chair", "table", "lamp", "sofa", "bottle", "bowl", "bed"]
    feats, ext, labels, splits = [], [], [], []
    for c, name in enumerate(classes):
        for i in range(14):
            d = syn._modelnet_cloud(7, dict(syn.MODELNET_SHARED + syn.MODELNET_UNSEEN)[name],
                                    "train" if i < 9 else "test", i)["data"][:512]
            r = np.linalg.norm(d - d.mean(0), axis=1)
            feats.append(np.histogram(r / r.max(), bins=12, range=(0, 1))[0] / len(r))
            ext.append(d.max(0) - d.min(0))
            labels.append(c)
            splits.append(i < 9)
    feats, ext, labels, splits = map(np.asarray, (feats, ext, labels, splits))

    def one_nn(x):
        xtr, xte, ytr = x[splits], x[~splits], labels[splits]
        pred = ytr[np.argmin(((xte[:, None] - xtr[None]) ** 2).sum(-1), 1)]
        return (pred == labels[~splits]).mean()

    chance = 1 / len(classes)
    assert one_nn(feats) > 3 * chance
    for k in range(3):  # each bounding-box extent alone is a poor classifier
        assert one_nn(ext[:, k:k + 1]) < 0.6
    # and the per-class extent ranges overlap between many pairs of classes
    lo = np.array([ext[labels == c].min(0) for c in range(len(classes))])
    hi = np.array([ext[labels == c].max(0) for c in range(len(classes))])
    overlap = [(a, b) for a in range(len(classes)) for b in range(a + 1, len(classes))
               if (np.minimum(hi[a], hi[b]) > np.maximum(lo[a], lo[b])).all()]
    assert len(overlap) >= 5


def test_large_splits_are_chunked_into_2048_shape_files(tmp_path):
    arrays = {"data": np.zeros((12, 4, 3), np.float32), "label": np.arange(12, dtype=np.uint8)[:, None]}
    names = syn.write_split_files(tmp_path, "ply_data_train", arrays, per_file=5)
    assert names == ["ply_data_train0.h5", "ply_data_train1.h5", "ply_data_train2.h5"]
    with h5py.File(tmp_path / names[-1], "r") as f:
        assert f["data"].shape == (2, 4, 3) and f["label"][:, 0].tolist() == [10, 11]
