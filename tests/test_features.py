"""evaluation/features.py: feature extraction in eval mode without gradients."""

import numpy as np
import torch
from torch import nn

from evaluation.features import extract_features


class ToyEncoder(nn.Module):
    """(B, 3, P) -> (B, 8) with BatchNorm and Dropout, so train and eval mode differ."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 8, 1)
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.5)
        self.seen_shapes: list[tuple[int, ...]] = []
        self.grad_enabled: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen_shapes.append(tuple(x.shape))
        self.grad_enabled.append(torch.is_grad_enabled())
        return self.drop(self.bn(self.conv(x))).max(dim=2).values  # (B, 8, P) -> (B, 8)


def _toy_loader(n: int = 10, points: int = 16, batch_size: int = 4):
    g = torch.Generator().manual_seed(0)
    items = [(torch.randn(points, 3, generator=g), i % 3) for i in range(n)]
    return torch.utils.data.DataLoader(items, batch_size=batch_size, shuffle=False)


def _toy_loader(n: int = 10, points: int = 16, batch_size: int = 4):
    g = torch.Generator().manual_seed(0)
    items = [(torch.randn(points, 3, generator=g), i % 3) for i in range(n)]
    return torch.utils.data.DataLoader(items, batch_size=batch_size, shuffle=False)


def test_extract_features_shapes_eval_mode_no_grad():
    model = ToyEncoder().train()
    loader = _toy_loader()
    f1, y1 = extract_features(model, loader, "cpu", progress=False)
    assert f1.shape == (10, 8) and f1.dtype == np.float32
    assert y1.dtype == np.int64 and y1.tolist() == [i % 3 for i in range(10)]
    assert model.seen_shapes[0] == (4, 3, 16)  # (B, P, 3) batches are fed as (B, 3, P)
    assert not any(model.grad_enabled)
    assert model.training  # previous mode restored
    # eval mode: dropout off and BN running stats used -> deterministic, and equal to a manual eval pass
    f2, _ = extract_features(model, loader, "cpu", progress=True)
    np.testing.assert_array_equal(f1, f2)
    model.eval()
    with torch.no_grad():
        ref = torch.cat([model(p.transpose(1, 2)) for p, _ in loader]).numpy()
    np.testing.assert_allclose(f1, ref, rtol=1e-6, atol=1e-6)
    assert model.bn.num_batches_tracked.item() == 0  # running stats were never updated


def test_extract_features_float64_model():
    model = ToyEncoder().double()
    f, _ = extract_features(model, _toy_loader(), "cpu", progress=False)
    assert f.dtype == np.float32 and f.shape == (10, 8)
