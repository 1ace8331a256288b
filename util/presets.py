"""Named settings (``--preset tiny|small|paper``) of every script, and the published constants used in several places.

The command-line defaults of each script are the published settings (``paper``); ``tiny`` and
``small`` only override what they list. ``tiny`` is what the tests and the tiny quickstart run
(seconds per epoch on a CPU); ``small`` is the CPU quickstart (minutes). A preset sets defaults only:
an explicit flag always wins, e.g. ``--preset small --epochs 3``.

    python train_crossmodal.py --preset small --data_root data/synthetic_small
    python eval_svm.py --preset small --model_path runs/exp/checkpoints/point_encoder_best.pth

Classification fine-tuning also has recipes (``train_cls.py --recipe dgcnn|pointmae``, :data:`RECIPES`): a
recipe sets the defaults of its flags (``--preset paper`` = its published values), a ``tiny``/``small``
preset then overrides what it lists and scales the warm-up with its epochs, and an explicit flag still wins
(:func:`recipe_defaults`, :func:`parse_with_recipe`).

Standard library only.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

__all__ = ["PRETRAIN_K", "PARTSEG_K", "PUBLISHED_EMB_DIMS", "SVM_C", "SVM_POINTS", "FEWSHOT", "PRESETS", "PRESET_NAMES",
           "RECIPES", "RECIPE_NAMES", "DEFAULT_RECIPE", "RECIPE_FLAGS", "add_preset_argument", "parse_with_preset",
           "setting", "scaled_warmup", "recipe_defaults", "parse_with_recipe"]

# One name per meaning of k (DGCNN's neighbour count). The DGCNN paper's own default, 20, is
# models.dgcnn.DGCNN_K (used by classification fine-tuning from scratch).
PRETRAIN_K = 15  # CrossPoint pretraining (original scripts/script.sh --k 15); eval_ssl.ipynb evaluates with 15
PARTSEG_K = 40  # CrossPoint part-segmentation fine-tuning (original scripts/script.sh --k 40)
PUBLISHED_EMB_DIMS = 1024  # every published CrossPoint model
# The frozen-feature protocols of the paper (eval_svm.py / eval_fewshot.py defaults, used by the quickstart too).
SVM_C = 0.01  # original eval_ssl.ipynb
SVM_POINTS = 1024  # original eval_ssl.ipynb: the first 1024 of the stored 2048 points
FEWSHOT = {"num_points": None,  # the original eval_fewshot.py fed every stored point (2048)
           "k_way": 5, "m_shot": 10, "n_query": 20,  # paper Tables 3 and 4: 5/10-way, 10/20-shot; 20 queries
           "n_runs": 10}  # paper: mean ± std over 10 runs

PRESET_NAMES = ("tiny", "small", "paper")

# script -> preset -> {flag dest: value}; "paper" is the CLI defaults (no overrides).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "pretrain": {
        "tiny": {"num_points": 256, "k": 8, "emb_dims": 64, "img_model": "resnet18", "image_size": 32,
                 "batch_size": 8, "epochs": 2, "probe_every": 2, "probe_points": 256},
        "small": {"num_points": 512, "k": 15, "emb_dims": 256, "img_model": "resnet18", "image_size": 64,
                  "batch_size": 20, "epochs": 15, "probe_every": 5, "probe_points": 512},
        "paper": {},
    },
    "partseg": {
        "tiny": {"num_points": 256, "k": 8, "emb_dims": 64, "batch_size": 8, "epochs": 2},
        "small": {"num_points": 512, "k": 10, "emb_dims": 256, "batch_size": 16, "epochs": 3},
        "paper": {},
    },
    "cls": {
        "tiny": {"num_points": 256, "k": 8, "emb_dims": 64, "batch_size": 8, "test_batch_size": 16, "epochs": 2},
        "small": {"num_points": 512, "k": 15, "emb_dims": 256, "batch_size": 16, "test_batch_size": 32,
                  "epochs": 20},
        "paper": {},
    },
    "svm": {
        "tiny": {"num_points": 256},
        "small": {"num_points": 512},
        "paper": {},
    },
    "fewshot": {
        "tiny": {"num_points": 256, "k_way": 5, "m_shot": 2, "n_query": 2, "n_runs": 5},
        "small": {"num_points": 512, "k_way": 5, "m_shot": 10, "n_query": 8, "n_runs": 10},  # 8: the test split has 8 per class
        "paper": {},
    },
}


def add_preset_argument(parser: argparse.ArgumentParser, script: str) -> None:
    """Add ``--preset`` (default ``paper``) listing what each preset of ``script`` changes."""
    described = "; ".join(
        f"{name}: " + (", ".join(f"{k}={v}" for k, v in PRESETS[script][name].items()) or "the CLI defaults")
        for name in PRESET_NAMES
    )
    parser.add_argument("--preset", choices=PRESET_NAMES, default="paper",
                        help=f"named defaults, overridden by any explicit flag ({described})")


def parse_with_preset(parser: argparse.ArgumentParser, script: str,
                      argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` with the defaults of the ``--preset`` it names (explicit flags still win).

    Raises KeyError when a preset names a flag the parser does not have (a programming error).
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", choices=PRESET_NAMES, default="paper")
    chosen, _ = pre.parse_known_args(argv)
    overrides = PRESETS[script][chosen.preset]
    known = {action.dest for action in parser._actions}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise KeyError(f"preset {chosen.preset!r} of {script!r} sets unknown flags {unknown}")
    parser.set_defaults(**overrides)
    return parser.parse_args(argv)


def setting(script: str, preset: str, name: str, default: Any) -> Any:
    """The value of ``name`` under ``preset`` for ``script``: the preset's override, else ``default``."""
    return PRESETS[script][preset].get(name, default)


# ----------------------------------------------------------------------------------------------
# Classification fine-tuning recipes (train_cls.py --recipe)
# ----------------------------------------------------------------------------------------------
# DGCNN = WangYueFt/dgcnn at f765b46, pytorch/main.py unless named; Point-MAE = Pang-Yatian/Point-MAE at 7445a68,
# cfgs/finetune_scan_{objbg,objonly,hardest}.yaml and cfgs/finetune_modelnet.yaml (identical except npoints and
# the model's cls_dim/num_group) unless named. Keys outside RECIPE_FLAGS are facts for the docs and the run.
RECIPES: dict[str, dict[str, Any]] = {
    "dgcnn": {
        "optimizer": "sgd",  # main.py:186 --use_sgd default True -> :61 optim.SGD
        "lr": 0.1,  # main.py:61 lr=args.lr*100, :188 --lr default 0.001
        "momentum": 0.9,  # main.py:190 --momentum default 0.9
        "wd": 1e-4,  # main.py:61 weight_decay=1e-4
        "no_decay_1d": False,  # main.py:61 model.parameters(): every parameter decayed
        "schedule": "cosine",  # main.py:66 CosineAnnealingLR(opt, args.epochs, eta_min=args.lr)
        "lr_order": "reference",  # main.py:72 scheduler.step() first in each epoch (util/schedules.py)
        "warmup_epochs": 0,  # main.py:66 no warm-up
        "warmup_lr": 0.0,  # unused without a warm-up
        "eta_min": 1e-3,  # main.py:66 eta_min=args.lr, :188 default 0.001
        "epochs": 250,  # main.py:184
        "batch_size": 32,  # main.py:180; train loader drop_last=True (:41)
        "test_batch_size": 16,  # main.py:182
        "grad_clip": None,  # main.py:85-89 no clipping
        "label_smoothing": 0.2,  # util.py:22 cal_loss eps 0.2 (spread as eps / (classes - 1))
        "num_points": {"modelnet40": 1024,  # main.py:198
                       "scanobjectnn": 1024, "custom": 1024},  # not in the reference: this project's, as ModelNet40
        "augmentation": "dgcnn",  # data.py:50-55 translate_pointcloud, :75 np.random.shuffle
        "ties_replace": True,  # main.py:133 test_acc >= best_test_acc: a later equal epoch is kept
        "reported": "best test accuracy over the epochs (main.py:133-135, selects on test), one pass, no voting",
        "not_applicable": "",
    },
    "pointmae": {
        "optimizer": "adamw",  # finetune_*.yaml:2 type AdamW (tools/builder.py:55)
        "lr": 5e-4,  # finetune_*.yaml:4
        "momentum": None,  # AdamW: no momentum flag; betas are torch's defaults (builder.py:55 passes lr, wd only)
        "wd": 0.05,  # finetune_*.yaml:5
        "no_decay_1d": True,  # builder.py:40-53 add_weight_decay: 1-D, *.bias, *token* get weight decay 0
        "schedule": "warmup_cosine",  # finetune_*.yaml:9 CosLR -> builder.py:67-75 timm 0.4.5 CosineLRScheduler
        "lr_order": "reference",  # runner_finetune.py:188-192 scheduler.step(epoch) after each epoch
        "warmup_epochs": 10,  # finetune_*.yaml:12 initial_epochs -> builder.py:73 warmup_t
        "warmup_lr": 1e-6,  # builder.py:72 warmup_lr_init
        "eta_min": 1e-6,  # builder.py:70 lr_min
        "epochs": 300,  # finetune_*.yaml:11 and :38 max_epoch (runner_finetune.py:103 loops to max_epoch + 1)
        "batch_size": 32,  # finetune_*.yaml:36 total_bs; train loader drop_last=True (builder.py:21, :28)
        "test_batch_size": 64,  # main.py:55 val bs = total_bs * 2
        "grad_clip": 10.0,  # finetune_*.yaml:39 grad_norm_clip (runner_finetune.py:157-158, L2 norm)
        "label_smoothing": 0.0,  # models/Point_MAE.py:477 nn.CrossEntropyLoss()
        "num_points": {"scanobjectnn": 2048,  # finetune_scan_*.yaml:35 npoints
                       "modelnet40": 1024,  # finetune_modelnet.yaml:35 npoints
                       "custom": 1024},  # not in Point-MAE: this project's, as ModelNet40
        "augmentation": "pointmae",  # runner_finetune.py:15-25 train_transforms = PointcloudScaleAndTranslate
        "ties_replace": False,  # runner_finetune.py:46-47 better_than is acc > best: the first equal epoch stays
        "reported": "best test accuracy over the epochs (runner_finetune.py:201-209, the val loader is the test "
                    "subset, finetune_*.yaml:18-19; selects on test); voting (--vote, :211-219, and test_net's best "
                    "of 299 ten-vote passes, :388-397) is not reproduced",
        "not_applicable": "Point-MAE's transformer-specific settings have no DGCNN counterpart: drop_path_rate 0.1 "
                          "(finetune_*.yaml:26); it has no layer-wise lr decay. Its head keeps dropout 0.5 "
                          "(models/Point_MAE.py:459-469), as DGCNN's",
    },
}
RECIPE_NAMES = tuple(RECIPES)
DEFAULT_RECIPE = "dgcnn"
# The entries of a recipe that are train_cls.py flag defaults (the rest: ties_replace, reported, not_applicable).
RECIPE_FLAGS = ("optimizer", "lr", "momentum", "wd", "no_decay_1d", "schedule", "lr_order", "warmup_epochs",
                "warmup_lr", "eta_min", "epochs", "batch_size", "test_batch_size", "grad_clip", "label_smoothing",
                "num_points", "augmentation")


def scaled_warmup(warmup_epochs: int, published_epochs: int, epochs: int) -> int:
    """The warm-up of a run of ``epochs`` when the recipe warms up ``warmup_epochs`` of ``published_epochs``:
    the same fraction, rounded half up (e.g. Point-MAE's 10 of 300 -> 1 of 20, 0 of 2)."""
    return int(warmup_epochs * epochs / published_epochs + 0.5)


def recipe_defaults(recipe: str, dataset: str, preset: str) -> dict[str, Any]:
    """The flag defaults of ``train_cls.py --recipe recipe --dataset dataset --preset preset``.

    The recipe's published values (:data:`RECIPE_FLAGS`, ``num_points`` for ``dataset``), then the ``cls``
    preset's overrides (``tiny``/``small``: epochs, batch sizes, points, k, emb_dims), with the warm-up scaled
    to the preset's epochs (:func:`scaled_warmup`). ``paper`` returns the published values unchanged.

    Raises:
        KeyError: unknown recipe, dataset or preset (a programming error: the parser's choices come first).
    """
    published = RECIPES[recipe]
    values = {name: published[name] for name in RECIPE_FLAGS}
    values["num_points"] = published["num_points"][dataset]
    overrides = PRESETS["cls"][preset]
    values.update(overrides)
    if "epochs" in overrides:
        values["warmup_epochs"] = scaled_warmup(published["warmup_epochs"], published["epochs"], values["epochs"])
    return values


def parse_with_recipe(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``train_cls.py``'s ``argv`` with the defaults of its ``--recipe``, ``--dataset`` and ``--preset``
    (:func:`recipe_defaults`); explicit flags still win. The parser needs ``--recipe``, ``--dataset``,
    ``--preset`` and every flag of :data:`RECIPE_FLAGS` and the ``cls`` presets.

    Raises KeyError when the recipe or preset names a flag the parser does not have (a programming error).
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default="paper")
    pre.add_argument("--recipe", default=parser.get_default("recipe") or DEFAULT_RECIPE)
    pre.add_argument("--dataset", default=parser.get_default("dataset"))
    chosen, _ = pre.parse_known_args(argv)
    if (chosen.preset not in PRESET_NAMES or chosen.recipe not in RECIPES
            or chosen.dataset not in RECIPES[chosen.recipe]["num_points"]):
        return parser.parse_args(argv)  # the parser's choices name the bad flag
    defaults = recipe_defaults(chosen.recipe, chosen.dataset, chosen.preset)
    unknown = sorted(set(defaults) - {action.dest for action in parser._actions})
    if unknown:
        raise KeyError(f"recipe {chosen.recipe!r} / preset {chosen.preset!r} set unknown flags {unknown}")
    parser.set_defaults(**defaults)
    return parser.parse_args(argv)
