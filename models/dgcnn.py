"""DGCNN encoders of CrossPoint: the classification-style encoder and the part-segmentation network.

Both follow the original CrossPoint code (``models/dgcnn.py`` of MohamedAfham/CrossPoint, itself
from the DGCNN reference implementation) layer for layer, and their state-dict keys and shapes
equal those of the official checkpoints (``bn1.*`` and ``conv1.1.*`` name the same BatchNorm, as in
the original ``nn.Sequential(conv, self.bn1, LeakyReLU)`` blocks).

EdgeConv layers go through :mod:`models.edgeconv`: ``edgeconv="plain"`` materializes the
(B, 2C, N, k) edge tensor exactly like the original; ``edgeconv="fast"`` computes the same
function with less memory. kNN is recomputed on every layer's input features and includes the
point itself, like the original ``knn`` (top-k of the negative squared distance); "plain" uses
the original formula verbatim, "fast" a chunked equivalent (:func:`models.edgeconv.knn`).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.edgeconv import edge_conv, edge_conv_first, graph_feature, knn, knn_plain
from models.heads import ProjectionHead

EDGECONV_IMPLS = ("fast", "plain")
NEGATIVE_SLOPE = 0.2
DGCNN_K = 20  # the DGCNN paper's neighbour count (classification); CrossPoint's own values: util/presets.py


def _check_edgeconv(impl: str) -> str:
    if impl not in EDGECONV_IMPLS:
        raise ValueError(f"models/dgcnn.py: unknown edgeconv implementation {impl!r}; use one of {EDGECONV_IMPLS}.")
    return impl


def _check_points(x: torch.Tensor, k: int) -> None:
    """Validate a (B, 3, N) point batch against the neighbourhood size k."""
    if x.dim() != 3 or x.shape[1] != 3:
        raise ValueError(
            f"models/dgcnn.py: expected points of shape (B, 3, N), got {tuple(x.shape)}; "
            "a (B, N, 3) batch must be transposed with x.transpose(1, 2) first."
        )
    if x.shape[2] < k:
        raise ValueError(f"models/dgcnn.py: k={k} neighbours need at least k points per cloud, got N={x.shape[2]}.")


def _conv_block2d(in_ch: int, out_ch: int, bn: nn.BatchNorm2d) -> nn.Sequential:
    """1x1 Conv2d (no bias) -> the given BatchNorm2d -> LeakyReLU(0.2), as in the original."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=False), bn, nn.LeakyReLU(NEGATIVE_SLOPE))


def _conv_block1d(in_ch: int, out_ch: int, bn: nn.BatchNorm1d) -> nn.Sequential:
    """1x1 Conv1d (no bias) -> the given BatchNorm1d -> LeakyReLU(0.2), as in the original."""
    return nn.Sequential(nn.Conv1d(in_ch, out_ch, kernel_size=1, bias=False), bn, nn.LeakyReLU(NEGATIVE_SLOPE))


def _knn(x: torch.Tensor, k: int, impl: str) -> torch.Tensor:
    """(B, C, N) -> (B, N, k) neighbour indices with the kNN of the chosen implementation."""
    return knn_plain(x, k) if impl == "plain" else knn(x, k)


def _edge_conv_block(x: torch.Tensor, k: int, block: nn.Sequential, impl: str) -> torch.Tensor:
    """One EdgeConv layer max_j block(concat(x_j - x_i, x_i)) with kNN on x.

    Args:
        x: (B, C, N) features.
        k: neighbours per point (self included).
        block: ``nn.Sequential(Conv2d(2C, C_out), BatchNorm2d, LeakyReLU)``.
        impl: "fast" or "plain".
    Returns:
        (B, C_out, N) features.
    """
    idx = _knn(x, k, impl)  # (B, N, k)
    return edge_conv(x, idx, block[0], block[1], NEGATIVE_SLOPE, impl=impl)


def _stacked_edge_conv(
    x: torch.Tensor, idx: torch.Tensor, first: nn.Sequential, second: nn.Sequential, impl: str
) -> torch.Tensor:
    """Two stacked conv blocks on the edge features, then the max over the k neighbours.

    Args:
        x: (B, C, N) features.
        idx: (B, N, k) neighbour indices.
        first: ``Sequential(Conv2d(2C, C1), BatchNorm2d, LeakyReLU)`` applied to the edge features.
        second: ``Sequential(Conv2d(C1, C2), BatchNorm2d, LeakyReLU)``.
        impl: "fast" (first conv via the weight split of :func:`edge_conv_first`) or "plain".
    Returns:
        (B, C2, N) features.
    """
    if impl == "fast":
        h = edge_conv_first(x, idx, first[0])  # (B, C1, N, k)
    else:
        h = first[0](graph_feature(x, idx))  # (B, C1, N, k)
    h = first[2](first[1](h))  # (B, C1, N, k)
    h = second(h)  # (B, C2, N, k)
    return h.max(dim=-1)[0]  # (B, C2, N)


class DGCNN(nn.Module):
    """DGCNN encoder used by CrossPoint for classification-style pretraining.

    Four EdgeConv layers (64, 64, 128, 256 channels), their concatenation (512) -> Conv1d to
    ``emb_dims`` -> BN -> LeakyReLU(0.2), then global max- and average-pooling concatenated.

    Args:
        k: neighbours per point, the point itself included (CrossPoint pretraining: 15 or 20).
        emb_dims: width of the last point-wise layer (paper: 1024).
        edgeconv: "fast" or "plain" EdgeConv implementation (same function).

    forward: x (B, 3, N) -> feature (B, 2 * emb_dims). ``inv_head`` maps it to (B, 256).
    """

    def __init__(self, k: int = DGCNN_K, emb_dims: int = 1024, edgeconv: str = "fast") -> None:
        super().__init__()
        self.k = k
        self.emb_dims = emb_dims
        self.feat_dim = 2 * emb_dims
        self.edgeconv = _check_edgeconv(edgeconv)

        self.bn1 = nn.BatchNorm2d(64)
        self.bn2 = nn.BatchNorm2d(64)
        self.bn3 = nn.BatchNorm2d(128)
        self.bn4 = nn.BatchNorm2d(256)
        self.bn5 = nn.BatchNorm1d(emb_dims)

        self.conv1 = _conv_block2d(3 * 2, 64, self.bn1)
        self.conv2 = _conv_block2d(64 * 2, 64, self.bn2)
        self.conv3 = _conv_block2d(64 * 2, 128, self.bn3)
        self.conv4 = _conv_block2d(128 * 2, 256, self.bn4)
        self.conv5 = _conv_block1d(512, emb_dims, self.bn5)

        self.inv_head = ProjectionHead(2 * emb_dims, emb_dims, 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, N) points -> (B, 2 * emb_dims) global feature (max-pool then avg-pool)."""
        # Differs from the original: returns the feature only, not (x, inv_feat, feat); call inv_head.
        _check_points(x, self.k)
        x1 = _edge_conv_block(x, self.k, self.conv1, self.edgeconv)  # (B, 64, N)
        x2 = _edge_conv_block(x1, self.k, self.conv2, self.edgeconv)  # (B, 64, N)
        x3 = _edge_conv_block(x2, self.k, self.conv3, self.edgeconv)  # (B, 128, N)
        x4 = _edge_conv_block(x3, self.k, self.conv4, self.edgeconv)  # (B, 256, N)
        x = self.conv5(torch.cat((x1, x2, x3, x4), dim=1))  # (B, emb_dims, N)
        return torch.cat((x.max(dim=-1)[0], x.mean(dim=-1)), dim=1)  # (B, 2 * emb_dims)


class TransformNet(nn.Module):
    """The 3x3 spatial transformer of the DGCNN part-segmentation network (``Transform_Net``).

    Its keys reproduce the original exactly, including a quirk: the original assigns ``self.bn3``
    twice, so ``conv3.1`` is a BatchNorm1d(1024) of its own while ``bn3`` is the BatchNorm1d(512)
    after ``linear1``. The transform is initialized to the identity (weight 0, bias eye(3)).

    forward: x (B, 3, N) points, idx (B, N, k) neighbours -> (B, 3, 3) transform.
    """

    def __init__(self, edgeconv: str = "fast") -> None:
        super().__init__()
        self.edgeconv = _check_edgeconv(edgeconv)
        self.bn1 = nn.BatchNorm2d(64)
        self.bn2 = nn.BatchNorm2d(128)
        self.bn3 = nn.BatchNorm1d(1024)

        self.conv1 = _conv_block2d(3 * 2, 64, self.bn1)
        self.conv2 = _conv_block2d(64, 128, self.bn2)
        self.conv3 = _conv_block1d(128, 1024, self.bn3)

        self.linear1 = nn.Linear(1024, 512, bias=False)
        self.bn3 = nn.BatchNorm1d(512)  # Re-assigned as in the original: conv3.1 keeps the 1024-d one.
        self.linear2 = nn.Linear(512, 256, bias=False)
        self.bn4 = nn.BatchNorm1d(256)

        self.transform = nn.Linear(256, 3 * 3)
        nn.init.zeros_(self.transform.weight)
        with torch.no_grad():
            self.transform.bias.copy_(torch.eye(3).flatten())

    def forward(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        batch_size = x.shape[0]
        h = _stacked_edge_conv(x, idx, self.conv1, self.conv2, self.edgeconv)  # (B, 128, N)
        h = self.conv3(h).max(dim=-1)[0]  # (B, 1024)
        h = F.leaky_relu(self.bn3(self.linear1(h)), NEGATIVE_SLOPE)  # (B, 512)
        h = F.leaky_relu(self.bn4(self.linear2(h)), NEGATIVE_SLOPE)  # (B, 256)
        return self.transform(h).view(batch_size, 3, 3)  # (B, 3, 3)


class DGCNNPartSeg(nn.Module):
    """DGCNN part-segmentation network of CrossPoint (``DGCNN_partseg``).

    TransformNet -> EdgeConv blocks [conv1+conv2], [conv3+conv4], [conv5] (64 channels each) ->
    concat (192) -> conv6 to ``emb_dims`` -> max over points. Fine-tuning head: the category
    one-hot -> conv7 (64), concatenated with the global feature and repeated over the points, plus
    the three EdgeConv outputs (emb_dims + 64 + 192 = 1280 channels for emb_dims=1024) -> conv8
    (256) -> dropout -> conv9 (256) -> dropout -> conv10 (128) -> conv11 (num_parts, no bias).

    Args:
        k: neighbours per point, self included (paper fine-tuning: 40).
        emb_dims: global feature size (paper: 1024).
        num_parts: part classes (ShapeNetPart: 50).
        num_categories: object categories of the one-hot input (ShapeNetPart: 16).
        pretrain: True builds the encoder only (no conv7..conv11), as used for pretraining.
        dropout: dropout probability of the head (original: 0.5).
        edgeconv: "fast" or "plain" EdgeConv implementation (same function).

    forward: pretrain=True: x (B, 3, N) -> (B, emb_dims) global feature;
        pretrain=False: x (B, 3, N), category_one_hot (B, num_categories) -> (B, num_parts, N) logits.

    Modules present only for state-dict compatibility with the official checkpoints (``bn7..bn10``
    in pretrain mode, ``inv_head`` in fine-tuning mode) never get a gradient; their parameters are
    created with ``requires_grad=False`` so DistributedDataParallel needs no
    ``find_unused_parameters`` (optimizers skipped them in the original too, their grad being None).
    """

    def __init__(
        self,
        k: int = 40,
        emb_dims: int = 1024,
        num_parts: int = 50,
        num_categories: int = 16,
        pretrain: bool = False,
        dropout: float = 0.5,
        edgeconv: str = "fast",
    ) -> None:
        super().__init__()
        self.k = k
        self.emb_dims = emb_dims
        self.num_parts = num_parts
        self.num_categories = num_categories
        self.pretrain = pretrain
        self.feat_dim = emb_dims
        self.edgeconv = _check_edgeconv(edgeconv)

        self.transform_net = TransformNet(edgeconv=edgeconv)

        self.bn1 = nn.BatchNorm2d(64)
        self.bn2 = nn.BatchNorm2d(64)
        self.bn3 = nn.BatchNorm2d(64)
        self.bn4 = nn.BatchNorm2d(64)
        self.bn5 = nn.BatchNorm2d(64)
        self.bn6 = nn.BatchNorm1d(emb_dims)
        self.bn7 = nn.BatchNorm1d(64)
        self.bn8 = nn.BatchNorm1d(256)
        self.bn9 = nn.BatchNorm1d(256)
        self.bn10 = nn.BatchNorm1d(128)

        self.conv1 = _conv_block2d(3 * 2, 64, self.bn1)
        self.conv2 = _conv_block2d(64, 64, self.bn2)
        self.conv3 = _conv_block2d(64 * 2, 64, self.bn3)
        self.conv4 = _conv_block2d(64, 64, self.bn4)
        self.conv5 = _conv_block2d(64 * 2, 64, self.bn5)
        self.conv6 = _conv_block1d(64 * 3, emb_dims, self.bn6)

        self.inv_head = ProjectionHead(emb_dims, emb_dims, 256)

        # Differs from the original: modules kept only for the official key list are frozen
        # (their grad was always None there, so optimizers skipped them; numerics are unchanged).
        if pretrain:
            for bn in (self.bn7, self.bn8, self.bn9, self.bn10):
                bn.requires_grad_(False)
        else:
            self.inv_head.requires_grad_(False)
            self.conv7 = _conv_block1d(num_categories, 64, self.bn7)
            self.conv8 = _conv_block1d(emb_dims + 64 + 64 * 3, 256, self.bn8)
            self.dp1 = nn.Dropout(p=dropout)
            self.conv9 = _conv_block1d(256, 256, self.bn9)
            self.dp2 = nn.Dropout(p=dropout)
            self.conv10 = _conv_block1d(256, 128, self.bn10)
            self.conv11 = nn.Conv1d(128, num_parts, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor, category_one_hot: torch.Tensor | None = None) -> torch.Tensor:
        """See the class docstring for shapes."""
        _check_points(x, self.k)
        batch_size, _, num_points = x.shape
        if self.pretrain and category_one_hot is not None:
            raise ValueError("models/dgcnn.py: DGCNNPartSeg(pretrain=True) has no head; call it as model(x).")
        if not self.pretrain:
            if category_one_hot is None:
                raise ValueError(
                    "models/dgcnn.py: DGCNNPartSeg(pretrain=False) needs category_one_hot of shape "
                    f"(B, {self.num_categories}); call it as model(x, category_one_hot)."
                )
            if tuple(category_one_hot.shape) != (batch_size, self.num_categories):
                raise ValueError(
                    f"models/dgcnn.py: category_one_hot must have shape ({batch_size}, {self.num_categories}), "
                    f"got {tuple(category_one_hot.shape)}."
                )

        t = self.transform_net(x, _knn(x, self.k, self.edgeconv))  # (B, 3, 3)
        x = torch.bmm(x.transpose(2, 1), t).transpose(2, 1)  # (B, 3, N)

        idx = _knn(x, self.k, self.edgeconv)  # (B, N, k)
        x1 = _stacked_edge_conv(x, idx, self.conv1, self.conv2, self.edgeconv)  # (B, 64, N)
        idx = _knn(x1, self.k, self.edgeconv)  # (B, N, k)
        x2 = _stacked_edge_conv(x1, idx, self.conv3, self.conv4, self.edgeconv)  # (B, 64, N)
        x3 = _edge_conv_block(x2, self.k, self.conv5, self.edgeconv)  # (B, 64, N)

        g = self.conv6(torch.cat((x1, x2, x3), dim=1)).max(dim=-1, keepdim=True)[0]  # (B, emb_dims, 1)
        if self.pretrain:
            # Differs from the original: returns the feature only (not (x, inv_feat, x)), no print,
            # and a view instead of squeeze() so B=1 keeps its batch dimension.
            return g.view(batch_size, self.emb_dims)  # (B, emb_dims)

        c = category_one_hot.to(dtype=x.dtype).view(batch_size, self.num_categories, 1)  # (B, num_categories, 1)
        c = self.conv7(c)  # (B, 64, 1)
        g = torch.cat((g, c), dim=1).expand(-1, -1, num_points)  # (B, emb_dims + 64, N)
        h = torch.cat((g, x1, x2, x3), dim=1)  # (B, emb_dims + 64 + 192, N)
        h = self.dp1(self.conv8(h))  # (B, 256, N)
        h = self.dp2(self.conv9(h))  # (B, 256, N)
        h = self.conv10(h)  # (B, 128, N)
        return self.conv11(h)  # (B, num_parts, N)
