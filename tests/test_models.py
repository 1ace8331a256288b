"""Encoders and heads: equality with an independent plain implementation, official key names and
shapes, gradients reaching every parameter, float64 and device handling."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from models import POINT_ENCODERS, build_image_encoder, build_point_encoder
from models.dgcnn import DGCNN, DGCNNPartSeg
from models.heads import ProjectionHead
from models.pointnet import PointNet

REPO = Path(__file__).resolve().parents[1]
KEYS_CANDIDATES = (
    REPO / "tests/data/official_state_dict_keys.json",
    REPO.parent / "shared/reference/official_state_dict_keys.json",
)


def official_keys() -> dict:
    for path in KEYS_CANDIDATES:
        if path.is_file():
            return json.loads(path.read_text())
    pytest.skip(f"official_state_dict_keys.json not found at {', '.join(map(str, KEYS_CANDIDATES))}")


# ---------------------------------------------------------------------------------------------
# Independent plain implementation of the original networks (own kNN, edge features, 1x1 convs
# and BatchNorm), using the module's parameters but none of its code.
# ---------------------------------------------------------------------------------------------


def ref_knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, C, N) -> (B, N, k) indices of the k smallest squared distances (self included)."""
    dist = ((x.unsqueeze(3) - x.unsqueeze(2)) ** 2).sum(dim=1)  # (B, N, N)
    return dist.topk(k, dim=-1, largest=False).indices


def ref_graph_feature(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, C, N) -> (B, 2C, N, k) edge features concat(x_j - x_i, x_i)."""
    idx = ref_knn(x, k)
    points = x.transpose(1, 2)  # (B, N, C)
    neighbours = torch.stack([points[b][idx[b]] for b in range(x.shape[0])])  # (B, N, k, C)
    centers = points.unsqueeze(2).expand_as(neighbours)  # (B, N, k, C)
    return torch.cat((neighbours - centers, centers), dim=3).permute(0, 3, 1, 2)  # (B, 2C, N, k)


def ref_conv(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """1x1 convolution without bias on (B, C, ...) with a (O, C, 1[, 1]) weight."""
    return torch.einsum("oc,bc...->bo...", weight.reshape(weight.shape[0], weight.shape[1]), x)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, x, 0.2 * x)


class RefBatchNorm:
    """BatchNorm written out: batch statistics in training (biased variance to normalize, unbiased
    for the running average, momentum 0.1), running statistics in eval; own copy of the stats."""

    def __init__(self, model: nn.Module, training: bool) -> None:
        self.training = training
        self.stats = {
            id(m): (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
            for m in model.modules()
            if isinstance(m, _BatchNorm)
        }

    def __call__(self, x: torch.Tensor, bn: _BatchNorm) -> torch.Tensor:
        running_mean, running_var, count = self.stats[id(bn)]
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        if self.training:
            mean, var = x.mean(dims), x.var(dims, unbiased=False)
            n = x.numel() // x.shape[1]
            with torch.no_grad():
                running_mean.mul_(0.9).add_(0.1 * mean)
                running_var.mul_(0.9).add_(0.1 * var * n / (n - 1))
                count += 1
        else:
            mean, var = running_mean, running_var
        normalized = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + bn.eps)
        return normalized * bn.weight.view(shape) + bn.bias.view(shape)


def ref_dgcnn(m: DGCNN, x: torch.Tensor, bn: RefBatchNorm) -> torch.Tensor:
    feats = []
    h = x
    for conv, norm in ((m.conv1, m.bn1), (m.conv2, m.bn2), (m.conv3, m.bn3), (m.conv4, m.bn4)):
        h = lrelu(bn(ref_conv(conv[0].weight, ref_graph_feature(h, m.k)), norm)).amax(dim=-1)
        feats.append(h)
    h = lrelu(bn(ref_conv(m.conv5[0].weight, torch.cat(feats, dim=1)), m.bn5))  # (B, emb, N)
    return torch.cat((h.amax(dim=-1), h.mean(dim=-1)), dim=1)


def ref_partseg(m: DGCNNPartSeg, x: torch.Tensor, category: torch.Tensor | None, bn: RefBatchNorm) -> torch.Tensor:
    tn = m.transform_net
    batch, _, num_points = x.shape
    h = lrelu(bn(ref_conv(tn.conv1[0].weight, ref_graph_feature(x, m.k)), tn.bn1))
    h = lrelu(bn(ref_conv(tn.conv2[0].weight, h), tn.bn2)).amax(dim=-1)
    h = lrelu(bn(ref_conv(tn.conv3[0].weight, h), tn.conv3[1])).amax(dim=-1)  # (B, 1024)
    h = lrelu(bn(h @ tn.linear1.weight.t(), tn.bn3))
    h = lrelu(bn(h @ tn.linear2.weight.t(), tn.bn4))
    t = (h @ tn.transform.weight.t() + tn.transform.bias).reshape(batch, 3, 3)
    x = torch.einsum("bnc,bcd->bdn", x.transpose(1, 2), t)  # (B, 3, N)

    h = lrelu(bn(ref_conv(m.conv1[0].weight, ref_graph_feature(x, m.k)), m.bn1))
    x1 = lrelu(bn(ref_conv(m.conv2[0].weight, h), m.bn2)).amax(dim=-1)
    h = lrelu(bn(ref_conv(m.conv3[0].weight, ref_graph_feature(x1, m.k)), m.bn3))
    x2 = lrelu(bn(ref_conv(m.conv4[0].weight, h), m.bn4)).amax(dim=-1)
    x3 = lrelu(bn(ref_conv(m.conv5[0].weight, ref_graph_feature(x2, m.k)), m.bn5)).amax(dim=-1)
    g = lrelu(bn(ref_conv(m.conv6[0].weight, torch.cat((x1, x2, x3), dim=1)), m.bn6)).amax(dim=-1)  # (B, emb)
    if category is None:
        return g
    c = lrelu(bn(ref_conv(m.conv7[0].weight, category.unsqueeze(-1)), m.bn7)).squeeze(-1)  # (B, 64)
    gc = torch.cat((g, c), dim=1).unsqueeze(-1).repeat(1, 1, num_points)
    h = torch.cat((gc, x1, x2, x3), dim=1)
    # Dropout draws its mask in memory order: contiguous inputs make the masks equal under one seed.
    h = F.dropout(lrelu(bn(ref_conv(m.conv8[0].weight, h), m.bn8)).contiguous(), m.dp1.p, training=bn.training)
    h = F.dropout(lrelu(bn(ref_conv(m.conv9[0].weight, h), m.bn9)).contiguous(), m.dp2.p, training=bn.training)
    h = lrelu(bn(ref_conv(m.conv10[0].weight, h), m.bn10))
    return ref_conv(m.conv11.weight, h)


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm affine parameters and running stats (so every BN matters) and a non-identity
    part-seg transform."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                for tensor, low, high in ((m.weight, 0.5, 1.5), (m.running_var, 0.5, 1.5)):
                    tensor.copy_(torch.rand(tensor.shape, generator=g) * (high - low) + low)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
        if hasattr(model, "transform_net"):
            weight = model.transform_net.transform.weight
            weight.copy_(torch.randn(weight.shape, generator=g) * 0.05)
    return model


def compare_with_reference(model, run_model, run_ref, training: bool, seed: int = 0):
    """Outputs, parameter gradients and (training) BN running stats of model vs reference."""
    model.train(training)
    bn = RefBatchNorm(model, training)
    torch.manual_seed(seed)
    out = run_model()
    torch.manual_seed(seed)
    expected = run_ref(bn)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)

    params = [p for p in model.parameters() if p.requires_grad]
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    grads = torch.autograd.grad((out * weights).sum(), params, allow_unused=True)
    ref_grads = torch.autograd.grad((expected * weights).sum(), params, allow_unused=True)
    for (name, _), grad, ref_grad in zip(
        [(n, p) for n, p in model.named_parameters() if p.requires_grad], grads, ref_grads, strict=True
    ):
        assert (grad is None) == (ref_grad is None), name
        if grad is not None:
            torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-9, msg=f"gradient of {name}")

    for m in model.modules():
        if isinstance(m, _BatchNorm):
            running_mean, running_var, count = bn.stats[id(m)]
            torch.testing.assert_close(m.running_mean, running_mean, rtol=1e-9, atol=1e-12)
            torch.testing.assert_close(m.running_var, running_var, rtol=1e-9, atol=1e-12)
            assert m.num_batches_tracked.item() == count.item()


@pytest.mark.parametrize("edgeconv", ["plain", "fast"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_dgcnn_matches_plain_reference(edgeconv, training):
    model = randomize_(DGCNN(k=6, emb_dims=64, edgeconv=edgeconv)).double()
    x = torch.randn(2, 3, 48, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    compare_with_reference(model, lambda: model(x), lambda bn: ref_dgcnn(model, x, bn), training)
    assert model(x).shape == (2, 128) and model.feat_dim == 128


@pytest.mark.parametrize("edgeconv", ["plain", "fast"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_partseg_matches_plain_reference(edgeconv, training):
    model = randomize_(DGCNNPartSeg(k=6, emb_dims=32, num_parts=7, edgeconv=edgeconv)).double()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 3, 40, generator=g, dtype=torch.float64)
    category = F.one_hot(torch.tensor([0, 5, 15]), 16).double()
    compare_with_reference(
        model, lambda: model(x, category), lambda bn: ref_partseg(model, x, category, bn), training
    )
    assert model(x, category).shape == (3, 7, 40)


@pytest.mark.parametrize("edgeconv", ["plain", "fast"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_partseg_pretrain_matches_plain_reference(edgeconv, training):
    model = randomize_(DGCNNPartSeg(k=6, emb_dims=32, pretrain=True, edgeconv=edgeconv)).double()
    x = torch.randn(2, 3, 40, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    compare_with_reference(model, lambda: model(x), lambda bn: ref_partseg(model, x, None, bn), training)
    assert model(x).shape == (2, 32) and model.feat_dim == 32


def test_pointnet_matches_plain_reference():
    model = randomize_(PointNet(emb_dims=32)).double().eval()
    x = torch.randn(2, 3, 30, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    bn = RefBatchNorm(model, training=False)
    h = x
    for conv, norm in zip([model.conv1, model.conv2, model.conv3, model.conv4, model.conv5],
                          [model.bn1, model.bn2, model.bn3, model.bn4, model.bn5]):
        h = torch.relu(bn(ref_conv(conv.weight, h), norm))
    torch.testing.assert_close(model(x), h.amax(dim=-1), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Structure: official key names and shapes, shared BatchNorms, initialization.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,build",
    [
        ("dgcnn_cls", lambda: DGCNN(k=20, emb_dims=1024)),
        ("dgcnn_partseg_finetune", lambda: DGCNNPartSeg(k=40, emb_dims=1024, num_parts=50)),
        ("dgcnn_partseg_pretrain", lambda: DGCNNPartSeg(k=40, emb_dims=1024, pretrain=True)),
        ("resnet50_image", lambda: build_image_encoder("resnet50")),
    ],
)
def test_state_dict_keys_and_shapes_equal_official(name, build):
    expected = [(key, tuple(shape)) for key, shape in official_keys()[name]]
    actual = [(key, tuple(value.shape)) for key, value in build().state_dict().items()]
    assert actual == expected


def test_batchnorms_are_shared_like_the_original():
    dgcnn = DGCNN(k=5, emb_dims=16)
    for i in range(1, 6):
        assert getattr(dgcnn, f"conv{i}")[1] is getattr(dgcnn, f"bn{i}")
    seg = DGCNNPartSeg(k=5, emb_dims=16)
    for i in range(1, 11):
        assert getattr(seg, f"conv{i}")[1] is getattr(seg, f"bn{i}")
    tn = seg.transform_net
    assert tn.conv1[1] is tn.bn1 and tn.conv2[1] is tn.bn2
    assert tn.conv3[1] is not tn.bn3  # the original re-assigns bn3: conv3 keeps its 1024-d BN
    assert tn.conv3[1].num_features == 1024 and tn.bn3.num_features == 512


def test_partseg_transform_starts_as_identity_in_float64():
    model = DGCNNPartSeg(k=5, emb_dims=16).double()
    assert model.transform_net.transform.weight.abs().sum() == 0
    torch.testing.assert_close(model.transform_net.transform.bias.view(3, 3), torch.eye(3, dtype=torch.float64))


def test_projection_head_layout():
    head = ProjectionHead(12, 8, 4, bias=False)
    assert [key for key in head.state_dict()] == [
        "0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked", "3.weight",
    ]
    assert head(torch.randn(3, 12)).shape == (3, 4)


# ---------------------------------------------------------------------------------------------
# Gradients reach every trainable parameter; float64 everywhere.
# ---------------------------------------------------------------------------------------------


def assert_all_grads_finite(model: nn.Module, loss: torch.Tensor) -> None:
    loss.backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, f"{name} got no gradient"
            assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"


def weighted_sum(*outputs: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return sum((out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum() for out in outputs)


@pytest.mark.parametrize("name", sorted(POINT_ENCODERS))
def test_point_encoders_every_parameter_gets_a_gradient(name):
    model = build_point_encoder(name, k=5, emb_dims=32).double().train()
    x = torch.randn(3, 3, 24, dtype=torch.float64)
    feat = model(x)
    assert feat.shape == (3, model.feat_dim) and feat.dtype == torch.float64
    embedding = model.inv_head(feat)
    assert embedding.shape == (3, 256)
    assert_all_grads_finite(model, weighted_sum(feat, embedding))
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    if name == "dgcnn_seg":  # kept only for the official key list, never used in pretraining
        assert frozen == {f"bn{i}.{a}" for i in range(7, 11) for a in ("weight", "bias")}
    else:
        assert frozen == set()


def test_partseg_every_parameter_gets_a_gradient():
    model = DGCNNPartSeg(k=5, emb_dims=32, num_parts=6).double().train()
    x = torch.randn(3, 3, 24, dtype=torch.float64)
    logits = model(x, F.one_hot(torch.tensor([1, 2, 3]), 16))
    assert logits.shape == (3, 6, 24) and logits.dtype == torch.float64
    assert_all_grads_finite(model, weighted_sum(logits))
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.inv_head.named_parameters(prefix="inv_head")}


def test_image_encoder_every_parameter_gets_a_gradient_float64():
    model = build_image_encoder("resnet18").double().train()
    assert model.feat_dim == 512 and isinstance(model.resnet.fc, nn.Identity)
    feat = model(torch.randn(2, 3, 32, 32, dtype=torch.float64))
    assert feat.shape == (2, 512) and feat.dtype == torch.float64
    embedding = model.inv_head(feat)
    assert embedding.shape == (2, 256)
    assert_all_grads_finite(model, weighted_sum(feat, embedding))


def test_resnet50_feature_size_without_forward():
    model = build_image_encoder("resnet50")
    assert model.feat_dim == 2048 and model.inv_head[0].in_features == 2048 and model.inv_head[0].bias is None


# ---------------------------------------------------------------------------------------------
# Errors, builders, cheap import, devices.
# ---------------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"\(B, 3, N\)"):
        DGCNN(k=5, emb_dims=16)(torch.randn(2, 24, 3))
    with pytest.raises(ValueError, match="at least k points"):
        DGCNN(k=30, emb_dims=16)(torch.randn(2, 3, 24))
    with pytest.raises(ValueError, match="category_one_hot"):
        DGCNNPartSeg(k=5, emb_dims=16)(torch.randn(2, 3, 24))
    with pytest.raises(ValueError, match="unknown edgeconv"):
        DGCNN(edgeconv="cuda")
    with pytest.raises(ValueError, match="unknown point encoder"):
        build_point_encoder("pointnet++")
    with pytest.raises(ValueError, match="unknown arch"):
        build_image_encoder("vit")


def test_builders_pass_arguments():
    model = build_point_encoder("dgcnn_seg", k=7, emb_dims=48, edgeconv="plain")
    assert isinstance(model, DGCNNPartSeg) and model.pretrain and model.k == 7 and model.emb_dims == 48
    assert model.edgeconv == "plain" and not hasattr(model, "conv11")
    assert build_point_encoder("pointnet", k=99, emb_dims=40).feat_dim == 40
    assert build_point_encoder("dgcnn", k=9, emb_dims=40).feat_dim == 80


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_models_follow_the_input_device():
    device = torch.device("cuda")
    x = torch.randn(2, 3, 64, device=device)
    for name in sorted(POINT_ENCODERS):
        model = build_point_encoder(name, k=8, emb_dims=32).to(device)
        assert model.inv_head(model(x)).device.type == "cuda"
    seg = DGCNNPartSeg(k=8, emb_dims=32).to(device)
    assert seg(x, F.one_hot(torch.tensor([0, 1], device=device), 16)).device.type == "cuda"
    image = build_image_encoder("resnet18").to(device)
    assert image(torch.randn(2, 3, 32, 32, device=device)).device.type == "cuda"
