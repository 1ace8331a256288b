"""Which weights to load into which model, with which settings: the one place for every script.

- :func:`load_point_encoder`: a frozen point encoder from any checkpoint (this project's weights with their
  sidecar, the published ``dgcnn_cls_best.pth`` / part-seg pretraining files, or ``"random"``), for the SVM,
  few-shot, embedding and the notebook.
- :func:`classifier_init` / :func:`load_classifier`: the initial encoder weights of classification fine-tuning,
  and a fine-tuned classifier rebuilt from its file (train_cls.py).
- :func:`partseg_init` / :func:`load_partseg`: the same for part segmentation (train_partseg.py).

Each setting (model, k, emb_dims, dropout) is decided by :func:`util.checkpoint.resolve_settings`: the explicit
argument, then the sidecar, then what the state dict shows (model from its keys, emb_dims from its shapes), then
the published values; the source of each is reported. The file format itself (atomic writes, the sidecar,
strict loading) is util/checkpoint.py.
"""

from __future__ import annotations

import hashlib
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from datasets.tables import (SHAPENET_PART_CATEGORIES, SHAPENET_PART_NUM_CATEGORIES, SHAPENET_PART_NUM_PARTS,
                       SHAPENET_PART_PARTS_PER_CATEGORY)
from models import CLS_HEAD_PREFIXES, DGCNN_K, build_classifier, build_point_encoder
from models.dgcnn import DGCNNPartSeg
from util.checkpoint import (CheckpointError, WeightsMeta, find_weights_file, load_point_encoder_file,
                             load_pretrained, load_state_dict_file, load_with_new_head, resolve_settings)
from util.presets import PARTSEG_K, PRETRAIN_K, PUBLISHED_EMB_DIMS

__all__ = ["RANDOM_INIT", "LoadedEncoder", "load_point_encoder", "infer_point_encoder", "sha1_file",
           "classifier_init", "build_classifier_with_init", "load_classifier", "partseg_init", "load_partseg", "build_partseg",
           "PARTSEG_HEAD_PREFIXES"]

RANDOM_INIT = "random"
# The part-segmentation head: the keys a part-seg pretraining file does not have.
PARTSEG_HEAD_PREFIXES = ("conv7.", "conv8.", "conv9.", "conv10.", "conv11.")


def sha1_file(path: Path) -> str:
    """Hex sha1 of a file's content (identifies a checkpoint in caches and results)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def infer_point_encoder(state_dict: dict[str, torch.Tensor]) -> dict[str, tuple[Any, str]]:
    """What a point-encoder state dict shows: {"model": (name, "state-dict keys"), "emb_dims": (n, "state-dict shapes")}.

    The part-seg DGCNN has a transform net; the classification DGCNN a 1-D conv5 weight (N, 512, 1);
    ``inv_head.0.weight`` is (emb_dims, feat_dim).
    """
    out: dict[str, tuple[Any, str]] = {}
    if any(k.startswith("transform_net.") for k in state_dict):
        out["model"] = ("dgcnn_seg", "state-dict keys")
    elif "conv5.0.weight" in state_dict and state_dict["conv5.0.weight"].dim() == 3:
        out["model"] = ("dgcnn", "state-dict keys")
    if "inv_head.0.weight" in state_dict:
        out["emb_dims"] = (int(state_dict["inv_head.0.weight"].shape[0]), "state-dict shapes")
    return out


@dataclass
class LoadedEncoder:
    """A point encoder in eval mode, and where it and its settings came from.

    Attributes:
        model: forward (B, 3, N) -> (B, feat_dim) global feature (before ``inv_head``).
        name: "dgcnn", "dgcnn_seg" or "pointnet".
        model_args: the constructor arguments used ({"k", "emb_dims"}; PointNet: {"emb_dims"}).
        sources: setting -> where its value came from.
        checkpoint: the resolved weights path, or "random".
        checkpoint_sha1: content hash of the weights file, or "random-seed-<seed>".
        meta: the weights' sidecar, if any.
    """

    model: nn.Module
    name: str
    model_args: dict[str, Any]
    sources: dict[str, str]
    checkpoint: str
    checkpoint_sha1: str
    meta: WeightsMeta | None = None

    @property
    def feat_dim(self) -> int | None:
        return int(getattr(self.model, "feat_dim", 0)) or None

    def info(self) -> dict[str, Any]:
        """JSON-ready identity: what determines the features (used in result files and cache keys)."""
        return {"checkpoint": self.checkpoint, "checkpoint_sha1": self.checkpoint_sha1, "model": self.name,
                "model_args": dict(self.model_args), "model_args_sources": dict(self.sources)}

    def describe(self) -> str:
        args = ", ".join(f"{a}={v} (from {self.sources[a]})" for a, v in self.model_args.items())
        where = self.checkpoint if self.checkpoint != RANDOM_INIT else f"random init, {self.checkpoint_sha1}"
        return f"Encoder: {self.name}({args}) from {where}"


def load_point_encoder(
    model_path: str | Path,
    *,
    model: str | None = None,
    k: int | None = None,
    emb_dims: int | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    edgeconv: str = "fast",
    verbose: bool = True,
) -> LoadedEncoder:
    """Build a point encoder and load a weights file into it strictly (or initialise it randomly).

    Args:
        model_path: a ``.pth`` state dict (published ``dgcnn_cls_best.pth``-style or this project's), or
            ``"random"`` for a randomly initialised encoder (seeded with ``seed``).
        model, k, emb_dims: explicit settings (None: sidecar > state dict > published default).
        device: where the model is put.
        verbose: print the resolved settings and their sources.
    Raises:
        FileNotFoundError: no such file. CheckpointError: not a point-encoder checkpoint, or it does not fit
        the model built for it (the message names the keys).
    """
    meta, state_dict = None, None
    random_init = str(model_path) == RANDOM_INIT
    if not random_init:
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no such checkpoint file. Pass a point-encoder .pth (e.g. dgcnn_cls_best.pth or "
                f"<run>/checkpoints/point_encoder_best.pth) or --model_path {RANDOM_INIT}")
        state_dict, meta = load_point_encoder_file(path)
    settings = resolve_settings(
        ("model", "emb_dims", "k"), {"model": model, "emb_dims": emb_dims, "k": k}, meta,
        infer_point_encoder(state_dict) if state_dict is not None else {},
        # Differs from the original: its eval_fewshot.py --k defaulted to 5 and fsl_script.sh did not pass it,
        # while the published model was trained with k=15; here k comes from the checkpoint's meta, else the
        # published 15, and is printed.
        {"model": ("dgcnn", "default"), "emb_dims": (PUBLISHED_EMB_DIMS, "published default"),
         "k": (PRETRAIN_K, f"published default (original scripts/script.sh --k {PRETRAIN_K})")},
    )
    for name, flag, saved in settings.conflicts:
        print(f"WARNING: --{name} {flag} differs from the checkpoint's {name}={saved} (sidecar meta); the features "
              "will not be the ones the encoder was trained to produce", file=sys.stderr, flush=True)
    name, emb, k_used = settings.values["model"], int(settings.values["emb_dims"]), int(settings.values["k"])
    torch.manual_seed(seed)
    net = build_point_encoder(name, k=k_used, emb_dims=emb, edgeconv=edgeconv)
    if state_dict is not None:
        try:
            load_pretrained(net, state_dict)
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(
                f"{model_path}: does not load into {name}(k={k_used}, emb_dims={emb}) "
                f"[model from {settings.sources['model']}, emb_dims from {settings.sources['emb_dims']}]. Is this a "
                "point-encoder checkpoint? Expected keys like conv1.0.weight, conv5.0.weight, inv_head.0.weight "
                f"(pass --model / --emb_dims if they differ).\n{e}"
            ) from e
    model_args = {"k": k_used, "emb_dims": emb} if name != "pointnet" else {"emb_dims": emb}
    encoder = LoadedEncoder(
        model=net.to(device).eval(), name=name, model_args=model_args,
        sources={key: settings.sources[key] for key in ("model", *model_args)},
        checkpoint=RANDOM_INIT if random_init else str(Path(model_path).resolve()),
        checkpoint_sha1=f"random-seed-{seed}" if random_init else sha1_file(Path(model_path)), meta=meta,
    )
    if verbose:
        print(encoder.describe(), flush=True)
    return encoder


# ----------------------------------------------------------------------------------------------
# Classification fine-tuning (train_cls.py)
# ----------------------------------------------------------------------------------------------


def classifier_init(prog: str, pretrained_path: str | None, model: str | None, k: int | None, emb_dims: int | None,
                    dropout: float, warn: bool) -> tuple[dict | None, str, str, dict[str, Any]]:
    """The initial encoder weights of classification fine-tuning and the classifier's settings.

    Args:
        prog: the script name for messages.
        pretrained_path: a point-encoder weights file or a pretraining run directory; None: random init.
        model, k, emb_dims: the flags (None: sidecar > state dict > defaults; k defaults to the DGCNN recipe's 20).
        dropout: the classifier's dropout.
        warn: warn when the pretraining used another k (main rank).
    Returns:
        (state dict or None, its source or "scratch", model name, {"k", "emb_dims", "dropout"}).
    """
    sd, meta, source = None, None, "scratch"
    if pretrained_path:
        path = find_weights_file(pretrained_path)
        (sd, meta), source = load_point_encoder_file(path), str(path)
    shown = infer_point_encoder(sd) if sd is not None else {}
    settings = resolve_settings(("model", "emb_dims"), {"model": model}, meta, shown,
                                {"model": ("dgcnn", "default"), "emb_dims": (PUBLISHED_EMB_DIMS, "default")})
    name, file_emb_dims = settings.values["model"], int(settings.values["emb_dims"])
    if name not in ("dgcnn", "pointnet"):
        raise CheckpointError(f"{source}: a {name!r} encoder cannot be fine-tuned for classification here; use a "
                              "dgcnn or pointnet pretraining (train_crossmodal.py --model dgcnn).")
    if emb_dims is not None and sd is not None and emb_dims != file_emb_dims:
        raise SystemExit(f"{prog}: --emb_dims {emb_dims} (flag or preset) but {source} has emb_dims "
                         f"{file_emb_dims}; drop --emb_dims or pass the matching value.")
    k_used = k if k is not None else DGCNN_K
    pre_k = meta.model_args.get("k") if meta is not None else None
    if pre_k is not None and pre_k != k_used and warn and name == "dgcnn":
        warnings.warn(f"The pretrained encoder used k={pre_k}; fine-tuning uses k={k_used} (the DGCNN recipe's "
                      f"{DGCNN_K} unless --k is given).", stacklevel=2)
    return sd, source, name, {"k": k_used, "emb_dims": emb_dims if emb_dims is not None else file_emb_dims,
                              "dropout": dropout}


def build_classifier_with_init(name: str, num_classes: int, model_args: dict[str, Any], edgeconv: str,
                               state_dict: dict | None, source: str) -> tuple[nn.Module, list[str] | None]:
    """The classifier, with the pretrained encoder weights loaded (its head new). Returns (model, new keys or
    None without weights)."""
    model = build_classifier(name, num_classes, k=model_args["k"], emb_dims=model_args["emb_dims"],
                             dropout=model_args["dropout"], edgeconv=edgeconv)
    new = load_with_new_head(model, state_dict, CLS_HEAD_PREFIXES, source) if state_dict is not None else None
    return model, new


def load_classifier(prog: str, path: Path, k: int | None, dropout: float,
                    edgeconv: str) -> tuple[nn.Module, str, dict]:
    """Rebuild a fine-tuned classifier from its weights (+ sidecar) and load it strictly.

    Returns (model on CPU, model name, model_args); num_classes and emb_dims come from the weights.
    """
    sd = load_state_dict_file(path)
    if "linear3.weight" not in sd:
        raise CheckpointError(f"{path}: no classification head (linear3.weight): it is an encoder. Fine-tune it "
                              f"first: python {prog} --pretrained_path {path}")
    meta = WeightsMeta.read(path)
    s = resolve_settings(("model", "k", "dropout", "emb_dims"), {"k": k}, meta, infer_point_encoder(sd),
                         {"model": ("dgcnn", "default"), "k": (DGCNN_K, "default"), "dropout": (dropout, "--dropout")})
    args = {"k": int(s.values["k"]), "emb_dims": int(s.values["emb_dims"]),
            "num_classes": int(sd["linear3.weight"].shape[0]), "dropout": float(s.values["dropout"])}
    model = build_classifier(s.values["model"], args["num_classes"], k=args["k"], emb_dims=args["emb_dims"],
                             dropout=args["dropout"], edgeconv=edgeconv)
    load_pretrained(model, sd)
    return model, s.values["model"], args


# ----------------------------------------------------------------------------------------------
# Part segmentation (train_partseg.py)
# ----------------------------------------------------------------------------------------------


def infer_emb_dims(prog: str, state_dict: dict[str, torch.Tensor], source: Path) -> int:
    """emb_dims of a DGCNN part-seg state dict (the output channels of conv6)."""
    weight = state_dict.get("conv6.0.weight")
    if weight is None:
        raise SystemExit(
            f"{prog}: {source} has no 'conv6.0.weight', so it is not a DGCNN part-segmentation checkpoint "
            "(DGCNN_partseg / --model dgcnn_seg). Classification (--model dgcnn) weights cannot initialise the "
            "part-segmentation network."
        )
    return int(weight.shape[0])


def build_partseg(model_args: dict[str, Any], edgeconv: str) -> DGCNNPartSeg:
    """DGCNNPartSeg from the ``model_args`` stored in the sidecar (k, emb_dims, num_parts, dropout)."""
    return DGCNNPartSeg(k=model_args["k"], emb_dims=model_args["emb_dims"], num_parts=model_args["num_parts"],
                        num_categories=SHAPENET_PART_NUM_CATEGORIES, pretrain=False, dropout=model_args["dropout"],
                        edgeconv=edgeconv)


def partseg_init(prog: str, pretrained_path: str | None, k: int | None, emb_dims: int | None, dropout: float,
                 warn: bool) -> tuple[dict | None, str, dict]:
    """(state dict or None, its source or "scratch", {"k", "emb_dims", "dropout"}) for part-seg fine-tuning.

    ``pretrained_path``: a part-seg pretraining file (``--model dgcnn_seg``, or the published one) or its run
    directory; emb_dims comes from the file (a differing ``emb_dims`` is refused); k defaults to the published 40.
    """
    init_sd, source, meta = None, "scratch", None
    if pretrained_path:
        try:
            path = find_weights_file(pretrained_path)
        except FileNotFoundError as err:
            raise SystemExit(f"{prog}: --pretrained_path {err}") from None
        meta = WeightsMeta.read(path)
        if meta is not None and meta.model not in ("dgcnn_seg", "dgcnn_partseg"):
            raise SystemExit(
                f"{prog}: --pretrained_path {path} holds a {meta.model!r} model (per its .json sidecar); part "
                "segmentation starts from a part-segmentation encoder: train_crossmodal.py --model dgcnn_seg, or "
                "the published part-seg pretraining file."
            )
        init_sd, source = load_state_dict_file(path), str(path)
        file_emb = infer_emb_dims(prog, init_sd, path)
        if emb_dims is not None and emb_dims != file_emb:
            raise SystemExit(f"{prog}: --emb_dims {emb_dims} but {path} has emb_dims {file_emb}; drop "
                             "--emb_dims to take it from the file.")
        emb_dims = file_emb
    k_used = k if k is not None else PARTSEG_K
    pre_k = meta.model_args.get("k") if meta is not None else None
    if pre_k is not None and pre_k != k_used and warn:
        warnings.warn(f"The pretrained encoder used k={pre_k}; fine-tuning uses k={k_used} (paper: pretraining 15, "
                      "fine-tuning 40).", stacklevel=2)
    return init_sd, source, {"k": k_used, "emb_dims": emb_dims or PUBLISHED_EMB_DIMS, "dropout": dropout}


def load_partseg(prog: str, path: Path, k: int | None, class_choice: str | None, dropout: float,
                 edgeconv: str) -> tuple[DGCNNPartSeg, dict[str, Any], str | None]:
    """Rebuild a fine-tuned DGCNNPartSeg from a weights file (+ sidecar) and load it strictly.

    k: the flag, else the sidecar's, else the published 40; dropout: the sidecar's, else ``dropout``;
    emb_dims and the head size come from the weights; the category of a one-category head comes from
    ``class_choice`` or the sidecar. Returns (model on CPU, model_args, class_choice).
    """
    state_dict = load_state_dict_file(path)
    if "conv11.weight" not in state_dict:
        raise SystemExit(
            f"{prog}: --model_path {path} has no segmentation head (conv11.weight): it is a part-segmentation "
            f"pretraining checkpoint (an encoder). Fine-tune it first: python {prog} --pretrained_path {path}; "
            "then evaluate the result with --eval --model_path <run>/checkpoints/partseg_best.pth."
        )
    meta = WeightsMeta.read(path)
    settings = resolve_settings(("k", "dropout"), {"k": k}, meta, {},
                                {"k": (PARTSEG_K, "published default"), "dropout": (dropout, "--dropout")})
    for name, flag, saved in settings.conflicts:
        warnings.warn(f"--{name} {flag} differs from the {name}={saved} the checkpoint was trained with.",
                      stacklevel=2)
    model_args = {"k": int(settings.values["k"]), "emb_dims": infer_emb_dims(prog, state_dict, path),
                  "num_parts": int(state_dict["conv11.weight"].shape[0]),
                  "dropout": float(settings.values["dropout"])}
    class_choice = class_choice or (meta.extra.get("class_choice") if meta is not None else None)
    expected = (SHAPENET_PART_NUM_PARTS if class_choice is None
                else SHAPENET_PART_PARTS_PER_CATEGORY[SHAPENET_PART_CATEGORIES.index(class_choice)])
    if model_args["num_parts"] != expected:
        raise SystemExit(
            f"{prog}: {path} has a {model_args['num_parts']}-part head but "
            f"{'all categories need 50' if class_choice is None else f'{class_choice} has {expected} parts'}; "
            "pass the --class_choice the model was trained with."
        )
    model = build_partseg(model_args, edgeconv)
    load_pretrained(model, state_dict)
    return model, model_args, class_choice
