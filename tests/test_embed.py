"""embed.py: features of real meshes and point clouds, the linear-SVM evaluation's feature and preprocessing."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import embed
from datasets.classification import ClassificationData
from datasets.making.meshes import UnsupportedFilesWarning
from evaluation.features import ExtractOptions, load_features
from models import build_point_encoder
from util.checkpoint import save_weights
from util.weights import load_point_encoder

MESHES = "tests/data/meshes"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "point_encoder_best.pth"
    save_weights(build_point_encoder("dgcnn", k=5, emb_dims=32).state_dict(), path,
                 {"model": "dgcnn", "model_args": {"k": 5, "emb_dims": 32}, "kind": "point_encoder"})
    return path


def _embed(ckpt, out, *inputs, extra=()):
    return embed.main(["--model_path", str(ckpt), "--input", *map(str, inputs), "--output", str(out),
                       "--num_points", "256", "--device", "cpu", "--no_progress", *extra])


def test_published_h5_gives_the_svm_evaluation_features(ckpt, tiny_data_root, tmp_path):
    h5 = sorted((tiny_data_root / "modelnet40_ply_hdf5_2048").glob("ply_data_test*.h5"))
    out = _embed(ckpt, tmp_path / "f.npz", *h5)
    encoder = load_point_encoder(ckpt, verbose=False)
    data = ClassificationData("modelnet40", tiny_data_root, num_points=256)
    ref = load_features(encoder, data, ("test",), ExtractOptions("cpu", use_cache=False, progress=False))
    assert out["features"].shape == ref["test_f"].shape
    np.testing.assert_allclose(out["features"], ref["test_f"], rtol=1e-5, atol=1e-5)
    assert list(out["paths"][:2]) == [f"{h5[0]}[0]", f"{h5[0]}[1]"]


def test_real_meshes_and_point_clouds_every_format(ckpt, repo_root, tmp_path):
    src = repo_root / MESHES
    inputs = tmp_path / "in"
    shutil.copytree(src, inputs)
    np.save(inputs / "cloud.npy", np.random.default_rng(0).normal(size=(300, 3)))
    np.savez(inputs / "clouds.npz", points=np.random.default_rng(1).normal(size=(2, 400, 3)))
    (inputs / "broken.stl").write_bytes(b"solid x\nfacet normal 0 0 1\n outer loop\n vertex 0 0")
    (inputs / "garbage.obj").write_bytes(bytes(range(256)) * 4)
    with pytest.warns(UnsupportedFilesWarning, match="SOURCES.md"):  # the licence notes are not an input
        out = _embed(ckpt, tmp_path / "f.npz", inputs)
    saved = np.load(tmp_path / "f.npz")
    settings = json.loads(str(saved["settings"]))
    skipped = dict(map(tuple, settings["skipped"]))
    assert str(inputs / "broken.stl") in skipped and str(inputs / "garbage.obj") in skipped
    names = [str(p) for p in saved["paths"]]
    for expected in ("teapot.stl", "whitespace.off", "rabbit.obj", "fuze.ply", "nested.glb", "points_agisoft.xyz",
                     "points_bin.ply", "cloud.npy"):
        assert any(n.endswith(expected) for n in names), expected
    assert sum("clouds.npz[" in n for n in names) == 2
    assert saved["features"].shape == (len(names), 64) and np.isfinite(saved["features"]).all()
    assert settings["model_args"] == {"k": 5, "emb_dims": 32} and settings["num_points"] == 256
    assert out["features"].dtype == np.float32
    sizes = dict(zip(names, saved["num_points"].tolist()))
    assert sizes[str(inputs / "teapot.stl")] == 256 and sizes[str(inputs / "points_agisoft.xyz")] == 100  # all of them


def test_same_object_any_scale_same_feature_and_deterministic(ckpt, repo_root, tmp_path, monkeypatch):
    import trimesh

    import datasets.making.meshes

    mesh = trimesh.load(repo_root / MESHES / "teapot.stl")
    for scale, name in ((1e-3, "small.stl"), (1e4, "large.stl")):
        scaled = mesh.copy()
        scaled.apply_scale(scale)
        scaled.export(tmp_path / name)
    a = _embed(ckpt, tmp_path / "a.npz", tmp_path / "small.stl", tmp_path / "large.stl")
    b = _embed(ckpt, tmp_path / "b.npz", tmp_path / "small.stl", tmp_path / "large.stl")
    np.testing.assert_array_equal(a["features"], b["features"])  # deterministic for a seed
    # The sampling seed also depends on the file's bytes; with the same samples, the scale is normalised away.
    monkeypatch.setattr(datasets.making.meshes, "file_rng", lambda path, seed: np.random.default_rng(seed))
    c = _embed(ckpt, tmp_path / "c.npz", tmp_path / "small.stl", tmp_path / "large.stl")
    np.testing.assert_allclose(c["features"][0], c["features"][1], rtol=1e-4, atol=1e-5)


def test_nothing_usable_is_an_error(ckpt, tmp_path):
    (tmp_path / "bad.off").write_text("OFF\n3 1 0\n0 0 0\n")
    with pytest.raises(SystemExit, match="nothing to embed"):
        _embed(ckpt, tmp_path / "f.npz", tmp_path / "bad.off")


def _cloud(path):
    np.save(path, np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32))
    return path


@pytest.fixture
def no_reading(monkeypatch):
    """Fails a test that reads any input: flags and the output path are checked first."""
    def read(*args, **kwargs):
        raise AssertionError("inputs were read before the flags were checked")

    monkeypatch.setattr(embed, "read_encoder_clouds", read)


def test_existing_output_is_kept_unless_overwrite(ckpt, tmp_path, no_reading):
    cloud, out = _cloud(tmp_path / "c.npy"), tmp_path / "f.npz"
    out.write_bytes(b"an earlier result")
    with pytest.raises(SystemExit, match=r"--output .*f\.npz exists.*--overwrite") as info:
        _embed(ckpt, out, cloud)
    assert "\n" not in str(info.value) and out.read_bytes() == b"an earlier result"
    (tmp_path / "folder").mkdir()
    with pytest.raises(SystemExit, match=r"--output .*folder is a directory") as info:
        _embed(ckpt, tmp_path / "folder", cloud, extra=["--overwrite"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit, match=r"file is a file, not a folder"):
        _embed(ckpt, tmp_path / "file" / "f.npz", cloud)


def test_overwrite_replaces_the_output(ckpt, tmp_path):
    cloud, out = _cloud(tmp_path / "c.npy"), tmp_path / "f.npz"
    out.write_bytes(b"an earlier result")
    _embed(ckpt, out, cloud, extra=["--overwrite"])
    assert np.load(out)["features"].shape == (1, 64)


@pytest.mark.parametrize("flags, message", [
    (["--batch_size", "0"], "--batch_size must be at least 1, got 0"),
    (["--num_points", "0"], "--num_points must be at least 1, got 0"),
    (["--k", "0"], "--k must be at least 1, got 0"),
    (["--emb_dims", "-3"], "--emb_dims must be at least 1, got -3"),
    (["--k", "300"], "--num_points 256 is smaller than --k 300"),
    (["--num_points", "4"], "--num_points 4 is smaller than k=5 (from checkpoint meta)"),  # k from the sidecar
])
def test_bad_flags_are_one_line_before_any_input_is_read(ckpt, tmp_path, no_reading, flags, message):
    with pytest.raises(SystemExit) as info:
        _embed(ckpt, tmp_path / "f.npz", _cloud(tmp_path / "c.npy"), extra=flags)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_garbage_npy_and_npz_name_the_real_cause(ckpt, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _cloud(inputs / "good.npy")
    (inputs / "garbage.npy").write_bytes(np.random.default_rng(1).bytes(300))
    (inputs / "garbage.npz").write_bytes(np.random.default_rng(2).bytes(300))
    (inputs / "empty.npy").write_bytes(b"")
    np.save(inputs / "objects.npy", np.array([{"x": 1}], dtype=object))
    np.savez(inputs / "objects.npz", points=np.array([{"x": 1}], dtype=object))
    np.savez(inputs / "whole.npz", points=np.zeros((50, 3)))
    (inputs / "truncated.npz").write_bytes((inputs / "whole.npz").read_bytes()[:60])
    (inputs / "whole.npz").unlink()
    _embed(ckpt, tmp_path / "f.npz", inputs)
    skipped = dict(map(tuple, json.loads(str(np.load(tmp_path / "f.npz")["settings"]))["skipped"]))
    reasons = {name.rsplit("/", 1)[1]: reason for name, reason in skipped.items()}
    assert set(reasons) == {"garbage.npy", "garbage.npz", "empty.npy", "objects.npy", "objects.npz", "truncated.npz"}
    assert not any("allow_pickle" in r or "pickle.load" in r for r in reasons.values()), reasons
    assert "not a valid .npy file" in reasons["garbage.npy"] and "not a valid .npz file" in reasons["garbage.npz"]
    assert "not a valid .npz file" in reasons["truncated.npz"] and "empty (0 bytes)" in reasons["empty.npy"]
    assert "Python objects" in reasons["objects.npy"] and "Python objects" in reasons["objects.npz"]


@pytest.mark.parametrize("sidecar", [b"\xff\xfe\x00garbage", b'{"model": "dgcnn", "model_ar', b"[1, 2]",
                                     b'{"model_args": {"k": "five"}}', b'{"model": 3}'])
def test_corrupt_sidecar_is_one_line_naming_it(ckpt, tmp_path, sidecar):
    from util.fileio import user_errors

    weights = tmp_path / "w.pth"
    shutil.copyfile(ckpt, weights)
    (tmp_path / "w.json").write_bytes(sidecar)
    with pytest.raises(SystemExit) as info, user_errors(embed.PROG):
        _embed(weights, tmp_path / "f.npz", _cloud(tmp_path / "c.npy"))
    assert str(tmp_path / "w.json") in str(info.value) and "\n" not in str(info.value)


def test_a_cloud_with_fewer_points_than_k_is_skipped_with_its_reason(ckpt, tmp_path, capsys):
    """Issue 24: one small input stopped everything (exit 1, no .npz); it is skipped like any bad file."""
    good = _cloud(tmp_path / "good.npy")
    np.save(tmp_path / "small.npy", np.random.default_rng(1).normal(size=(3, 3)).astype(np.float32))
    out = _embed(ckpt, tmp_path / "f.npz", good, tmp_path / "small.npy")
    assert [p.endswith("good.npy") for p in out["paths"]] == [True]
    assert len(out["skipped"]) == 1 and "small.npy" in out["skipped"][0][0] and "fewer than k=5" in out["skipped"][0][1]
    assert "skipped" in capsys.readouterr().err and (tmp_path / "f.npz").is_file()
