"""End-to-end tests of train_partseg.py on the tiny synthetic ShapeNetPart (CPU, tiny settings)."""

from __future__ import annotations

import argparse
import functools
import json
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import train_partseg
from datasets.shapenet_part import PART_OFFSETS, PARTS_PER_CATEGORY
from models.dgcnn import DGCNNPartSeg
from models.losses import smoothed_cross_entropy
from util.checkpoint import load_with_new_head, read_weights_meta, save_weights
from metrics.partseg import PartSegEvaluator
from util.presets import PARTSEG_K, PUBLISHED_EMB_DIMS
from util.epoch import EpochMeter
from util.weights import PARTSEG_HEAD_PREFIXES, load_partseg

KEYS_FILE = os.path.join(os.path.dirname(__file__), "data", "official_state_dict_keys.json")
# Tiny settings; the optimisation hyperparameters are the published ones.
TINY = ["--num_points", "256", "--k", "8", "--test_batch_size", "8", "--num_workers", "0", "--no_progress"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """Every test and module fixture here runs with one intra-op thread."""


def _argv(root, out, name, *extra):
    return ["--data_root", str(root), "--output_dir", str(out), "--exp_name", name, *TINY, *extra]


@pytest.fixture(scope="module")
def finetuned(tiny_data_root, tmp_path_factory):
    """One short fine-tuning from scratch: (results, run_dir, output_dir)."""
    out = tmp_path_factory.mktemp("partseg_runs")
    results = train_partseg.main(_argv(tiny_data_root, out, "ft", "--emb_dims", "64", "--batch_size", "8",
                                       "--epochs", "4", "--eval_at_init", "--plot", "--plot_shapes", "3"))
    return results, out / "ft", out


def _official_state_dict(name, num_parts=None):
    """Random tensors with the key names and shapes of an official checkpoint."""
    with open(KEYS_FILE) as f:
        entries = json.load(f)[name]
    gen = torch.Generator().manual_seed(0)
    sd = {}
    for key, shape in entries:
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(7, dtype=torch.long)
        else:
            sd[key] = torch.randn(*shape, generator=gen) if shape else torch.randn((), generator=gen)
    # Modules registered under two names (bn1 and conv1.1, ...) hold one tensor: equal values in a real file.
    first_key = {}
    for key, tensor in DGCNNPartSeg(k=40, emb_dims=1024).state_dict(keep_vars=True).items():
        first_key.setdefault(id(tensor), key)
        if key in sd and first_key[id(tensor)] in sd:
            sd[key] = sd[first_key[id(tensor)]]
    if num_parts is not None:
        sd["conv11.weight"] = sd["conv11.weight"][:num_parts].clone()
    return sd


def original_cal_loss(pred, gold, eps=0.2):
    """Literal transcription of cal_loss in the original util.py (smoothing=True)."""
    gold = gold.contiguous().view(-1)
    n_class = pred.size(1)
    one_hot = torch.zeros_like(pred).scatter(1, gold.view(-1, 1), 1)
    one_hot = one_hot * (1 - eps) + (1 - one_hot) * eps / (n_class - 1)
    log_prb = F.log_softmax(pred, dim=1)
    return -(one_hot * log_prb).sum(dim=1).mean()


# ----------------------------------------------------------------------------------------------
# Pieces
# ----------------------------------------------------------------------------------------------


def test_defaults_are_the_published_settings():
    args = train_partseg.build_parser().parse_args([])
    assert (args.epochs, args.batch_size, args.test_batch_size, args.lr, args.momentum, args.wd, args.eta_min,
            args.num_points, args.dropout, args.label_smoothing, args.optimizer, args.scheduler) == (
        300, 8, 8, 0.1, 0.9, 1e-4, 1e-3, 2048, 0.5, 0.2, "sgd", "cos")
    assert args.k is None and PARTSEG_K == 40 and PUBLISHED_EMB_DIMS == 1024
    assert args.select_best_on == "val" and args.amp == "none" and not args.augment


def test_smoothed_cross_entropy_matches_original():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 50, 20, generator=gen, dtype=torch.float64)  # (B, P, N)
    target = torch.randint(0, 50, (3, 20), generator=gen)
    ours = smoothed_cross_entropy(logits, target, 0.2)
    flat = logits.permute(0, 2, 1).reshape(-1, 50)  # (B*N, P), the original's layout
    assert torch.allclose(ours, original_cal_loss(flat, target.reshape(-1)), rtol=0, atol=1e-12)
    # The same as torch's uniform smoothing with eps * P / (P - 1); eps = 0 is plain cross-entropy.
    assert torch.allclose(ours, F.cross_entropy(logits, target, label_smoothing=0.2 * 50 / 49), atol=1e-12)
    assert torch.allclose(smoothed_cross_entropy(logits, target, 0.0),
                          F.cross_entropy(logits, target), atol=1e-12)


def test_official_pretrain_checkpoint_loads_with_exactly_the_head_new():
    for num_parts in (50, 4):
        model = DGCNNPartSeg(k=40, emb_dims=1024, num_parts=num_parts)
        sd = _official_state_dict("dgcnn_partseg_pretrain")
        new = load_with_new_head(model, sd, PARTSEG_HEAD_PREFIXES, "official.pth")
        head = [k for k in model.state_dict() if k.split(".")[0] in ("conv7", "conv8", "conv9", "conv10", "conv11")]
        assert new == head and "conv11.weight" in new and "conv7.0.weight" in new
        loaded = model.state_dict()
        for key in ("conv1.0.weight", "conv6.0.weight", "bn6.running_var", "transform_net.conv1.0.weight"):
            assert torch.equal(loaded[key], sd[key])
    broken = _official_state_dict("dgcnn_partseg_pretrain")
    del broken["conv6.0.weight"]
    with pytest.raises(ValueError, match="conv6.0.weight"):
        load_with_new_head(DGCNNPartSeg(k=40, emb_dims=1024), broken, PARTSEG_HEAD_PREFIXES, "official.pth")


def test_official_finetuned_checkpoint_loads_strictly(tmp_path):
    path = tmp_path / "dgcnn_partseg_finetuned.pth"
    sd = _official_state_dict("dgcnn_partseg_finetune")
    torch.save(sd, path)
    model, model_args, class_choice = load_partseg("train_partseg.py", path, None, None, 0.5, "fast")
    assert model_args == {"k": 40, "emb_dims": 1024, "num_parts": 50, "dropout": 0.5} and class_choice is None
    assert torch.equal(model.state_dict()["conv11.weight"], sd["conv11.weight"])
    assert load_with_new_head(DGCNNPartSeg(k=40, emb_dims=1024), sd, PARTSEG_HEAD_PREFIXES, path) == []


def test_step_and_predict_in_float64():
    """The training step gives every trained parameter a finite gradient; prediction stays in the category."""
    torch.manual_seed(0)
    model = DGCNNPartSeg(k=4, emb_dims=16).double()
    category = torch.tensor([0, 10, 15])
    offsets = torch.tensor(PART_OFFSETS)[category]
    part_ids = offsets[:, None] + torch.randint(0, 2, (3, 32))  # (B, N) global ids
    batch = (torch.randn(3, 32, 3), category, part_ids)
    loss_fn = functools.partial(smoothed_cross_entropy, eps=0.2)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # the script's epoch loop; lr 0 keeps the weights
    args = argparse.Namespace(amp="none", label_smoothing=0.2, grad_clip=None)
    meter = EpochMeter([batch], 0, opt, torch.device("cpu"), progress=False)
    stats = train_partseg.train_one_epoch(model, [batch], opt, None, meter, args, 0, torch.float64)
    assert math.isfinite(stats["loss"]) and 0 <= stats["acc"] <= 1 and stats["steps"] == 1
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trained and all(p.grad is not None and torch.isfinite(p.grad).all() for _, p in trained)
    out = PartSegEvaluator(torch.device("cpu"), "none", 0, loss_fn).predict(model, [batch])
    counts = torch.tensor(PARTS_PER_CATEGORY)[category]
    pred = torch.from_numpy(out["pred"].astype(np.int64))
    assert bool(((pred >= offsets[:, None]) & (pred < (offsets + counts)[:, None])).all())
    assert out["target"].tolist() == part_ids.tolist() and out["category"].tolist() == [0, 10, 15]


# ----------------------------------------------------------------------------------------------
# End to end
# ----------------------------------------------------------------------------------------------


def test_finetuning_raises_test_instance_miou(finetuned):
    results, _, _ = finetuned
    before = results["test_at_init"]["restricted"]["instance_miou"]
    after = results["test"]["restricted"]["instance_miou"]
    assert after > before + 0.05, (before, after)
    assert results["data"] == "synthetic" and results["selected_on"] == "val"
    for mode in ("restricted", "unrestricted"):
        block = results["test"][mode]
        assert block["num_shapes"] == 32 and set(block) >= {"instance_miou", "class_miou", "accuracy",
                                                           "per_category"}
        assert len(block["per_category"]) == 16


def test_outputs_and_checkpoints(finetuned):
    results, run_dir, _ = finetuned
    ckpt = run_dir / "checkpoints"
    for name in ("partseg_best.pth", "partseg_last.pth", "training_state_last.pt"):
        assert (ckpt / name).is_file()
    meta = read_weights_meta(ckpt / "partseg_best.pth")
    assert meta["kind"] == "partseg" and meta["epoch"] == results["best_epoch"]
    assert meta["model_args"] == {"k": 8, "emb_dims": 64, "num_parts": 50, "dropout": 0.5}
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["test"] == results["test"]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if "epoch/val/instance_miou" in r]
    assert len(epochs) == 4
    best = max(epochs, key=lambda r: (r["epoch/val/instance_miou"], r["epoch/epoch"]))
    assert best["epoch/epoch"] == results["best_epoch"]


def test_eval_only_reproduces_final_numbers(tiny_data_root, finetuned):
    results, run_dir, out = finetuned
    best = run_dir / "checkpoints" / "partseg_best.pth"
    evaluated = train_partseg.main(_argv(tiny_data_root, out, "ev", "--eval", "--model_path", str(best), "--plot"))
    assert evaluated["test"] == results["test"]
    assert evaluated["model_args"] == results["model_args"]
    on_disk = json.loads((out / "ev" / "results_eval.json").read_text())
    assert on_disk["test"] == json.loads((run_dir / "results.json").read_text())["test"]


def test_plot_is_written(finetuned):
    from PIL import Image

    results, run_dir, _ = finetuned
    assert results["plot"] == str(run_dir / train_partseg.PLOT_FILE)
    with Image.open(results["plot"]) as img:
        assert img.format == "PNG" and img.size[0] > img.size[1] > 100


def test_from_project_pretraining_output_one_category(tiny_data_root, tmp_path):
    """--pretrained_path takes a train_crossmodal.py --model dgcnn_seg run directory; --class_choice."""
    encoder = DGCNNPartSeg(k=8, emb_dims=32, pretrain=True)
    pre_dir = tmp_path / "pretrain_run"
    weights = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    save_weights(weights, pre_dir / "checkpoints" / "point_encoder_best.pth",
                 {"model": "dgcnn_seg", "model_args": {"k": 15, "emb_dims": 32}, "kind": "point_encoder"})
    with pytest.warns(UserWarning, match="k=15"):
        results = train_partseg.main(_argv(tiny_data_root, tmp_path, "one_cat", "--pretrained_path", str(pre_dir),
                                           "--class_choice", "airplane", "--batch_size", "2", "--epochs", "1",
                                           "--augment"))
    config = json.loads((tmp_path / "one_cat" / "config.json").read_text())
    assert config["model_args"] == {"k": 8, "emb_dims": 32, "num_parts": 4, "dropout": 0.5}
    assert config["init_weights"].endswith("point_encoder_best.pth") and config["seg_start_index"] == 0
    log = (tmp_path / "one_cat" / "log.txt").read_text()
    assert "conv7.* (6), conv8.* (6), conv9.* (6), conv10.* (6), conv11.* (1)" in log
    assert results["class_choice"] == "airplane" and results["model_args"]["num_parts"] == 4
    assert list(results["test"]["restricted"]["per_category"]) == ["airplane"]
    assert results["test"]["restricted"] == results["test"]["unrestricted"]


def test_rejects_a_classification_checkpoint(tiny_data_root, tmp_path):
    path = tmp_path / "point_encoder_best.pth"
    save_weights({"conv1.0.weight": torch.zeros(64, 6, 1, 1)}, path, {"model": "dgcnn", "model_args": {}})
    with pytest.raises(SystemExit, match="part-segmentation encoder"):
        train_partseg.main(_argv(tiny_data_root, tmp_path, "bad", "--pretrained_path", str(path)))


@pytest.mark.parametrize("sidecar", [b"\xff\xd8garbage\x00", b'{"model": "dgcnn_seg", "model_args": {"k"', b"[1, 2]"])
def test_a_corrupt_sidecar_of_pretrained_path_is_one_line(tiny_data_root, tmp_path, sidecar):
    path = tmp_path / "point_encoder_best.pth"
    save_weights(DGCNNPartSeg(k=8, emb_dims=32, pretrain=True).state_dict(), path)
    (tmp_path / "point_encoder_best.json").write_bytes(sidecar)
    with pytest.raises(SystemExit) as info:
        train_partseg.main(_argv(tiny_data_root, tmp_path, "s", "--pretrained_path", str(path)))
    assert str(tmp_path / "point_encoder_best.json") in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow
def test_resume_continues_exactly(tiny_data_root, tmp_path):
    common = ["--emb_dims", "32", "--batch_size", "8", "--epochs", "2", "--max_steps_per_epoch", "2"]
    full = train_partseg.main(_argv(tiny_data_root, tmp_path, "full", *common))
    train_partseg.main(_argv(tiny_data_root, tmp_path, "cut", *common, "--stop_after", "1"))
    assert not (tmp_path / "cut" / "results.json").exists()
    resumed = train_partseg.main(_argv(tiny_data_root, tmp_path, "cut", *common, "--resume",
                                       str(tmp_path / "cut")))
    assert resumed["test"] == full["test"] and resumed["best_epoch"] == full["best_epoch"]
    a = torch.load(tmp_path / "full" / "checkpoints" / "partseg_last.pth", weights_only=True)
    b = torch.load(tmp_path / "cut" / "checkpoints" / "partseg_last.pth", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_select_best_on_test_is_the_original_rule(tiny_data_root, tmp_path):
    """--select_best_on test keeps the last epoch with the best *unrestricted* test instance mIoU (argmax over
    all 50 parts, the original's calculate_shape_IoU input), ties replaced by later epochs (>=)."""
    results = train_partseg.main(_argv(tiny_data_root, tmp_path, "orig", "--emb_dims", "32", "--batch_size", "8",
                                       "--epochs", "4", "--select_best_on", "test"))
    records = [json.loads(line) for line in (tmp_path / "orig" / "metrics.jsonl").read_text().splitlines()]
    scores = [(r["epoch/test/instance_miou_unrestricted"], r["epoch/epoch"]) for r in records
              if "epoch/test/instance_miou_unrestricted" in r]
    assert len(scores) == 4
    assert results["best_epoch"] == max(scores)[1]
    assert results["selection_value"] == max(scores)[0]
    assert "unrestricted" in results["selection_metric"] and results["selected_on"] == "test"
