"""One source of presets (util/presets.py): `paper` is exactly the published settings of every script."""

import pytest

import eval_fewshot
import eval_svm
import train_cls
import train_crossmodal
import train_partseg
from util.presets import PRESET_NAMES, PRESETS, parse_with_preset

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
