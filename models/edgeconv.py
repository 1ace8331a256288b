"""EdgeConv building blocks shared by the DGCNN encoders.

The plain formulation (``impl="plain"``) is the one of the original DGCNN/CrossPoint code: it
materializes the (B, 2C, N, k) edge tensor ``concat(x_j - x_i, x_i)``, applies a 1x1 conv,
BatchNorm and LeakyReLU, and takes the max over the k neighbours. It is kept as the reference
for tests and benchmarks.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k nearest neighbours of every point, the point itself included.

    Args:
        x: (B, C, N) point features.
        k: number of neighbours.
    Returns:
        (B, N, k) int64 indices into the N points, nearest first.
    """
    inner = -2 * torch.matmul(x.transpose(2, 1), x)  # (B, N, N)
    xx = torch.sum(x**2, dim=1, keepdim=True)  # (B, 1, N)
    neg_sq_dist = -xx - inner - xx.transpose(2, 1)  # (B, N, N)
    return neg_sq_dist.topk(k=k, dim=-1)[1]  # (B, N, k)


def gather_neighbors(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Neighbour features x_j for every (point i, neighbour slot j).

    Args:
        x: (B, C, N) point features.
        idx: (B, N, k) neighbour indices.
    Returns:
        (B, C, N, k) tensor with out[b, :, i, j] = x[b, :, idx[b, i, j]].
    """
    batch_size, num_dims, num_points = x.shape
    k = idx.shape[-1]
    base = torch.arange(batch_size, device=x.device).view(-1, 1, 1) * num_points  # (B, 1, 1)
    flat_idx = (idx + base).reshape(-1)  # (B*N*k,)
    x_t = x.transpose(2, 1).reshape(batch_size * num_points, num_dims)  # (B*N, C)
    nbr = x_t[flat_idx].view(batch_size, num_points, k, num_dims)  # (B, N, k, C)
    return nbr.permute(0, 3, 1, 2)  # (B, C, N, k)


def graph_feature(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Edge features concat(x_j - x_i, x_i) of the original DGCNN.

    Args:
        x: (B, C, N) point features.
        idx: (B, N, k) neighbour indices.
    Returns:
        (B, 2C, N, k) edge features.
    """
    k = idx.shape[-1]
    nbr = gather_neighbors(x, idx)  # (B, C, N, k)
    center = x.unsqueeze(-1).expand(-1, -1, -1, k)  # (B, C, N, k)
    return torch.cat((nbr - center, center), dim=1)  # (B, 2C, N, k)


def edge_conv_plain(
    x: torch.Tensor,
    idx: torch.Tensor,
    conv: nn.Conv2d,
    bn: nn.BatchNorm2d,
    negative_slope: float = 0.2,
) -> torch.Tensor:
    """Reference EdgeConv: max_j LeakyReLU(BN(conv(concat(x_j - x_i, x_i)))).

    Args:
        x: (B, C, N) point features.
        idx: (B, N, k) neighbour indices.
        conv: 1x1 ``nn.Conv2d(2C, C_out, bias=False)``.
        bn: ``nn.BatchNorm2d(C_out)``; train/eval mode is taken from the module.
        negative_slope: LeakyReLU slope (original: 0.2).
    Returns:
        (B, C_out, N) features.
    """
    edge = graph_feature(x, idx)  # (B, 2C, N, k)
    y = F.leaky_relu(bn(conv(edge)), negative_slope)  # (B, C_out, N, k)
    return y.max(dim=-1)[0]  # (B, C_out, N)


def edge_conv_fast(
    x: torch.Tensor,
    idx: torch.Tensor,
    conv: nn.Conv2d,
    bn: nn.BatchNorm2d,
    negative_slope: float = 0.2,
) -> torch.Tensor:
    """Fast EdgeConv with the same result as :func:`edge_conv_plain` (placeholder: plain)."""
    return edge_conv_plain(x, idx, conv, bn, negative_slope)


def edge_conv_first(x: torch.Tensor, idx: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """conv(graph_feature(x, idx)) as (B, C_out, N, k) (placeholder: plain)."""
    return conv(graph_feature(x, idx))


def edge_conv(
    x: torch.Tensor,
    idx: torch.Tensor,
    conv: nn.Conv2d,
    bn: nn.BatchNorm2d,
    negative_slope: float = 0.2,
    impl: str = "fast",
) -> torch.Tensor:
    """EdgeConv dispatcher: ``impl="fast"`` or ``"plain"``; (B, C, N) -> (B, C_out, N)."""
    if impl == "fast":
        return edge_conv_fast(x, idx, conv, bn, negative_slope)
    if impl == "plain":
        return edge_conv_plain(x, idx, conv, bn, negative_slope)
    raise ValueError(f"models/edgeconv.py: unknown edgeconv impl {impl!r}; use 'fast' or 'plain'.")
