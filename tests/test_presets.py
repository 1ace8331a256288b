"""One source of presets (util/presets.py): `paper` is exactly the published settings of every script."""

import argparse

import pytest

import eval_fewshot
import eval_svm
import train_cls
import train_crossmodal
import train_partseg
from util.presets import (PRESET_NAMES, PRESETS, RECIPE_FLAGS, RECIPE_NAMES, parse_with_preset, parse_with_recipe,
                          recipe_defaults, scaled_warmup)

# The published values, written out here independently of the code (paper, original scripts/script.sh,
# eval_ssl.ipynb, eval_fewshot.py; DGCNN paper for classification fine-tuning).
PUBLISHED = {
    "pretrain": (train_crossmodal, [], {
        "epochs": 100, "batch_size": 20, "lr": 1e-3, "wd": 1e-6, "k": 15, "emb_dims": 1024, "num_points": 2048,
        "temperature": 0.1, "image_size": 224, "model": "dgcnn", "img_model": "resnet50", "probe_points": 1024,
        "probe_C": 0.1, "seed": 1}),
    "partseg": (train_partseg, [], {
        "epochs": 300, "batch_size": 8, "test_batch_size": 8, "lr": 0.1, "momentum": 0.9, "wd": 1e-4,
        "eta_min": 1e-3, "num_points": 2048, "dropout": 0.5, "label_smoothing": 0.2, "optimizer": "sgd",
        "scheduler": "cos", "seed": 1}),
    "cls": (train_cls, [], {
        "epochs": 250, "batch_size": 32, "test_batch_size": 16, "lr": 0.1, "momentum": 0.9, "wd": 1e-4,
        "eta_min": 1e-3, "num_points": 1024, "dropout": 0.5, "label_smoothing": 0.2, "optimizer": "sgd"}),
    "svm": (eval_svm, ["--model_path", "x"], {"C": 0.01, "num_points": 1024}),
    "fewshot": (eval_fewshot, ["--model_path", "x"], {
        "num_points": None, "k_way": 5, "m_shot": 10, "n_query": 20, "n_runs": 10, "svm_C": 1.0}),
}


@pytest.mark.parametrize("script", sorted(PUBLISHED))
def test_paper_preset_is_the_published_settings(script):
    module, required, values = PUBLISHED[script]
    for argv in (required, required + ["--preset", "paper"]):
        args = parse_with_preset(module.build_parser(), script, argv)
        assert {k: getattr(args, k) for k in values} == values


@pytest.mark.parametrize("script", sorted(PRESETS))
def test_every_preset_parses_and_explicit_flags_win(script):
    module, required, _ = PUBLISHED[script]
    for name in PRESET_NAMES:
        args = parse_with_preset(module.build_parser(), script, required + ["--preset", name])
        assert all(getattr(args, k) == v for k, v in PRESETS[script][name].items()) and args.preset == name
    args = parse_with_preset(module.build_parser(), script, required + ["--preset", "tiny", "--num_points", "300"])
    assert args.num_points == 300


def test_a_preset_naming_an_unknown_flag_is_a_programming_error(monkeypatch):
    monkeypatch.setitem(PRESETS["svm"], "tiny", {"no_such_flag": 1})
    with pytest.raises(KeyError, match="no_such_flag"):
        parse_with_preset(eval_svm.build_parser(), "svm", ["--model_path", "x", "--preset", "tiny"])


# Issue 22: each recipe's published values, typed out from the sources (WangYueFt/dgcnn pytorch/main.py, util.py,
# data.py; Pang-Yatian/Point-MAE cfgs/finetune_scan_*.yaml, finetune_modelnet.yaml, tools/builder.py, main.py,
# models/Point_MAE.py), independently of util/presets.py.
PUBLISHED_RECIPES = {
    "dgcnn": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "wd": 1e-4, "no_decay_1d": False,
              "schedule": "cosine", "lr_order": "reference", "warmup_epochs": 0, "warmup_lr": 0.0, "eta_min": 1e-3,
              "epochs": 250, "batch_size": 32, "test_batch_size": 16, "grad_clip": None, "label_smoothing": 0.2,
              "augmentation": "dgcnn"},
    "pointmae": {"optimizer": "adamw", "lr": 5e-4, "momentum": None, "wd": 0.05, "no_decay_1d": True,
                 "schedule": "warmup_cosine", "lr_order": "reference", "warmup_epochs": 10, "warmup_lr": 1e-6,
                 "eta_min": 1e-6, "epochs": 300, "batch_size": 32, "test_batch_size": 64, "grad_clip": 10.0,
                 "label_smoothing": 0.0, "augmentation": "pointmae"},
}
PUBLISHED_POINTS = {("dgcnn", "modelnet40"): 1024, ("dgcnn", "scanobjectnn"): 1024, ("dgcnn", "custom"): 1024,
                    ("pointmae", "modelnet40"): 1024, ("pointmae", "scanobjectnn"): 2048, ("pointmae", "custom"): 1024}


@pytest.mark.parametrize("recipe,dataset", sorted(PUBLISHED_POINTS))
def test_paper_preset_is_each_recipes_published_table(recipe, dataset):
    assert recipe_defaults(recipe, dataset, "paper") == {**PUBLISHED_RECIPES[recipe],
                                                         "num_points": PUBLISHED_POINTS[recipe, dataset]}


def test_small_and_tiny_presets_scale_the_epochs_and_the_warmup():
    small = recipe_defaults("pointmae", "scanobjectnn", "small")
    assert small == {**PUBLISHED_RECIPES["pointmae"], "epochs": 20, "warmup_epochs": 1, "batch_size": 16,
                     "test_batch_size": 32, "num_points": 512, "k": 15, "emb_dims": 256}
    tiny = recipe_defaults("pointmae", "modelnet40", "tiny")
    assert tiny == {**PUBLISHED_RECIPES["pointmae"], "epochs": 2, "warmup_epochs": 0, "batch_size": 8,
                    "test_batch_size": 16, "num_points": 256, "k": 8, "emb_dims": 64}
    assert recipe_defaults("dgcnn", "modelnet40", "small") == {
        **PUBLISHED_RECIPES["dgcnn"], "epochs": 20, "batch_size": 16, "test_batch_size": 32, "num_points": 512,
        "k": 15, "emb_dims": 256}
    assert [scaled_warmup(10, 300, e) for e in (300, 45, 20, 15, 14, 2)] == [10, 2, 1, 1, 0, 0]


def test_dgcnn_recipe_is_train_cls_s_cli_defaults():
    """The default recipe and train_cls.py's current defaults agree on every flag both have."""
    parser = train_cls.build_parser()
    dests = {a.dest for a in parser._actions}
    recipe = recipe_defaults("dgcnn", "modelnet40", "paper")
    shared = sorted(set(recipe) & dests)
    assert {"optimizer", "lr", "epochs", "num_points", "label_smoothing"} <= set(shared)
    assert {k: parser.get_default(k) for k in shared} == {k: recipe[k] for k in shared}


def _recipe_parser(without=()):
    p = argparse.ArgumentParser(prog="train_cls.py")
    p.add_argument("--preset", choices=PRESET_NAMES, default="paper")
    p.add_argument("--recipe", choices=RECIPE_NAMES, default="dgcnn")
    p.add_argument("--dataset", choices=["modelnet40", "scanobjectnn", "custom"], default="modelnet40")
    for name in RECIPE_FLAGS + ("k", "emb_dims"):
        if name not in without:
            p.add_argument(f"--{name}", type=str if name in ("optimizer", "schedule", "lr_order", "augmentation")
                           else float)
    return p


def test_a_recipe_sets_the_defaults_and_explicit_flags_win():
    args = parse_with_recipe(_recipe_parser(), ["--recipe", "pointmae", "--dataset", "scanobjectnn"])
    assert (args.optimizer, args.lr, args.num_points, args.grad_clip, args.warmup_epochs) == ("adamw", 5e-4, 2048,
                                                                                            10.0, 10)
    args = parse_with_recipe(_recipe_parser(), ["--recipe", "pointmae", "--lr", "1e-4", "--preset", "small",
                                                "--epochs", "30", "--num_points", "300"])
    assert (args.lr, args.epochs, args.num_points, args.warmup_epochs, args.batch_size) == (1e-4, 30, 300, 1, 16)
    args = parse_with_recipe(_recipe_parser(), [])
    assert (args.recipe, args.optimizer, args.lr, args.eta_min) == ("dgcnn", "sgd", 0.1, 1e-3)


def test_a_bad_recipe_flag_is_the_parsers_one_line_error(capsys):
    with pytest.raises(SystemExit):
        parse_with_recipe(_recipe_parser(), ["--recipe", "pointbert"])
    assert "argument --recipe: invalid choice: 'pointbert'" in capsys.readouterr().err
    with pytest.raises(KeyError, match="grad_clip"):
        parse_with_recipe(_recipe_parser(without=("grad_clip",)), [])


@pytest.mark.parametrize("recipe,dataset", sorted(PUBLISHED_POINTS))
def test_train_cls_defaults_are_each_recipes_published_table(recipe, dataset):
    """train_cls.py's parsed defaults, with and without --preset paper, equal the typed-out table above; the
    default recipe needs no --recipe."""
    chosen = ["--dataset", dataset] + ([] if recipe == "dgcnn" else ["--recipe", recipe])
    expected = {**PUBLISHED_RECIPES[recipe], "num_points": PUBLISHED_POINTS[recipe, dataset]}
    for argv in (chosen, chosen + ["--preset", "paper"]):
        args = parse_with_recipe(train_cls.build_parser(), argv)
        assert args.recipe == recipe and {k: getattr(args, k) for k in expected} == expected


def test_train_cls_small_preset_scales_the_warmup_and_an_explicit_flag_wins():
    args = parse_with_recipe(train_cls.build_parser(), ["--recipe", "pointmae", "--preset", "small", "--dataset",
                                                        "scanobjectnn", "--grad_clip", "1", "--no-no_decay_1d"])
    assert (args.epochs, args.warmup_epochs, args.num_points, args.batch_size, args.k, args.emb_dims) == (
        20, 1, 512, 16, 15, 256)
    assert (args.grad_clip, args.no_decay_1d, args.lr, args.optimizer) == (1.0, False, 5e-4, "adamw")
