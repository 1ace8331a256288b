"""eval_svm.py and eval_fewshot.py end to end on the tiny synthetic set with checkpoints made here."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import eval_fewshot
import eval_svm
from datasets.classification import ClassificationData
from evaluation.features import feature_cache_key
from models import build_point_encoder
from util.checkpoint import CheckpointError, save_weights
from util.weights import load_point_encoder

NUM_POINTS = "128"
COMMON = ["--num_points", NUM_POINTS, "--batch_size", "16", "--device", "cpu", "--no_progress"]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A tiny DGCNN point encoder (k=5, emb_dims=32) saved with its sidecar meta."""
    torch.manual_seed(0)
    model = build_point_encoder("dgcnn", k=5, emb_dims=32)
    path = tmp_path_factory.mktemp("ckpt") / "point_encoder_best.pth"
    meta = {"model": "dgcnn", "model_args": {"k": 5, "emb_dims": 32}, "kind": "point_encoder"}
    save_weights(model.state_dict(), path, meta)
    return path


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("feature_cache")


def _svm(ckpt, data_root, tmp_path, *extra, name="out.json"):
    out = tmp_path / name
    result = eval_svm.main(
        ["--model_path", str(ckpt), "--data_root", str(data_root), "--output", str(out), *COMMON, *extra]
    )
    saved = json.loads(out.read_text())
    return result, saved


def test_svm_modelnet40_cached_equals_fresh(tiny_ckpt, tiny_data_root, tmp_path, capsys):
    cdir = tmp_path / "cache"
    fresh, _ = _svm(tiny_ckpt, tiny_data_root, tmp_path, "--dataset", "modelnet40", "--no_cache", name="a.json")
    first, _ = _svm(tiny_ckpt, tiny_data_root, tmp_path, "--dataset", "modelnet40", "--cache_dir", str(cdir),
                    name="b.json")
    cached, saved = _svm(tiny_ckpt, tiny_data_root, tmp_path, "--dataset", "modelnet40", "--cache_dir", str(cdir),
                         name="c.json")
    assert fresh["feature_cache"]["train"]["hit"] is False and fresh["feature_cache"]["train"]["path"] is None
    assert first["feature_cache"]["train"]["hit"] is False
    assert cached["feature_cache"]["train"]["hit"] and cached["feature_cache"]["test"]["hit"]
    assert cached["extract_seconds"] == 0.0
    assert fresh["accuracy"] == first["accuracy"] == cached["accuracy"]
    np.testing.assert_array_equal(fresh["predictions"], cached["predictions"])
    assert len(list(cdir.glob("modelnet40_*.npz"))) == 2
    # the JSON result labels the data and records the model and sizes
    assert saved["data"] == "synthetic" and saved["dataset"] == "modelnet40" and saved["C"] == 0.01
    assert saved["model_args"] == {"k": 5, "emb_dims": 32}
    assert saved["model_args_sources"]["k"] == "checkpoint meta"
    assert saved["feat_dim"] == 64 and saved["n_train"] > 0 and saved["n_test"] > 0
    assert 0.0 <= saved["accuracy"] <= 1.0 and 0.0 <= saved["mean_class_accuracy"] <= 1.0
    # A broken encoder (constant or NaN features) would sit at chance (1/6 on the tiny set); DGCNN features of
    # these synthetic shapes separate them well even untrained.
    assert saved["accuracy"] >= 2 / 6
    assert "linear-SVM accuracy" in capsys.readouterr().out


def test_cache_key_changes_with_model_args(tiny_ckpt, tiny_data_root):
    info = load_point_encoder(tiny_ckpt, verbose=False).info()
    fields = ClassificationData("modelnet40", tiny_data_root, num_points=128).cache_fields()
    key = feature_cache_key(info, fields, "train")
    assert key == feature_cache_key(info, fields, "train")
    other = dict(info, model_args={"k": 6, "emb_dims": 32})
    assert key != feature_cache_key(other, fields, "train")
    assert key != feature_cache_key(info, fields, "test")
    assert key != feature_cache_key(info, ClassificationData("modelnet40", tiny_data_root, num_points=64).cache_fields(),
                                     "train")


def test_svm_scanobjectnn_grid_and_plot(tiny_ckpt, tiny_data_root, tmp_path, cache_dir, capsys):
    _, saved = _svm(tiny_ckpt, tiny_data_root, tmp_path, "--dataset", "scanobjectnn", "--cache_dir", str(cache_dir),
                    "--C_grid", "0.01", "1", "--plot")
    out = capsys.readouterr().out
    assert "C = 0.01: accuracy" in out and "C = 1: accuracy" in out
    assert [r["C"] for r in saved["results"]] == [0.01, 1.0]
    assert saved["accuracy"] == max(r["accuracy"] for r in saved["results"]) and saved["C_selected_on_test"]
    assert saved["variant"] == "obj_bg" and saved["data"] == "synthetic"
    png = Path(saved["tsne_png"])
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"


def test_random_init_baseline(tiny_data_root, tmp_path, cache_dir):
    _, saved = _svm("random", tiny_data_root, tmp_path, "--k", "5", "--emb_dims", "16", "--cache_dir",
                    str(cache_dir))
    assert saved["checkpoint"] == "random" and saved["model_args"] == {"k": 5, "emb_dims": 16}
    assert saved["feat_dim"] == 32


def test_not_a_point_encoder_names_keys(tiny_data_root, tmp_path):
    from models import build_image_encoder

    img = tmp_path / "image_encoder.pth"
    save_weights(build_image_encoder("resnet18").state_dict(), img)
    with pytest.raises(CheckpointError, match=r"point-encoder checkpoint.*\n.*resnet\.conv1\.weight"):
        _svm(img, tiny_data_root, tmp_path)
    # with a sidecar saying what it is, the error says so before loading anything
    save_weights(build_image_encoder("resnet18").state_dict(), img, {"model": "resnet18", "kind": "image_encoder"})
    with pytest.raises(CheckpointError, match="kind='image_encoder'"):
        _svm(img, tiny_data_root, tmp_path)


def test_shape_mismatch_names_keys(tiny_ckpt, tiny_data_root, tmp_path):
    with pytest.raises(CheckpointError, match=r"shape mismatch.*conv5\.0\.weight"):
        _svm(tiny_ckpt, tiny_data_root, tmp_path, "--emb_dims", "48")


def _official_state_dict(repo_root, name: str) -> dict:
    """Random tensors with the keys and shapes of a published checkpoint (tests/data/official_state_dict_keys.json)."""
    spec = json.loads((repo_root / "tests" / "data" / "official_state_dict_keys.json").read_text())[name]
    g = torch.Generator().manual_seed(0)
    sd = {}
    for key, shape in spec:
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(100)
        elif key.endswith("running_var") or (key.endswith(".weight") and len(shape) == 1):
            sd[key] = 1.0 + 0.1 * torch.rand(shape, generator=g)
        else:
            sd[key] = 0.05 * torch.randn(shape, generator=g)
    return sd


def test_official_format_state_dict(tiny_data_root, tmp_path, cache_dir, repo_root):
    """The published dgcnn_cls_best.pth format (plain state dict, no sidecar) evaluates end to end."""
    path = tmp_path / "dgcnn_cls_best.pth"
    torch.save(_official_state_dict(repo_root, "dgcnn_cls"), path)
    result, saved = _svm(path, tiny_data_root, tmp_path, "--k", "5", "--num_points", "64", "--cache_dir",
                         str(cache_dir))
    assert saved["model"] == "dgcnn" and saved["model_args"] == {"k": 5, "emb_dims": 1024}
    assert saved["model_args_sources"] == {"model": "state-dict keys", "emb_dims": "state-dict shapes",
                                           "k": "command line"}
    assert saved["feat_dim"] == 2048


def test_official_partseg_files(tmp_path, repo_root):
    """The published part-seg pretraining file loads as dgcnn_seg; the fine-tuned one is refused by name."""
    pre = tmp_path / "dgcnn_partseg_pretrain.pth"
    torch.save(_official_state_dict(repo_root, "dgcnn_partseg_pretrain"), pre)
    encoder = load_point_encoder(pre, verbose=False)
    info, model = encoder.info(), encoder.model
    assert info["model"] == "dgcnn_seg" and info["model_args"]["emb_dims"] == 1024
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32)).shape == (2, 1024)
    fin = tmp_path / "dgcnn_partseg_best.pth"
    torch.save(_official_state_dict(repo_root, "dgcnn_partseg_finetune"), fin)
    with pytest.raises(CheckpointError, match=r"point-encoder checkpoint.*\n.*not in the model.*conv7"):
        load_point_encoder(fin, verbose=False)


def test_k_defaults_to_published_without_meta(tmp_path, capsys):
    path = tmp_path / "plain.pth"
    torch.save(build_point_encoder("dgcnn", k=5, emb_dims=32).state_dict(), path)
    info = load_point_encoder(path).info()
    assert info["model_args"] == {"k": 15, "emb_dims": 32}
    assert "k=15 (from published default" in capsys.readouterr().out


def _min_class_count(data_root) -> tuple[int, int, list]:
    from datasets.modelnet40 import ModelNet40

    ds = ModelNet40(data_root, split="train", num_points=64)
    counts = np.bincount(ds.labels)
    present = np.flatnonzero(counts)
    return int(counts[present].min()), len(present), ds.class_names


def test_fewshot_deterministic(tiny_ckpt, tiny_data_root, tmp_path, cache_dir, capsys):
    min_count, n_classes, _ = _min_class_count(tiny_data_root)
    assert min_count >= 2 and n_classes >= 2, "the tiny preset is too small for a few-shot episode"
    m_shot = max(1, min_count // 2)
    n_query = min_count - m_shot
    k_way = min(3, n_classes)
    args = ["--model_path", str(tiny_ckpt), "--data_root", str(tiny_data_root), "--cache_dir", str(cache_dir),
            "--k_way", str(k_way), "--m_shot", str(m_shot), "--n_query", str(n_query), "--n_runs", "4",
            "--seed", "3", *COMMON]
    r1 = eval_fewshot.main(args + ["--output", str(tmp_path / "f1.json")])
    r2 = eval_fewshot.main(args + ["--output", str(tmp_path / "f2.json"), "--plot"])
    out = capsys.readouterr().out
    assert r1["accs"] == r2["accs"] and len(r1["accs"]) == 4
    assert "±" in out and "original CrossPoint protocol" in out
    saved = json.loads((tmp_path / "f2.json").read_text())
    assert saved["data"] == "synthetic" and saved["query_split"] == "train" and saved["C"] == 1.0
    assert Path(saved["tsne_png"]).is_file()


def test_fewshot_query_split_test(tiny_ckpt, tiny_data_root, tmp_path, cache_dir, capsys):
    args = ["--model_path", str(tiny_ckpt), "--data_root", str(tiny_data_root), "--cache_dir", str(cache_dir),
            "--k_way", "2", "--m_shot", "1", "--n_query", "1", "--n_runs", "3", "--query_split", "test",
            "--output", str(tmp_path / "f.json"), *COMMON]
    r = eval_fewshot.main(args)
    assert r["query_split"] == "test" and "stricter protocol" in capsys.readouterr().out


def test_fewshot_too_few_samples_names_class(tiny_ckpt, tiny_data_root, tmp_path, cache_dir):
    from evaluation.fewshot import FewShotDataError

    min_count, _, names = _min_class_count(tiny_data_root)
    args = ["--model_path", str(tiny_ckpt), "--data_root", str(tiny_data_root), "--cache_dir", str(cache_dir),
            "--k_way", "2", "--m_shot", str(min_count), "--n_query", "1", "--n_runs", "2",
            "--output", str(tmp_path / "f.json"), *COMMON]
    with pytest.raises(FewShotDataError, match=r"class \d+ .*has \d+ training samples, needs m_shot \+ n_query"):
        eval_fewshot.main(args)


def test_svm_C_select_cv_records_the_choice(tiny_ckpt, tiny_data_root, tmp_path, cache_dir, capsys):
    _, saved = _svm(tiny_ckpt, tiny_data_root, tmp_path, "--cache_dir", str(cache_dir), "--C_grid", "0.01", "1",
                    "--C_select", "cv", "--cv_folds", "3", "--seed", "2")
    sel = saved["C_selection"]
    assert sel["method"] == "cv" and sel["folds"] == 3 and sel["seed"] == 2 and len(sel["fold_sizes"]) == 3
    assert set(sel["cv_accuracy"]) == {"0.01", "1.0"} and saved["C"] == sel["chosen_C"]
    assert not saved["C_selected_on_test"] and len(saved["results"]) == 1  # test is scored once
    assert "chosen by 3-fold CV on the train split" in capsys.readouterr().out
    # the default without a grid stays the original's fixed C
    _, fixed = _svm(tiny_ckpt, tiny_data_root, tmp_path, "--cache_dir", str(cache_dir), name="fixed.json")
    assert fixed["C_selection"]["method"] == "fixed" and fixed["C"] == 0.01


def test_fewshot_feeds_every_stored_point_by_default(tiny_ckpt, tiny_data_root, tmp_path, cache_dir, capsys):
    """The original eval_fewshot.py never used its --num_points flag: the whole stored cloud goes in."""
    common = ["--model_path", str(tiny_ckpt), "--data_root", str(tiny_data_root), "--cache_dir", str(cache_dir),
              "--k_way", "2", "--m_shot", "1", "--n_query", "1", "--n_runs", "3", "--batch_size", "16",
              "--device", "cpu", "--no_progress"]
    full = eval_fewshot.main(common + ["--output", str(tmp_path / "all.json")])
    saved = json.loads((tmp_path / "all.json").read_text())
    assert full["num_points"] == saved["num_points"] == 2048 and saved["num_points_requested"] == "all stored"
    assert saved["sem"] > 0 and "standard error of the mean" in capsys.readouterr().out
    cut = eval_fewshot.main(common + ["--num_points", "128", "--output", str(tmp_path / "cut.json")])
    assert cut["num_points"] == 128 and json.loads((tmp_path / "cut.json").read_text())["num_points_requested"] == 128
    assert eval_fewshot.build_parser().parse_args(["--model_path", "x"]).num_points is None
    assert eval_svm.build_parser().parse_args(["--model_path", "x"]).num_points == 1024


@pytest.fixture
def no_extraction(monkeypatch):
    """Fails a test that extracts features: every flag is checked before."""
    def extract(*args, **kwargs):
        raise AssertionError("features were extracted before the flags were checked")

    monkeypatch.setattr(eval_svm, "svm_on_dataset", extract)
    monkeypatch.setattr(eval_fewshot, "load_features", extract)


BAD_SVM_FLAGS = [
    (["--batch_size", "0"], "--batch_size must be at least 1, got 0"),
    (["--num_points", "0"], "--num_points must be at least 1, got 0"),
    (["--k", "0"], "--k must be at least 1, got 0"),
    (["--k", "300"], f"--num_points {NUM_POINTS} is smaller than --k 300"),
    (["--num_points", "4"], "--num_points 4 is smaller than k=5 (from checkpoint meta)"),  # k from the sidecar
    (["--C_grid", "0", "0.1"], "--C_grid must be a finite number > 0 (each value), got 0.0"),
    (["--C_grid", "0.1", "-1"], "--C_grid must be a finite number > 0 (each value), got -1.0"),
    (["--C_grid", "nan"], "--C_grid must be a finite number > 0 (each value), got nan"),
    (["--C", "0"], "--C must be a finite number > 0, got 0.0"),
    (["--C_grid", "0.1", "1", "--C_select", "cv", "--cv_folds", "1"], "--cv_folds must be at least 2, got 1"),
    (["--cv_folds", "0"], "--cv_folds must be at least 2, got 0"),
    (["--num_workers", "-1"], "--num_workers must be at least 0, got -1"),
    (["--dataset", "modelnet40", "--variant", "pb_t50_rs"], "--dataset modelnet40 has no variants"),
]


@pytest.mark.parametrize("flags, message", BAD_SVM_FLAGS)
def test_svm_bad_flags_are_one_line_before_extraction(tiny_ckpt, tiny_data_root, tmp_path, no_extraction, flags,
                                                      message):
    with pytest.raises(SystemExit) as info:
        eval_svm.main(["--model_path", str(tiny_ckpt), "--data_root", str(tiny_data_root), "--output",
                       str(tmp_path / "o.json"), *COMMON, *flags])
    assert message in str(info.value) and str(info.value).startswith("eval_svm.py: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("flags, message", [
    (["--k_way", "1"], "--k_way must be at least 2, got 1"),
    (["--m_shot", "0"], "--m_shot must be at least 1, got 0"),
    (["--n_query", "0"], "--n_query must be at least 1, got 0"),
    (["--n_runs", "0"], "--n_runs must be at least 1, got 0"),
    (["--svm_C", "-1"], "--svm_C must be a finite number > 0, got -1.0"),
    (["--batch_size", "0"], "--batch_size must be at least 1, got 0"),
    (["--k", "300"], f"--num_points {NUM_POINTS} is smaller than --k 300"),
    (["--num_points", "4"], "--num_points 4 is smaller than k=5 (from checkpoint meta)"),
    (["--dataset", "custom", "--variant", "obj_only"], "--dataset custom has no variants"),
])
def test_fewshot_bad_flags_are_one_line_before_extraction(tiny_ckpt, tiny_data_root, tmp_path, no_extraction, flags,
                                                          message):
    with pytest.raises(SystemExit) as info:
        eval_fewshot.main(["--model_path", str(tiny_ckpt), "--data_root", str(tiny_data_root), "--output",
                           str(tmp_path / "o.json"), *COMMON, *flags])
    assert message in str(info.value) and str(info.value).startswith("eval_fewshot.py: ")
    assert "\n" not in str(info.value)


def test_variant_defaults_to_obj_bg_on_scanobjectnn_only():
    for script in (eval_svm, eval_fewshot):
        args = script.build_parser().parse_args(["--model_path", "x", "--dataset", "scanobjectnn"])
        script.validate(args)
        assert args.variant == "obj_bg"
        args = script.build_parser().parse_args(["--model_path", "x"])
        script.validate(args)
        assert args.variant is None


@pytest.mark.parametrize("sidecar", [b"\x89PNG garbage \xff", b'{"model": "dgcnn", "kind": "point_enc', b"[1,2]"])
def test_svm_corrupt_sidecar_is_one_line_naming_it(tiny_ckpt, tiny_data_root, tmp_path, no_extraction, sidecar):
    from util.fileio import user_errors

    weights = tmp_path / "w.pth"
    weights.write_bytes(tiny_ckpt.read_bytes())
    (tmp_path / "w.json").write_bytes(sidecar)
    with pytest.raises(SystemExit) as info, user_errors(eval_svm.PROG):
        eval_svm.main(["--model_path", str(weights), "--data_root", str(tiny_data_root), *COMMON])
    assert str(tmp_path / "w.json") in str(info.value) and "\n" not in str(info.value)
