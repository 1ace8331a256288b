"""train_cls.py (classification fine-tuning) end to end on the tiny synthetic sets (CPU, tiny settings)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch

import train_cls
from util.presets import RECIPES
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
    assert (args.recipe, args.schedule, args.lr_order, args.warmup_epochs, args.grad_clip, args.no_decay_1d,
            args.augmentation) == ("dgcnn", "cosine", "reference", 0, None, False, "dgcnn")


def test_recipe_help_names_what_is_not_reproduced_and_the_selection_on_test():
    text = " ".join(train_cls.build_parser().format_help().split())
    assert "drop_path_rate 0.1" in text and "layer-wise" in text and "voting is not reproduced" in text
    assert "--select_best_on test, which selects on the test set" in text and "--select_best_on val" in text


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


def _metrics(run_dir):
    """The epoch records of metrics.jsonl."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "epoch/epoch" in r]


def test_dgcnn_lr_per_epoch_is_the_references(tiny_data_root, tmp_path):
    """Issue 22: WangYueFt/dgcnn main.py calls scheduler.step() first in each epoch, so epoch 0 trains at the
    once-stepped lr and the last epoch at eta_min; metrics.jsonl's lr is the lr each epoch trained at."""
    train_cls.main(_argv(tiny_data_root, tmp_path, "lr", "--epochs", "4", "--max_steps_per_epoch", "1"))
    logged = [m["epoch/lr"] for m in _metrics(tmp_path / "lr")]
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4, eta_min=1e-3)
    reference = []
    with warnings.catch_warnings():  # torch warns about a scheduler step before an optimizer step
        warnings.simplefilter("ignore")
        for _ in range(4):
            sched.step()  # main.py:72, the first statement of the epoch
            reference.append(opt.param_groups[0]["lr"])
    assert logged == pytest.approx(reference, rel=1e-12, abs=0) and logged[-1] == pytest.approx(1e-3)
    config = json.loads((tmp_path / "lr" / "config.json").read_text())
    assert (config["recipe"], config["lr_order"], config["recipe_overrides"]) == ("dgcnn", "reference", {"epochs": 4})


def test_pointmae_warmup_lrs_and_config(tiny_data_root, tmp_path):
    """Point-MAE's timm warm-up cosine with its runner's order (step(epoch) after each epoch): epochs 0 and 1 at
    warmup_lr, then the warm-up's t=1, then the cosine at t=2, 3 (values worked out by hand)."""
    train_cls.main(_argv(tiny_data_root, tmp_path, "pm", "--recipe", "pointmae", "--epochs", "5",
                         "--warmup_epochs", "2", "--lr", "1e-3", "--max_steps_per_epoch", "1"))
    logged = [m["epoch/lr"] for m in _metrics(tmp_path / "pm")]
    assert logged == pytest.approx([1e-6, 1e-6, 5.005e-4, 6.548539886902864e-4, 3.461460113097139e-4], rel=1e-12)
    config = json.loads((tmp_path / "pm" / "config.json").read_text())
    assert {k: config[k] for k in ("recipe", "optimizer", "wd", "no_decay_1d", "schedule", "warmup_epochs",
                                   "warmup_lr", "eta_min", "grad_clip", "label_smoothing", "augmentation",
                                   "momentum")} == {
        "recipe": "pointmae", "optimizer": "adamw", "wd": 0.05, "no_decay_1d": True, "schedule": "warmup_cosine",
        "warmup_epochs": 2, "warmup_lr": 1e-6, "eta_min": 1e-6, "grad_clip": 10.0, "label_smoothing": 0.0,
        "augmentation": "pointmae", "momentum": None}
    assert config["recipe_overrides"] == {"epochs": 5, "warmup_epochs": 2, "lr": 1e-3}
    assert "recipe pointmae, adamw lr 0.001 wd 0.05 (not on 1-D/bias)" in (tmp_path / "pm" / "log.txt").read_text()


def test_pointmae_clips_every_step_and_dgcnn_never(tiny_data_root, tmp_path, monkeypatch):
    calls = []

    def clip(params, max_norm, optimizer, scaler=None):
        params = list(params)
        before = float(clip_gradients(params, max_norm, optimizer, scaler))
        after = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params
                                                                  if p.grad is not None])))
        calls.append((max_norm, before, after))
        return before

    import util.optim

    clip_gradients = util.optim.clip_gradients
    monkeypatch.setattr(util.optim, "clip_gradients", clip)  # what backward_step calls
    train_cls.main(_argv(tiny_data_root, tmp_path, "pm", "--recipe", "pointmae", "--epochs", "1",
                         "--max_steps_per_epoch", "2"))
    assert [c[0] for c in calls] == [10.0, 10.0]
    calls.clear()
    train_cls.main(_argv(tiny_data_root, tmp_path, "dg", "--epochs", "1", "--max_steps_per_epoch", "2"))
    assert calls == []
    # a clipped step: a norm above --grad_clip is brought down to it
    train_cls.main(_argv(tiny_data_root, tmp_path, "tight", "--recipe", "pointmae", "--epochs", "1",
                         "--max_steps_per_epoch", "2", "--grad_clip", "1e-3"))
    assert all(before > 1e-3 and after == pytest.approx(1e-3, rel=1e-4) for _, before, after in calls)


def test_bad_recipe_combinations_are_one_line(tiny_data_root, tmp_path):
    cases = [(["--recipe", "pointmae", "--optimizer", "sgd"], "--optimizer sgd needs --momentum"),
             (["--warmup_epochs", "2"], "--warmup_epochs 2 needs --schedule warmup_cosine"),
             (["--recipe", "pointmae", "--epochs", "3", "--warmup_epochs", "3"], "must be fewer than --epochs 3")]
    for extra, message in cases:
        with pytest.raises(SystemExit, match=message):
            train_cls.main(_argv(tiny_data_root, tmp_path, "bad", *extra))
    assert not (tmp_path / "bad").exists()


@pytest.fixture(scope="module")
def every_set_root(tiny_data_root, tmp_path_factory):
    """The tiny data plus a custom set (the ModelNet40 HDF5 layout under custom_cls/, as prepare_meshes writes)."""
    root = tmp_path_factory.mktemp("every_set")
    for name in ("modelnet40_ply_hdf5_2048", "ScanObjectNN"):
        (root / name).symlink_to(tiny_data_root / name)
    shutil.copytree(tiny_data_root / "modelnet40_ply_hdf5_2048", root / "custom_cls")
    shutil.copy(tiny_data_root / "SYNTHETIC.json", root / "SYNTHETIC.json")
    return root


@pytest.mark.parametrize("recipe", sorted(RECIPES))
@pytest.mark.parametrize("dataset", ["modelnet40", "scanobjectnn", "custom"])
def test_each_recipe_runs_on_every_classification_set(every_set_root, tmp_path, recipe, dataset):
    results = train_cls.main(_argv(every_set_root, tmp_path, "r", "--recipe", recipe, "--dataset", dataset,
                                   "--epochs", "1", "--max_steps_per_epoch", "1"))
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert results["dataset"] == dataset and config["recipe"] == recipe
    assert config["optimizer"] == RECIPES[recipe]["optimizer"] and config["augmentation"] == recipe


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_resume_is_exact(tiny_data_root, tmp_path, recipe):
    common = ["--recipe", recipe, "--epochs", "3", "--max_steps_per_epoch", "2"]
    if recipe == "pointmae":
        common += ["--warmup_epochs", "1"]  # the cut falls in the warm-up
    full = train_cls.main(_argv(tiny_data_root, tmp_path, "full", *common))
    train_cls.main(_argv(tiny_data_root, tmp_path, "cut", *common, "--stop_after", "1"))
    assert not (tmp_path / "cut" / "results.json").exists()
    resumed = train_cls.main(_argv(tiny_data_root, tmp_path, "cut", *common, "--resume", str(tmp_path / "cut")))
    assert resumed["test"] == full["test"] and resumed["best_epoch"] == full["best_epoch"]
    assert [m["epoch/lr"] for m in _metrics(tmp_path / "cut")] == [m["epoch/lr"] for m in _metrics(tmp_path / "full")]
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


def test_augmentation_flag_picks_the_recipes_transform(tiny_data_root):
    from datasets.classification import AugmentedClassification, ClassificationData
    from datasets.transforms import CLASSIFICATION_AUGMENTATIONS, item_rng

    base = ClassificationData("modelnet40", tiny_data_root, None, 64).load("train")
    for name, fn in CLASSIFICATION_AUGMENTATIONS.items():
        torch.manual_seed(3)
        got, label = AugmentedClassification(base, name)[1]
        torch.manual_seed(3)
        expected, _ = fn(base[1][0], item_rng())
        assert torch.equal(got, torch.from_numpy(expected)) and label == base[1][1]
    with pytest.raises(ValueError, match="unknown augmentation 'pointbert'"):
        AugmentedClassification(base, "pointbert")
