"""Projection heads that map encoder features into the 256-d contrastive embedding space."""

import torch.nn as nn


class ProjectionHead(nn.Sequential):
    """Linear -> BatchNorm1d -> ReLU -> Linear, as the ``inv_head`` of the original CrossPoint code.

    Being an ``nn.Sequential`` with exactly these four children keeps the official state-dict keys
    ``0.*`` (first Linear), ``1.*`` (BatchNorm1d) and ``3.*`` (second Linear).

    Args:
        in_dim: input feature size F.
        hidden_dim: width of the hidden layer.
        out_dim: embedding size (CrossPoint: 256).
        bias: whether the two Linear layers have a bias (True for the point encoders,
            False for the image encoder in the original code).

    Shapes: (B, in_dim) -> (B, out_dim).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int = 256, bias: bool = True) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden_dim, bias=bias),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim, bias=bias),
        )
        self.in_dim = in_dim
        self.hidden_dim = hidden_dim
        self.out_dim = out_dim
