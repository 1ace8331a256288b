"""CrossPoint models: point encoders, the image encoder, projection heads and losses.

``POINT_ENCODERS`` maps the ``--model`` names of the original scripts to encoder constructors.
torchvision is imported only when an image encoder is built (see ``build_image_encoder``).
"""

import functools

import torch.nn as nn

from models.dgcnn import DGCNN, DGCNNPartSeg
from models.pointnet import PointNet

POINT_ENCODERS = {
    "dgcnn": DGCNN,
    "dgcnn_seg": functools.partial(DGCNNPartSeg, pretrain=True),
    "pointnet": PointNet,
}


def build_point_encoder(name: str, k: int = 20, emb_dims: int = 1024, edgeconv: str = "fast") -> nn.Module:
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
