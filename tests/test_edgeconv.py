"""Fast EdgeConv (models/edgeconv.py) against the plain formulation of the original code.

All comparisons run in float64 on small clouds: outputs, input gradients, parameter gradients
(conv weight, BN gamma and beta) and BN running statistics must agree to float tolerance, in train
and eval mode, with negative, zero and positive BN scales, with and without duplicate neighbours.
"""

import copy

import pytest
import torch
import torch.nn as nn

from models.edgeconv import (
    edge_conv,
    edge_conv_fast,
    edge_conv_first,
    edge_conv_plain,
    graph_feature,
    knn,
    knn_plain,
)

ATOL = 1e-11
RTOL = 1e-9


def make_layer(
    in_dims: int,
    out_dims: int,
    conv_bias: bool = False,
    affine: bool = True,
    track_running_stats: bool = True,
    momentum: float | None = 0.1,
    seed: int = 0,
) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """A float64 EdgeConv layer with gammas of both signs (one exactly 0) and non-trivial running stats."""
    gen = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(2 * in_dims, out_dims, kernel_size=1, bias=conv_bias).double()
    bn = nn.BatchNorm2d(out_dims, affine=affine, track_running_stats=track_running_stats, momentum=momentum)
    bn = bn.double()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen, dtype=torch.float64))
        if conv_bias:
            conv.bias.copy_(torch.randn(out_dims, generator=gen, dtype=torch.float64))
        if affine:
            bn.weight.copy_(torch.randn(out_dims, generator=gen, dtype=torch.float64))
            bn.weight[0] = 0.0
            bn.weight[1] = -abs(bn.weight[1]) - 0.1
            bn.weight[2] = abs(bn.weight[2]) + 0.1
            bn.bias.copy_(torch.randn(out_dims, generator=gen, dtype=torch.float64))
        if track_running_stats:
            bn.running_mean.copy_(torch.randn(out_dims, generator=gen, dtype=torch.float64))
            bn.running_var.copy_(torch.rand(out_dims, generator=gen, dtype=torch.float64) + 0.5)
    return conv, bn


def make_inputs(batch: int, dims: int, points: int, k: int, duplicates: bool, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, dims, points, generator=gen, dtype=torch.float64)
    idx = knn(x, k)  # (B, N, k)
    if duplicates:
        idx = idx.clone()
        idx[:, :, 3] = idx[:, :, 1]  # every point lists one neighbour twice
        idx[:, ::3, k - 1] = idx[:, ::3, 0]  # some points list themselves twice
        idx[:, 5, :] = 7  # one point has a single neighbour k times
    return x, idx


def run_both(x, idx, conv, bn, negative_slope=0.2, loss_seed=2):
    """Forward + backward of plain and fast on copies of the same layer; returns both results."""
    results = []
    for fn in (edge_conv_plain, edge_conv_fast):
        conv_c, bn_c = copy.deepcopy(conv), copy.deepcopy(bn)
        x_c = x.detach().clone().requires_grad_(True)
        out = fn(x_c, idx, conv_c, bn_c, negative_slope)
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(loss_seed), dtype=out.dtype)
        (out * weights).sum().backward()
        results.append((out.detach(), x_c.grad, conv_c, bn_c))
    return results


def assert_same(plain, fast):
    out_p, dx_p, conv_p, bn_p = plain
    out_f, dx_f, conv_f, bn_f = fast
    torch.testing.assert_close(out_f, out_p, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(dx_f, dx_p, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(conv_f.weight.grad, conv_p.weight.grad, atol=ATOL, rtol=RTOL)
    if conv_p.bias is not None:
        torch.testing.assert_close(conv_f.bias.grad, conv_p.bias.grad, atol=ATOL, rtol=RTOL)
    if bn_p.affine:
        torch.testing.assert_close(bn_f.weight.grad, bn_p.weight.grad, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(bn_f.bias.grad, bn_p.bias.grad, atol=ATOL, rtol=RTOL)
    if bn_p.track_running_stats:
        torch.testing.assert_close(bn_f.running_mean, bn_p.running_mean, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(bn_f.running_var, bn_p.running_var, atol=ATOL, rtol=RTOL)
        assert int(bn_f.num_batches_tracked) == int(bn_p.num_batches_tracked)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("duplicates", [False, True], ids=["unique", "duplicates"])
@pytest.mark.parametrize("dims,out_dims,k", [(3, 16, 5), (8, 12, 10)])
def test_fast_matches_plain(training, duplicates, dims, out_dims, k):
    x, idx = make_inputs(2, dims, 96, k, duplicates)
    conv, bn = make_layer(dims, out_dims)
    bn.train(training)
    plain, fast = run_both(x, idx, conv, bn)
    assert_same(plain, fast)
    if training:
        assert int(fast[3].num_batches_tracked) == 1
        assert not torch.equal(fast[3].running_mean, bn.running_mean)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_duplicate_points_tie_like_plain_max(training):
    """Distinct neighbours with identical features tie exactly; both take the first slot."""
    x, _ = make_inputs(2, 4, 64, 6, duplicates=False)
    x[:, :, 1::2] = x[:, :, 0::2]  # every point has an exact twin
    idx = knn(x, 6)
    conv, bn = make_layer(4, 8)
    bn.train(training)
    assert_same(*run_both(x, idx, conv, bn))


def test_chunked_neighbor_max(monkeypatch):
    """Many chunks (with a shorter last one) in the gathered max give the same result as one."""
    x, idx = make_inputs(2, 5, 50, 7, duplicates=True)
    conv, bn = make_layer(5, 6)
    monkeypatch.setattr("models.edgeconv._MAX_CHUNK_ELEMS", 7 * 6 * 3)  # 3 points per chunk
    assert_same(*run_both(x, idx, conv, bn))


def test_all_negative_scales_and_conv_bias():
    x, idx = make_inputs(2, 4, 64, 6, duplicates=False)
    conv, bn = make_layer(4, 6, conv_bias=True)
    with torch.no_grad():
        bn.weight.copy_(-bn.weight.abs() - 0.05)
    plain, fast = run_both(x, idx, conv, bn, negative_slope=0.1)
    assert_same(plain, fast)


def test_zero_gamma_routes_like_plain_max():
    """gamma == 0 makes every edge value equal; the plain max then picks slot 0 (torch.max ties)."""
    x, idx = make_inputs(2, 3, 64, 5, duplicates=False)
    conv, bn = make_layer(3, 4)
    with torch.no_grad():
        bn.weight.zero_()
    plain, fast = run_both(x, idx, conv, bn)
    assert_same(plain, fast)
    assert fast[3].weight.grad.abs().min() > 0  # the gamma gradient is non-trivial and still matches


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_without_affine_or_running_stats(training):
    x, idx = make_inputs(2, 5, 64, 7, duplicates=True)
    conv, bn = make_layer(5, 8, affine=False)
    bn.train(training)
    assert_same(*run_both(x, idx, conv, bn))
    conv, bn = make_layer(5, 8, track_running_stats=False)
    bn.train(training)  # eval mode without running statistics uses batch statistics, like nn.BatchNorm2d
    assert_same(*run_both(x, idx, conv, bn))


def test_cumulative_average_momentum_none():
    x, idx = make_inputs(2, 3, 64, 5, duplicates=False)
    conv, bn = make_layer(3, 8, momentum=None)
    conv_p, bn_p = copy.deepcopy(conv), copy.deepcopy(bn)
    for step in range(3):
        x_step = x + step
        edge_conv_plain(x_step, idx, conv_p, bn_p)
        edge_conv_fast(x_step, idx, conv, bn)
    torch.testing.assert_close(bn.running_mean, bn_p.running_mean, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(bn.running_var, bn_p.running_var, atol=ATOL, rtol=RTOL)
    assert int(bn.num_batches_tracked) == int(bn_p.num_batches_tracked) == 3


def test_no_grad_inference_path():
    x, idx = make_inputs(2, 6, 64, 8, duplicates=True)
    conv, bn = make_layer(6, 10)
    for training in (True, False):
        bn.train(training)
        conv_p, bn_p = copy.deepcopy(conv), copy.deepcopy(bn)
        with torch.no_grad():
            out_f = edge_conv_fast(x, idx, conv, bn)
            out_p = edge_conv_plain(x, idx, conv_p, bn_p)
        torch.testing.assert_close(out_f, out_p, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(bn.running_var, bn_p.running_var, atol=ATOL, rtol=RTOL)


class FastLayer(nn.Module):
    """conv + bn applied through edge_conv_fast, so torch.func.functional_call can swap parameters."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        self.conv, self.bn = conv, bn

    def forward(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return edge_conv_fast(x, idx, self.conv, self.bn)


def test_gradcheck_tiny():
    x, idx = make_inputs(1, 3, 16, 4, duplicates=True)
    layer = FastLayer(*make_layer(3, 4))
    with torch.no_grad():
        layer.bn.weight[0] = 0.3  # gamma == 0 is a kink (max turns into min): not finite-differentiable

    def fn(x_in, weight, gamma, beta):
        params = {"conv.weight": weight, "bn.weight": gamma, "bn.bias": beta}
        return torch.func.functional_call(layer, params, (x_in, idx))

    inputs = tuple(
        t.detach().clone().requires_grad_(True) for t in (x, layer.conv.weight, layer.bn.weight, layer.bn.bias)
    )
    for training in (True, False):
        layer.train(training)
        assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5)


def test_float32_close_to_plain():
    x, idx = make_inputs(2, 8, 128, 10, duplicates=False)
    conv, bn = make_layer(8, 16)
    x, conv, bn = x.float(), conv.float(), bn.float()
    plain, fast = run_both(x, idx, conv, bn)
    torch.testing.assert_close(fast[0], plain[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fast[1], plain[1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fast[2].weight.grad, plain[2].weight.grad, atol=1e-3, rtol=1e-4)


def test_output_is_contiguous_channels_last_view_and_dispatch():
    x, idx = make_inputs(2, 3, 32, 4, duplicates=False)
    conv, bn = make_layer(3, 5)
    out = edge_conv(x, idx, conv, bn, impl="fast")
    assert out.shape == (2, 5, 32) and out.dtype == torch.float64
    torch.testing.assert_close(edge_conv(x, idx, copy.deepcopy(conv), copy.deepcopy(bn), impl="plain"), out)
    with pytest.raises(ValueError, match="unknown edgeconv impl"):
        edge_conv(x, idx, conv, bn, impl="cuda")


def test_bad_layers_raise_clear_errors():
    x, idx = make_inputs(1, 3, 16, 4, duplicates=False)
    bn = nn.BatchNorm2d(5).double()
    with pytest.raises(ValueError, match="1x1 nn.Conv2d"):
        edge_conv_fast(x, idx, nn.Conv2d(6, 5, kernel_size=3).double(), bn)
    with pytest.raises(ValueError, match="1x1 nn.Conv2d"):
        edge_conv_fast(x, idx, nn.Conv2d(8, 5, kernel_size=1).double(), bn)
    with pytest.raises(ValueError, match="BatchNorm over the 7"):
        edge_conv_fast(x, idx, nn.Conv2d(6, 7, kernel_size=1).double(), bn)
    with pytest.raises(ValueError, match="idx"):
        edge_conv_fast(x, idx[:, :8], nn.Conv2d(6, 5, kernel_size=1).double(), bn)


@pytest.mark.parametrize("conv_bias", [False, True])
def test_edge_conv_first_matches_conv_of_graph_feature(conv_bias):
    x, idx = make_inputs(2, 5, 48, 6, duplicates=True)
    conv, _ = make_layer(5, 9, conv_bias=conv_bias)
    outs, grads = [], []
    for use_fast in (False, True):
        conv_c = copy.deepcopy(conv)
        x_c = x.detach().clone().requires_grad_(True)
        out = edge_conv_first(x_c, idx, conv_c) if use_fast else conv_c(graph_feature(x_c, idx))
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=out.dtype)
        (out * weights).sum().backward()
        outs.append(out.detach())
        grads.append((x_c.grad, conv_c.weight.grad, conv_c.bias.grad if conv_bias else None))
    assert outs[1].shape == (2, 9, 48, 6)
    torch.testing.assert_close(outs[1], outs[0], atol=ATOL, rtol=RTOL)
    for g_fast, g_plain in zip(grads[1], grads[0]):
        if g_plain is not None:
            torch.testing.assert_close(g_fast, g_plain, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("batch,points,k", [(2, 64, 5), (3, 40, 10), (2, 96, 5), (1, 512, 20)])
def test_knn_matches_plain_and_includes_self(batch, points, k, monkeypatch):
    """Covers the padded top-k (64, 40 points) and the block-max preselection (96, 512 points)."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(batch, 7, points, generator=gen, dtype=torch.float64)
    expected = knn_plain(x, k)
    assert torch.equal(knn(x, k), expected)
    monkeypatch.setattr("models.edgeconv._KNN_CHUNK_ELEMS", points * points)  # one cloud per chunk
    assert torch.equal(knn(x, k), expected)
    assert torch.equal(expected[:, :, 0], torch.arange(points).expand(batch, points))
    assert not knn(x.requires_grad_(True), k).requires_grad


def test_dgcnn_layer_stack_fast_equals_plain():
    """Four chained EdgeConv layers with kNN on features, as in DGCNN, in train mode."""
    gen = torch.Generator().manual_seed(5)
    x0 = torch.randn(2, 3, 64, generator=gen, dtype=torch.float64)
    dims = [(3, 8), (8, 8), (8, 12), (12, 16)]
    layers = [make_layer(c_in, c_out, seed=i) for i, (c_in, c_out) in enumerate(dims)]
    results = []
    for impl in ("plain", "fast"):
        mods = copy.deepcopy(layers)
        x = x0.clone().requires_grad_(True)
        h, feats = x, []
        for conv, bn in mods:
            h = edge_conv(h, knn(h, 6), conv, bn, impl=impl)
            feats.append(h)
        out = torch.cat(feats, dim=1)  # (B, 44, N)
        out.square().sum().backward()
        results.append((out.detach(), x.grad, [c.weight.grad for c, _ in mods], [b.weight.grad for _, b in mods]))
    torch.testing.assert_close(results[1][0], results[0][0], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(results[1][1], results[0][1], atol=1e-9, rtol=1e-8)
    for g_fast, g_plain in zip(results[1][2] + results[1][3], results[0][2] + results[0][3]):
        torch.testing.assert_close(g_fast, g_plain, atol=1e-9, rtol=1e-8)


def test_bfloat16_autocast_runs_close_to_float32():
    x, idx = make_inputs(2, 4, 64, 6, duplicates=False)
    conv, bn = make_layer(4, 8)
    x, conv, bn = x.float(), conv.float(), bn.float()
    reference = edge_conv_fast(x, idx, copy.deepcopy(conv), copy.deepcopy(bn))
    x_in = x.clone().requires_grad_(True)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = edge_conv_fast(x_in, idx, conv, bn)
        idx_autocast = knn(x_in, 6)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference, atol=0.1, rtol=0.05)
    assert torch.equal(idx_autocast, idx)  # kNN scores stay in float32 under autocast
    out.sum().backward()
    assert torch.isfinite(x_in.grad).all() and torch.isfinite(conv.weight.grad).all()


@pytest.mark.slow
def test_benchmark_script_smoke(capsys):
    """benchmarks/run.py runs its dgcnn section (one subprocess per configuration) and skips GPU parts."""
    from benchmarks.run import main

    records = main(
        ["--only", "dgcnn", "--points", "32", "--k", "4", "--emb-dims", "16", "--batch", "4"]
        + ["--warmup", "0", "--repeats", "1", "--plain-repeats", "1", "--no-save"]
    )
    rows = records["dgcnn"]["rows"]
    assert [r["impl"] for r in rows] == ["plain", "fast"]
    assert rows[1]["speedup_vs_plain"] > 0 and rows[0]["peak_mem_bytes"] >= 0
    if not torch.cuda.is_available():
        assert main(["--only", "crosspoint", "--device", "cuda", "--no-save"]) == {}
        assert "CUDA is not available" in capsys.readouterr().out
