"""Build a point encoder from any checkpoint: this project's weights (with sidecar), the published
``dgcnn_cls_best.pth`` / part-seg pretraining files (no sidecar), or ``"random"`` (random init).

Each of model / k / emb_dims is decided by :func:`util.checkpoint.resolve_settings`: the explicit argument,
then the sidecar, then what the state dict shows (model from its keys, emb_dims from ``inv_head.0.weight``),
then the published values (dgcnn, k=15, emb_dims=1024); the source of each is reported. The model class
comes from the caller (``build``, e.g. ``models.build_point_encoder``): util does not import models.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from util.checkpoint import CheckpointError, WeightsMeta, load_point_encoder_file, load_pretrained, resolve_settings
from util.presets import PRETRAIN_K, PUBLISHED_EMB_DIMS

__all__ = ["RANDOM_INIT", "LoadedEncoder", "load_point_encoder", "infer_point_encoder", "sha1_file"]

RANDOM_INIT = "random"
BuildFn = Callable[..., nn.Module]


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
    build: BuildFn,
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
        build: ``build(name, k=..., emb_dims=..., edgeconv=...) -> nn.Module`` (``models.build_point_encoder``).
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
        # Differs from the original: its eval_fewshot.py hard-coded k=5 while the published model was trained
        # with k=15; here k comes from the checkpoint's meta, else the published 15, and is printed.
        {"model": ("dgcnn", "default"), "emb_dims": (PUBLISHED_EMB_DIMS, "published default"),
         "k": (PRETRAIN_K, f"published default (original scripts/script.sh --k {PRETRAIN_K})")},
    )
    for name, flag, saved in settings.conflicts:
        print(f"WARNING: --{name} {flag} differs from the checkpoint's {name}={saved} (sidecar meta); the features "
              "will not be the ones the encoder was trained to produce", file=sys.stderr, flush=True)
    name, emb, k_used = settings.values["model"], int(settings.values["emb_dims"]), int(settings.values["k"])
    torch.manual_seed(seed)
    net = build(name, k=k_used, emb_dims=emb, edgeconv=edgeconv)
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
