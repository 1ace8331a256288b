"""Image encoder of CrossPoint: a torchvision ResNet without its classifier, plus a projection head.

Keys equal the official image checkpoints (``resnet.*`` and ``inv_head.*``). The ResNet is built
with ``weights=None``: CrossPoint trains it from scratch (the original calls ``resnet50()``).
"""

import torch
import torch.nn as nn
import torchvision

from models.heads import ProjectionHead

RESNET_FEAT_DIMS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048}


class ResNetEncoder(nn.Module):
    """ResNet feature extractor (``fc`` replaced by ``nn.Identity``) with ``inv_head``.

    Args:
        arch: torchvision ResNet name (paper: "resnet50"; "resnet18" for quick runs and tests).

    forward: images (B, 3, H, W) -> (B, F) pooled features, F = 2048 for resnet50, 512 for
    resnet18. ``inv_head`` (F -> 512 -> BatchNorm1d -> ReLU -> 256, no biases) maps them to (B, 256).
    """

    def __init__(self, arch: str = "resnet50") -> None:
        super().__init__()
        if arch not in RESNET_FEAT_DIMS:
            raise ValueError(f"models/image_encoder.py: unknown arch {arch!r}; use one of {sorted(RESNET_FEAT_DIMS)}.")
        self.arch = arch
        self.feat_dim = RESNET_FEAT_DIMS[arch]
        self.resnet = getattr(torchvision.models, arch)(weights=None)
        self.resnet.fc = nn.Identity()
        self.inv_head = ProjectionHead(self.feat_dim, 512, 256, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) images -> (B, feat_dim) features."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"models/image_encoder.py: expected images of shape (B, 3, H, W), got {tuple(x.shape)}.")
        # Differs from the original: its forward also applies inv_head; here the caller does, like
        # for the point encoders, so the pooled feature is available too.
        return self.resnet(x)  # (B, feat_dim)
