"""train_cls.py (classification fine-tuning) end to end on the tiny synthetic sets (CPU, tiny settings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import train_cls
from models import CLS_HEAD_PREFIXES, DGCNN_K, build_classifier, build_point_encoder
from util.checkpoint import load_pretrained, read_weights_meta, save_weights

FAST = ["--preset", "tiny", "--num_workers", "0", "--no_progress", "--print_freq", "1"]


def _argv(root, out, name, *extra):
    return ["--data_root", str(root), "--output_dir", str(out), "--exp_name", name, *FAST, *extra]


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """Every test and module fixture here runs with one intra-op thread."""


def test_defaults_are_the_dgcnn_recipe():
    args = train_cls.build_parser().parse_args([])
    assert (args.epochs, args.batch_size, args.test_batch_size, args.optimizer, args.lr, args.momentum, args.wd,
            args.eta_min, args.label_smoothing, args.dropout, args.num_points, args.model, args.k) == (
        250, 32, 16, "sgd", 0.1, 0.9, 1e-4, 1e-3, 0.2, 0.5, 1024, None, None)
    assert DGCNN_K == 20 and args.select_best_on == "val" and not args.no_augment


def test_classifier_keys_are_the_encoder_keys_plus_the_head():
    for name in ("dgcnn", "pointnet"):
        encoder = build_point_encoder(name, k=5, emb_dims=32)
        classifier = build_classifier(name, 7, k=5, emb_dims=32)
        extra = set(classifier.state_dict()) - set(encoder.state_dict())
        assert set(encoder.state_dict()) <= set(classifier.state_dict())
        assert extra and all(k.startswith(CLS_HEAD_PREFIXES) for k in extra)
        assert classifier(torch.randn(3, 3, 32)).shape == (3, 7)
        assert not any(p.requires_grad for p in classifier.inv_head.parameters())


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny pretraining output: point_encoder_best.pth with its sidecar, in a run directory."""
    run = tmp_path_factory.mktemp("pretrain_run")
    torch.manual_seed(0)
    encoder = build_point_encoder("dgcnn", k=8, emb_dims=64)
    save_weights(encoder.state_dict(), run / "checkpoints" / "point_encoder_best.pth",
                 {"model": "dgcnn", "model_args": {"k": 15, "emb_dims": 64}, "kind": "point_encoder"})
    return run


@pytest.fixture(scope="module")
def finetuned(tiny_data_root, tmp_path_factory, pretrained):
    out = tmp_path_factory.mktemp("cls_runs")
    with pytest.warns(UserWarning, match="k=15"):
        results = train_cls.main(_argv(tiny_data_root, out, "ft", "--pretrained_path", str(pretrained), "--k", "8",
                                       "--epochs", "2", "--plot"))
    return results, out / "ft", out


def test_finetuning_from_a_pretraining_run(finetuned, pretrained):
    results, run_dir, _ = finetuned
    log = (run_dir / "log.txt").read_text()
    assert "new keys: linear1.* (1), bn6.* (5), linear2.* (2), bn7.* (5), linear3.* (2)" in log
    assert results["init_weights"].endswith("point_encoder_best.pth") and results["selected_on"] == "val"
    test = results["test"]
    assert test["num_samples"] == 12 and len(test["confusion_matrix"]) == 6
    assert set(test) >= {"overall_accuracy", "mean_class_accuracy", "per_class_accuracy", "loss"}
    assert results["data"] == "synthetic" and results["voting"].startswith("none")
    assert results["plot"].endswith(train_cls.PLOT_FILE) and os.path.getsize(results["plot"]) > 1000
    # the encoder part of the kept classifier started from the pretrained weights' keys, and reloads strictly
    meta = read_weights_meta(run_dir / "checkpoints" / "classifier_best.pth")
    assert meta["kind"] == "classifier" and meta["model_args"]["num_classes"] == 6
    load_pretrained(build_classifier("dgcnn", 6, k=8, emb_dims=64), run_dir / "checkpoints" / "classifier_best.pth")


def test_eval_only_reproduces_the_final_numbers(finetuned, tiny_data_root):
    results, run_dir, out = finetuned
    evaluated = train_cls.main(_argv(tiny_data_root, out, "ev", "--eval", "--model_path",
                                     str(run_dir / "checkpoints" / "classifier_best.pth")))
    assert evaluated["test"] == results["test"]
    assert json.loads((out / "ev" / "results_eval.json").read_text())["test"] == results["test"]


def test_official_dgcnn_cls_file_fine_tunes(tiny_data_root, tmp_path, repo_root):
    """The published dgcnn_cls_best.pth (no sidecar, emb_dims 1024) loads with exactly the head new."""
    spec = json.loads((repo_root / "tests" / "data" / "official_state_dict_keys.json").read_text())["dgcnn_cls"]
    state = {key: torch.tensor(3) if key.endswith("num_batches_tracked") else 0.05 * torch.randn(shape)
             for key, shape in spec}
    path = tmp_path / "dgcnn_cls_best.pth"
    torch.save(state, path)
    results = train_cls.main(_argv(tiny_data_root, tmp_path, "off", "--pretrained_path", str(path), "--emb_dims",
                                   "1024", "--epochs", "1", "--max_steps_per_epoch", "1", "--num_points", "64"))
    assert results["model_args"]["emb_dims"] == 1024 and results["model_args"]["k"] == 8
    with pytest.raises(SystemExit, match="emb_dims 1024"):
        train_cls.main(_argv(tiny_data_root, tmp_path, "off2", "--pretrained_path", str(path), "--epochs", "1"))


@pytest.mark.parametrize("dataset, variant", [("scanobjectnn", "obj_bg"), ("scanobjectnn", "obj_only"),
                                              ("scanobjectnn", "pb_t50_rs")])
def test_every_scanobjectnn_variant(tiny_data_root, tmp_path, dataset, variant):
    results = train_cls.main(_argv(tiny_data_root, tmp_path, variant, "--dataset", dataset, "--variant", variant,
                                   "--epochs", "1", "--max_steps_per_epoch", "2"))
    assert results["dataset"] == dataset and results["variant"] == variant
    assert 0 < results["test"]["num_samples"] and results["model_args"]["num_classes"] == 15


@pytest.mark.slow
def test_resume_is_exact(tiny_data_root, tmp_path):
    common = ["--epochs", "2", "--max_steps_per_epoch", "2"]
    full = train_cls.main(_argv(tiny_data_root, tmp_path, "full", *common))
    train_cls.main(_argv(tiny_data_root, tmp_path, "cut", *common, "--stop_after", "1"))
    assert not (tmp_path / "cut" / "results.json").exists()
    resumed = train_cls.main(_argv(tiny_data_root, tmp_path, "cut", *common, "--resume", str(tmp_path / "cut")))
    assert resumed["test"] == full["test"] and resumed["best_epoch"] == full["best_epoch"]
    a = torch.load(tmp_path / "full" / "checkpoints" / "classifier_last.pth", weights_only=True)
    b = torch.load(tmp_path / "cut" / "checkpoints" / "classifier_last.pth", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_ddp_two_processes(tiny_data_root, tmp_path, repo_root):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "train_cls.py",
           *_argv(tiny_data_root, tmp_path, "ddp", "--epochs", "2", "--max_steps_per_epoch", "1", "--device", "cpu")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo_root)}
    proc = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "ddp"
    config = json.loads((run / "config.json").read_text())
    assert config["world_size"] == 2 and config["batch_size_per_rank"] == 4
    state = torch.load(run / "checkpoints" / "training_state_last.pt", weights_only=True)
    assert state["epoch"] == 1 and isinstance(state["rng"], list) and len(state["rng"]) == 2
    results = json.loads((run / "results.json").read_text())
    assert results["test"]["num_samples"] == 12


@pytest.mark.parametrize("dataset", ["modelnet40", "custom"])
def test_a_variant_for_a_set_without_variants_is_refused(tiny_data_root, tmp_path, dataset):
    with pytest.raises(SystemExit) as info:
        train_cls.main(_argv(tiny_data_root, tmp_path, "v", "--dataset", dataset, "--variant", "pb_t50_rs"))
    msg = str(info.value)
    assert f"--variant pb_t50_rs is a ScanObjectNN variant, but --dataset {dataset} has no variants" in msg
    assert "\n" not in msg and not (tmp_path / "v").exists()  # refused before the run directory exists


@pytest.mark.parametrize("sidecar", [b"\x00\x01garbage\xfe", b'{"model": "dgcnn", "model_args": {"k"', b"[1, 2]"])
def test_a_corrupt_sidecar_of_pretrained_path_is_one_line(tiny_data_root, tmp_path, pretrained, sidecar):
    weights = tmp_path / "point_encoder_best.pth"
    weights.write_bytes((pretrained / "checkpoints" / "point_encoder_best.pth").read_bytes())
    (tmp_path / "point_encoder_best.json").write_bytes(sidecar)
    with pytest.raises(SystemExit) as info:
        train_cls.main(_argv(tiny_data_root, tmp_path, "s", "--pretrained_path", str(weights)))
    assert str(tmp_path / "point_encoder_best.json") in str(info.value) and "\n" not in str(info.value)


def test_fewer_training_clouds_than_the_batch_is_one_line_and_leaves_no_run(tiny_data_root, tmp_path):
    """Issue 24: drop_last left no step, the run crashed with KeyError 'train/loss' and left its directory."""
    with pytest.raises(SystemExit, match=r"train_cls.py: the training set .* fewer than --batch_size 100000"):
        train_cls.main(_argv(tiny_data_root, tmp_path / "runs", "few", "--batch_size", "100000", "--epochs", "1"))
    assert not (tmp_path / "runs").exists()
