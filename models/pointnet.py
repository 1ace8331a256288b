"""PointNet encoder for CrossPoint pretraining.

The feature extractor follows the ``PointNet`` class of the original CrossPoint code (itself from
the DGCNN reference implementation): a shared point-wise MLP of 1x1 Conv1d layers
3 -> 64 -> 64 -> 64 -> 128 -> emb_dims, each without bias and followed by BatchNorm1d and ReLU,
then a global max pool. Module names (conv1..conv5, bn1..bn5) are those of the original. The
original's classifier layers (linear1, bn6, dp1, linear2) are not built: CrossPoint uses the
encoder's global feature only.

Choices of this reproduction (the original CrossPoint code never shipped a PointNet projection
head, although the paper reports PointNet results):
- ``inv_head`` is ``ProjectionHead(emb_dims, emb_dims, 256)``: Linear (with bias) -> BatchNorm1d ->
  ReLU -> Linear, i.e. hidden width = emb_dims, the same layout as the head of the official
  DGCNN part-segmentation encoder, whose global feature also has emb_dims channels.
- No input or feature transform networks (T-Net), as in the original ``PointNet`` class.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.heads import ProjectionHead


class PointNet(nn.Module):
    """PointNet global-feature encoder.

    Args:
        emb_dims: size of the global feature (paper: 1024).

    forward: x (B, 3, N) -> (B, emb_dims). ``inv_head`` maps it to (B, 256).
    """

    def __init__(self, emb_dims: int = 1024) -> None:
        super().__init__()
        self.emb_dims = emb_dims
        self.feat_dim = emb_dims
        self.conv1 = nn.Conv1d(3, 64, kernel_size=1, bias=False)
        self.conv2 = nn.Conv1d(64, 64, kernel_size=1, bias=False)
        self.conv3 = nn.Conv1d(64, 64, kernel_size=1, bias=False)
        self.conv4 = nn.Conv1d(64, 128, kernel_size=1, bias=False)
        self.conv5 = nn.Conv1d(128, emb_dims, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm1d(64)
        self.bn2 = nn.BatchNorm1d(64)
        self.bn3 = nn.BatchNorm1d(64)
        self.bn4 = nn.BatchNorm1d(128)
        self.bn5 = nn.BatchNorm1d(emb_dims)
        self.inv_head = ProjectionHead(emb_dims, emb_dims, 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, N) points -> (B, emb_dims) max-pooled feature."""
        if x.dim() != 3 or x.shape[1] != 3:
            raise ValueError(
                f"models/pointnet.py: expected points of shape (B, 3, N), got {tuple(x.shape)}; "
                "a (B, N, 3) batch must be transposed with x.transpose(1, 2) first."
            )
        x = F.relu(self.bn1(self.conv1(x)))  # (B, 64, N)
        x = F.relu(self.bn2(self.conv2(x)))  # (B, 64, N)
        x = F.relu(self.bn3(self.conv3(x)))  # (B, 64, N)
        x = F.relu(self.bn4(self.conv4(x)))  # (B, 128, N)
        x = F.relu(self.bn5(self.conv5(x)))  # (B, emb_dims, N)
        return x.max(dim=-1)[0]  # (B, emb_dims)
