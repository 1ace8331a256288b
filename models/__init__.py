"""CrossPoint models: point encoders, the image encoder, projection heads and losses.

``POINT_ENCODERS`` maps the ``--model`` names of the original scripts to encoder constructors.
torchvision is imported only when an image encoder is built (see ``build_image_encoder``).
"""

import functools

import torch.nn as nn

from models.classifier import CLASSIFIERS, CLS_HEAD_PREFIXES
from models.dgcnn import DGCNN, DGCNN_K, DGCNNPartSeg
from models.pointnet import PointNet

__all__ = ["CLASSIFIERS", "CLS_HEAD_PREFIXES", "DGCNN", "DGCNN_K", "DGCNNPartSeg", "POINT_ENCODERS", "PointNet",
           "build_classifier", "build_image_encoder", "build_point_encoder"]

POINT_ENCODERS = {
    "dgcnn": DGCNN,
    "dgcnn_seg": functools.partial(DGCNNPartSeg, pretrain=True),
    "pointnet": PointNet,
}


def build_point_encoder(name: str, k: int = DGCNN_K, emb_dims: int = 1024, edgeconv: str = "fast") -> nn.Module:
    """Build a point encoder: forward (B, 3, N) -> (B, feat_dim), with ``.inv_head`` -> (B, 256).

    Args:
        name: "dgcnn", "dgcnn_seg" (part-seg encoder in pretraining mode) or "pointnet".
        k: kNN size of the DGCNN encoders (CrossPoint pretraining script: 15 or 20); PointNet ignores it.
        emb_dims: embedding width (paper: 1024).
        edgeconv: "fast" or "plain" EdgeConv implementation; PointNet ignores it.
    """
    if name not in POINT_ENCODERS:
        raise ValueError(f"models: unknown point encoder {name!r}; choose one of {sorted(POINT_ENCODERS)}.")
    if name == "pointnet":
        return POINT_ENCODERS[name](emb_dims=emb_dims)
    return POINT_ENCODERS[name](k=k, emb_dims=emb_dims, edgeconv=edgeconv)


def build_image_encoder(arch: str = "resnet50") -> nn.Module:
    """Build ``ResNetEncoder(arch)`` (paper: resnet50): forward (B, 3, H, W) -> (B, F), ``.inv_head`` -> (B, 256)."""
    from models.image_encoder import ResNetEncoder

    return ResNetEncoder(arch)


def build_classifier(name: str, num_classes: int, k: int = DGCNN_K, emb_dims: int = 1024, dropout: float = 0.5,
                     edgeconv: str = "fast") -> nn.Module:
    """Build a point-cloud classifier: a point encoder (same keys as ``build_point_encoder(name)``) plus the
    DGCNN paper's head ``linear1``..``linear3`` (keys ``CLS_HEAD_PREFIXES``).

    Args:
        name: "dgcnn" or "pointnet".
        num_classes: output classes.
        k, emb_dims, edgeconv: as in :func:`build_point_encoder` (PointNet ignores k and edgeconv).
        dropout: dropout of the head (DGCNN paper: 0.5).
    forward: x (B, 3, N) -> logits (B, num_classes).
    """
    if name not in CLASSIFIERS:
        raise ValueError(f"models: no classifier for {name!r}; choose one of {sorted(CLASSIFIERS)}.")
    if name == "pointnet":
        return CLASSIFIERS[name](num_classes, emb_dims=emb_dims, dropout=dropout)
    return CLASSIFIERS[name](num_classes, k=k, emb_dims=emb_dims, dropout=dropout, edgeconv=edgeconv)
