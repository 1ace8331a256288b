"""GPU contracts of the fast EdgeConv and of sync BatchNorm, checked on the CPU (issue 19, items 3, 4, 5, 8).

- item 3: no sparse matrix that breaks PyTorch's CSR rules (sorted, distinct columns per row).
- item 5: knn_plain picks the float32 neighbours under autocast.
- item 8: the fast EdgeConv's forward and backward never wait for the device (no .item(), bool(),
  .tolist(), bincount or nonzero).
- item 4: sync BatchNorm (models/sync_bn.py) and the fast EdgeConv's own statistics pooled over 2
  gloo ranks equal one process on the whole batch; a 2-rank CrossPoint step with --gather_negatives
  and sync BN equals the single-process full-batch step (and differs without sync BN).
"""

import copy
import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn

from models import build_image_encoder, build_point_encoder
from models.dgcnn import DGCNN, DGCNNPartSeg
from models.edgeconv import edge_conv_fast, edge_conv_plain, knn, knn_plain
from models.sync_bn import SyncBatchNorm1d, SyncBatchNorm2d, convert_sync_batchnorm
import tests.test_edgeconv as ec_ref
import tests.test_models as ec_models_ref
import tests.test_train_crossmodal as ec_crossmodal_ref
import train_cls
import train_crossmodal
import train_partseg

# ---------------------------------------------------------------------------------------------
# Item 3: CSR invariants
# ---------------------------------------------------------------------------------------------


def _ec_checked(factory):
    """Wrap a sparse-tensor factory so that its invariants are always checked (an explicit
    check_invariants=False in the caller cannot switch the check off)."""

    def wrapper(*args, **kwargs):
        kwargs["check_invariants"] = True
        return factory(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("duplicates", [False, True], ids=["unique", "duplicates"])
def test_fast_edgeconv_respects_sparse_invariants(monkeypatch, training, duplicates):
    for name in ("sparse_csr_tensor", "sparse_compressed_tensor", "sparse_coo_tensor"):
        monkeypatch.setattr(torch, name, _ec_checked(getattr(torch, name)))
    x, idx = ec_ref.make_inputs(2, 4, 64, 6, duplicates)
    conv, bn = ec_ref.make_layer(4, 8)
    bn.train(training)
    with torch.sparse.check_sparse_tensor_invariants():
        plain, fast = ec_ref.run_both(x, idx, conv, bn)
    ec_ref.assert_same(plain, fast)


# ---------------------------------------------------------------------------------------------
# Item 5: knn_plain in float32 under autocast
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("dims", [3, 64])
def test_knn_plain_under_autocast_keeps_float32_neighbours(dtype, dims):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, dims, 256, generator=gen)
    ref = knn_plain(x, 20).sort(dim=-1)[0]  # (B, N, k) neighbour sets
    with torch.autocast("cpu", dtype=dtype):
        got = knn_plain(x, 20).sort(dim=-1)[0]
        got_fast = knn(x, 20).sort(dim=-1)[0]
    same_rows = (got == ref).all(dim=-1)  # (B, N)
    assert same_rows.float().mean().item() == 1.0
    assert torch.equal(got_fast, ref)


# ---------------------------------------------------------------------------------------------
# Item 8: no host synchronisation in the fast EdgeConv
# ---------------------------------------------------------------------------------------------


def _ec_count_syncs(monkeypatch) -> dict[str, int]:
    """Patch the Python entry points that wait for the device; returns the live call counts."""
    counts: dict[str, int] = {}

    def counting(owner, name):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            counts[name] = counts.get(name, 0) + 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    for name in ("__bool__", "item", "tolist", "nonzero", "__float__", "__int__"):
        counting(torch.Tensor, name)
    for name in ("bincount", "nonzero", "unique", "repeat_interleave", "masked_select"):
        counting(torch, name)
    return counts


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("network", ["dgcnn", "dgcnn_seg"])
def test_fast_dgcnn_forward_backward_without_host_syncs(monkeypatch, training, network):
    torch.manual_seed(0)
    model = build_point_encoder(network, k=6, emb_dims=32, edgeconv="fast").train(training)
    with torch.no_grad():
        model.bn2.weight[:3] = 0.0  # zero and negative scales take the branch-free paths
        model.bn3.weight[:3] = -1.0
    points = torch.randn(2, 3, 48, requires_grad=True)
    counts = _ec_count_syncs(monkeypatch)
    out = model(points)  # (B, emb_dims)
    out.square().sum().backward()
    monkeypatch.undo()
    assert counts == {}
    assert points.grad is not None and torch.isfinite(points.grad).all()


def test_fast_edgeconv_zero_and_negative_scales_still_match_plain():
    """The branch-free selection (always multiplying by sign(gamma)) keeps the old results."""
    x, idx = ec_ref.make_inputs(2, 5, 64, 7, duplicates=True)
    conv, bn = ec_ref.make_layer(5, 9)
    with torch.no_grad():
        bn.weight[3:5] = 0.0
    ec_ref.assert_same(*ec_ref.run_both(x, idx, conv, bn))


# ---------------------------------------------------------------------------------------------
# Item 4: sync BatchNorm over 2 gloo ranks
# ---------------------------------------------------------------------------------------------


def _ec_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ec_init(rank: int, world_size: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)


def _ec_layer_results(x, idx, conv, bn, impl, loss_weights):
    """Forward + backward of one EdgeConv layer on copies; returns outputs, grads and running stats."""
    conv, bn = copy.deepcopy(conv), copy.deepcopy(bn)
    x = x.detach().clone().requires_grad_(True)
    fn = edge_conv_fast if impl == "fast" else edge_conv_plain
    out = fn(x, idx, conv, bn, 0.2)  # (B, C_out, N)
    (out * loss_weights).sum().backward()
    return {"out": out.detach(), "x": x.grad, "w": conv.weight.grad, "gamma": bn.weight.grad,
            "beta": bn.bias.grad, "rm": bn.running_mean, "rv": bn.running_var}


def _ec_module_results(bn, x, loss_weights):
    bn = copy.deepcopy(bn)
    x = x.detach().clone().requires_grad_(True)
    out = bn(x)
    (out * loss_weights).sum().backward()
    return {"out": out.detach(), "x": x.grad, "gamma": bn.weight.grad, "beta": bn.bias.grad,
            "rm": bn.running_mean, "rv": bn.running_var}


def _ec_sync_cases():
    """Global inputs of the layer tests (same on every rank): EdgeConv layer, BatchNorm1d/2d inputs."""
    x, idx = ec_ref.make_inputs(4, 5, 40, 6, duplicates=True)
    conv, bn = ec_ref.make_layer(5, 7)
    with torch.no_grad():
        bn.weight[3] = 0.0
    gen = torch.Generator().manual_seed(5)
    w_edge = torch.randn(4, 7, 40, generator=gen, dtype=torch.float64)
    x1 = torch.randn(6, 7, 9, generator=gen, dtype=torch.float64) * 3 + 10  # mean far from 0
    w1 = torch.randn(6, 7, 9, generator=gen, dtype=torch.float64)
    x2 = torch.randn(4, 3, 5, 5, generator=gen, dtype=torch.float64)
    w2 = torch.randn(4, 3, 5, 5, generator=gen, dtype=torch.float64)
    bn1, bn2 = nn.BatchNorm1d(7).double(), nn.BatchNorm2d(3, momentum=None).double()
    with torch.no_grad():
        bn1.weight.uniform_(-1, 1, generator=gen)
        bn2.bias.uniform_(-1, 1, generator=gen)
    return x, idx, conv, bn, w_edge, (bn1, x1, w1), (bn2, x2, w2)


def _ec_layers(rank: int, world_size: int, sync: bool) -> dict[str, dict]:
    """Every layer result on this rank's slice of the global batch (all of it when world_size is 1)."""
    x, idx, conv, bn, w_edge, case1, case2 = _ec_sync_cases()

    def part(t):
        n = t.shape[0] // world_size
        return t[rank * n : (rank + 1) * n]

    results = {}
    for impl in ("fast", "plain"):
        bn_c = convert_sync_batchnorm(copy.deepcopy(bn)) if sync else bn
        results[impl] = _ec_layer_results(part(x), part(idx), conv, bn_c, impl, part(w_edge))
    for name, (mod, xm, wm) in (("bn1d", case1), ("bn2d", case2)):
        mod_c = convert_sync_batchnorm(copy.deepcopy(mod)) if sync else mod
        results[name] = _ec_module_results(mod_c, part(xm), part(wm))
    return results


def _ec_layers_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    _ec_init(rank, world_size, port)
    try:
        torch.save(_ec_layers(rank, world_size, sync=True), os.path.join(out_dir, f"layers{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_sync_stats_over_two_ranks_equal_one_process(tmp_path):
    world_size = 2
    mp.spawn(_ec_layers_worker, args=(world_size, _ec_free_port(), str(tmp_path)), nprocs=world_size, join=True)
    full = _ec_layers(0, 1, sync=True)  # no process group: the sync modules fall back to BatchNorm
    ranks = [torch.load(tmp_path / f"layers{r}.pt", weights_only=True) for r in range(world_size)]
    for name, ref in full.items():
        got = {key: torch.cat([res[name][key] for res in ranks]) for key in ("out", "x")}
        # Parameter gradients: each rank holds the gradient of its own loss terms; DDP sums (averages) them.
        got.update({key: sum(res[name][key] for res in ranks) for key in ("w", "gamma", "beta") if key in ref})
        got.update({key: ranks[1][name][key] for key in ("rm", "rv")})
        for key in ("rm", "rv"):
            torch.testing.assert_close(ranks[0][name][key], ranks[1][name][key], atol=0, rtol=0)
        for key, value in got.items():
            torch.testing.assert_close(value, ref[key], atol=1e-10, rtol=1e-9, msg=f"{name} {key}")


def test_convert_sync_batchnorm_keeps_official_keys_and_shared_modules():
    keys = ec_models_ref.official_keys()
    cases = [("dgcnn_cls", DGCNN(k=20, emb_dims=1024)),
             ("dgcnn_partseg_finetune", DGCNNPartSeg(k=40, emb_dims=1024, num_parts=50)),
             ("dgcnn_partseg_pretrain", DGCNNPartSeg(k=40, emb_dims=1024, pretrain=True)),
             ("resnet50_image", build_image_encoder("resnet50"))]
    for name, model in cases:
        state = copy.deepcopy(model.state_dict())
        params = list(model.parameters())
        converted = convert_sync_batchnorm(model)
        assert converted is model
        assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == \
            [(k, tuple(s)) for k, s in keys[name]]
        model.load_state_dict(state, strict=True)
        assert all(a is b for a, b in zip(params, model.parameters()))  # an optimizer built before stays valid
        bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        assert bns and all(isinstance(m, (SyncBatchNorm1d, SyncBatchNorm2d)) for m in bns)
    dgcnn = cases[0][1]
    assert isinstance(dgcnn.bn1, SyncBatchNorm2d) and dgcnn.conv1[1] is dgcnn.bn1 and dgcnn.conv5[1] is dgcnn.bn5
    seg = cases[1][1]
    assert seg.transform_net.conv1[1] is seg.transform_net.bn1 and seg.conv11 is not None


# ---------------------------------------------------------------------------------------------
# Item 4: a CrossPoint step with --gather_negatives over 2 ranks equals the full batch with sync BN
# ---------------------------------------------------------------------------------------------


def _ec_step_inputs(world_size: int = 2, per_rank: int = 2):
    gen = torch.Generator().manual_seed(11)
    n = world_size * per_rank
    pc1 = torch.randn(n, 48, 3, generator=gen, dtype=torch.float64)
    pc2 = torch.randn(n, 48, 3, generator=gen, dtype=torch.float64)
    img = torch.randn(n, 3, 32, 32, generator=gen, dtype=torch.float64)
    return pc1, pc2, img


def _ec_step_models():
    torch.manual_seed(7)
    point = build_point_encoder("dgcnn", k=6, emb_dims=32, edgeconv="fast").double()
    image = build_image_encoder("resnet18").double()
    return point, image


def _ec_step(rank: int, world_size: int, sync: bool) -> dict:
    """One CrossPoint step (loss + DDP-averaged gradients) on this rank's slice of the global batch."""
    from train_crossmodal import CrossPointStep, ProjectedEncoder
    from util import distributed

    point, image = _ec_step_models()
    if sync:
        point, image = convert_sync_batchnorm(point), convert_sync_batchnorm(image)
    point_net = distributed.wrap_ddp(ProjectedEncoder(point), torch.device("cpu"))
    image_net = distributed.wrap_ddp(ProjectedEncoder(image), torch.device("cpu"))
    per_rank = _ec_step_inputs()[0].shape[0] // world_size
    batch = [t[rank * per_rank : (rank + 1) * per_rank] for t in _ec_step_inputs()]
    step = CrossPointStep(point_net, image_net, torch.device("cpu"), "none", 0.1, world_size > 1, False)
    loss, _ = step(batch)
    loss.backward()
    grads = {f"point.{k}": p.grad for k, p in point.named_parameters() if p.grad is not None}
    grads.update({f"image.{k}": p.grad for k, p in image.named_parameters() if p.grad is not None})
    return {"loss": loss.detach(), "grads": grads,
            "rm": {k: v for k, v in point.state_dict().items() if k.endswith("running_mean")}}


def _ec_step_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    _ec_init(rank, world_size, port)
    try:
        result = {"sync": _ec_step(rank, world_size, sync=True), "local": _ec_step(rank, world_size, sync=False)}
        torch.save(result, os.path.join(out_dir, f"step{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def _ec_rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


@pytest.mark.slow
def test_two_rank_gather_negatives_step_with_sync_bn_equals_full_batch(tmp_path):
    world_size = 2
    mp.spawn(_ec_step_worker, args=(world_size, _ec_free_port(), str(tmp_path)), nprocs=world_size, join=True)
    torch.set_num_threads(1)
    full = _ec_step(0, 1, sync=False)
    ranks = [torch.load(tmp_path / f"step{r}.pt", weights_only=True) for r in range(world_size)]
    for res in ranks:
        sync, local = res["sync"], res["local"]
        torch.testing.assert_close(sync["loss"], full["loss"], atol=1e-10, rtol=1e-10)
        assert sync["grads"].keys() == full["grads"].keys()
        for key, grad in full["grads"].items():
            torch.testing.assert_close(sync["grads"][key], grad, atol=1e-10, rtol=1e-7, msg=key)
        for key, value in full["rm"].items():
            torch.testing.assert_close(sync["rm"][key], value, atol=1e-12, rtol=1e-10, msg=key)
        # Without sync BN, per-rank BatchNorm statistics change the loss and the gradients.
        assert abs(float(local["loss"] - full["loss"])) > 1e-2
        worst = max(_ec_rel_err(local["grads"][key], grad) for key, grad in full["grads"].items()
                    if grad.norm() > 1e-6)  # (a bias followed by BatchNorm has a zero gradient)
        assert worst > 1e-2


# ---------------------------------------------------------------------------------------------
# Item 4: --sync_bn in every training script, applied under torchrun
# ---------------------------------------------------------------------------------------------


def test_every_training_script_has_sync_bn():
    for script in (train_crossmodal, train_partseg, train_cls):
        flags = {opt for action in script.build_parser()._actions for opt in action.option_strings}
        assert "--sync_bn" in flags, script.__name__


@pytest.mark.slow
def test_torchrun_two_ranks_with_sync_bn(tiny_data_root, tmp_path, repo_root):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "train_crossmodal.py",
           *ec_crossmodal_ref._argv(tiny_data_root, tmp_path, "sync", "--epochs", "1", "--max_steps_per_epoch", "1",
                                    "--device", "cpu", "--probe_dataset", "none", "--gather_negatives", "--sync_bn")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo_root)}
    proc = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((tmp_path / "sync" / "config.json").read_text())["sync_bn"] is True
    assert "--sync_bn: BatchNorm statistics over all 2 ranks." in (tmp_path / "sync" / "log.txt").read_text()
