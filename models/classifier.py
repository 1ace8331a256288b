"""Point-cloud classifiers for fine-tuning: a CrossPoint point encoder plus the DGCNN paper's head.

The classifier *is* the encoder (a subclass), so its state-dict keys are the encoder's keys (exactly
those of a pretraining checkpoint, ``inv_head`` included) plus the head's: ``linear1`` (2 * emb_dims ->
512, no bias) -> ``bn6`` -> LeakyReLU(0.2) -> dropout -> ``linear2`` (512 -> 256) -> ``bn7`` -> LeakyReLU(0.2)
-> dropout -> ``linear3`` (256 -> classes), the names and layers of the DGCNN reference classifier
(WangYueFt/dgcnn ``DGCNN``). A pretraining checkpoint therefore loads with exactly the head new.
The pretraining projection head ``inv_head`` is kept (so the keys match) but unused and frozen.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.dgcnn import DGCNN, DGCNN_K, NEGATIVE_SLOPE
from models.pointnet import PointNet

CLS_HEAD_PREFIXES = ("linear1.", "bn6.", "linear2.", "bn7.", "linear3.")


class _ClassificationHead:
    """Adds the DGCNN classification head to an encoder that has ``feat_dim`` and ``inv_head``."""

    def _add_head(self, num_classes: int, dropout: float) -> None:
        self.num_classes = num_classes
        self.linear1 = nn.Linear(self.feat_dim, 512, bias=False)
        self.bn6 = nn.BatchNorm1d(512)
        self.dp1 = nn.Dropout(p=dropout)
        self.linear2 = nn.Linear(512, 256)
        self.bn7 = nn.BatchNorm1d(256)
        self.dp2 = nn.Dropout(p=dropout)
        self.linear3 = nn.Linear(256, num_classes)
        # The pretraining projection head is not part of the classifier: never gets a gradient.
        self.inv_head.requires_grad_(False)

    def _head(self, feat: torch.Tensor) -> torch.Tensor:
        """feat (B, feat_dim) -> logits (B, num_classes)."""
        x = self.dp1(F.leaky_relu(self.bn6(self.linear1(feat)), NEGATIVE_SLOPE))  # (B, 512)
        x = self.dp2(F.leaky_relu(self.bn7(self.linear2(x)), NEGATIVE_SLOPE))  # (B, 256)
        return self.linear3(x)  # (B, num_classes)


class DGCNNCls(_ClassificationHead, DGCNN):
    """DGCNN classifier (the DGCNN paper's network, CrossPoint's encoder keys).

    forward: x (B, 3, N) -> logits (B, num_classes); ``features(x)`` is the encoder's (B, 2 * emb_dims).
    """

    def __init__(self, num_classes: int, k: int = DGCNN_K, emb_dims: int = 1024, dropout: float = 0.5,
                 edgeconv: str = "fast") -> None:
        DGCNN.__init__(self, k=k, emb_dims=emb_dims, edgeconv=edgeconv)
        self._add_head(num_classes, dropout)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return DGCNN.forward(self, x)  # (B, 2 * emb_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._head(self.features(x))  # (B, num_classes)


class PointNetCls(_ClassificationHead, PointNet):
    """PointNet classifier with the same head (on the (B, emb_dims) max-pooled feature)."""

    def __init__(self, num_classes: int, emb_dims: int = 1024, dropout: float = 0.5) -> None:
        PointNet.__init__(self, emb_dims=emb_dims)
        self._add_head(num_classes, dropout)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return PointNet.forward(self, x)  # (B, emb_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._head(self.features(x))  # (B, num_classes)


CLASSIFIERS = {"dgcnn": DGCNNCls, "pointnet": PointNetCls}
