"""util/checkpoint.py: atomic writes, the weights format, and strict loading of official checkpoints."""

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from models import build_image_encoder
from models.dgcnn import DGCNN, DGCNNPartSeg
from util.checkpoint import (
    LoadReport,
    atomic_torch_save,
    atomic_write_text,
    load_pretrained,
    load_state_dict_file,
    read_weights_meta,
    save_weights,
)
from util.checkpoint import load_training_state, save_training_state
from util.rng import get_rng_state, make_generator

from epoch_loop import toy_problem, train_one_epoch  # tests/epoch_loop.py

REPO = Path(__file__).resolve().parents[1]
KEYS_CANDIDATES = (
    REPO / "tests/data/official_state_dict_keys.json",
    REPO.parent / "shared/reference/official_state_dict_keys.json",
)
HEAD_PREFIXES = ("conv7.", "conv8.", "conv9.", "conv10.", "conv11.")


def official_keys() -> dict:
    for path in KEYS_CANDIDATES:
        if path.is_file():
            return json.loads(path.read_text())
    pytest.skip(f"official_state_dict_keys.json not found at {', '.join(map(str, KEYS_CANDIDATES))}")


def random_official_state(name: str, model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the official key list ``name`` and random values of the listed shapes.

    Keys that name one shared tensor in the model (e.g. ``bn1.*`` and ``conv1.1.*``) get one value,
    as in any file saved from the original model.
    """
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_keys()[name]:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.randint(1, 10_000, (), generator=g, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g)
    first_key_of_storage = {}
    for key, value in model.state_dict().items():
        first = first_key_of_storage.setdefault(value.untyped_storage().data_ptr(), key)
        if first != key and key in state and first in state:
            state[key] = state[first].clone()
    return state


def assert_state_equals(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    model_state = model.state_dict()
    for key, value in state.items():
        torch.testing.assert_close(model_state[key], value.to(model_state[key].dtype), rtol=0, atol=0, msg=key)


# ---------------------------------------------------------------------------------------------
# Official-format files load strictly, with or without the DataParallel prefix.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,build",
    [
        ("dgcnn_cls", lambda: DGCNN(k=20, emb_dims=1024)),
        ("dgcnn_partseg_pretrain", lambda: DGCNNPartSeg(k=40, emb_dims=1024, pretrain=True)),
        ("dgcnn_partseg_finetune", lambda: DGCNNPartSeg(k=40, emb_dims=1024, num_parts=50)),
    ],
)
@pytest.mark.parametrize("prefix", ["", "module."])
def test_official_point_checkpoints_load_strictly_from_file(tmp_path, name, build, prefix):
    model = build()
    state = random_official_state(name, model)
    path = tmp_path / f"{name}.pth"
    torch.save({prefix + key: value for key, value in state.items()}, path)
    report = load_pretrained(model, path)
    assert report == LoadReport(missing=[], unexpected=[])
    assert_state_equals(model, state)


@pytest.mark.parametrize("prefix", ["", "module."])
def test_official_image_checkpoint_loads_strictly(prefix):
    model = build_image_encoder("resnet50")
    state = random_official_state("resnet50_image", model)
    report = load_pretrained(model, {prefix + key: value for key, value in state.items()})
    assert report == LoadReport(missing=[], unexpected=[])
    assert_state_equals(model, state)


def test_partseg_pretrain_checkpoint_into_finetune_network_reports_new_head():
    keys = official_keys()
    new_head = [key for key, _ in keys["dgcnn_partseg_finetune"] if key not in dict(keys["dgcnn_partseg_pretrain"])]
    assert "conv7.1.weight" in new_head and "conv11.weight" in new_head and "bn7.weight" not in new_head

    model = DGCNNPartSeg(k=40, emb_dims=1024, num_parts=50)
    state = random_official_state("dgcnn_partseg_pretrain", DGCNNPartSeg(k=40, emb_dims=1024, pretrain=True))
    with pytest.raises(ValueError, match=r"missing from the file: 25 key\(s\): conv7\.0\.weight"):
        load_pretrained(model, state)
    report = load_pretrained(model, state, allowed_missing_prefixes=HEAD_PREFIXES)
    assert report.missing == new_head and report.unexpected == []
    assert_state_equals(model, state)


def test_unexpected_key_and_wrong_shape_are_named(tmp_path):
    model = DGCNN(k=5, emb_dims=32)
    state = {key: value.clone() for key, value in model.state_dict().items()}
    path = tmp_path / "extra.pth"
    torch.save({**state, "linear1.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(ValueError, match=r"extra\.pth.*not in the model: 1 key\(s\): linear1\.weight"):
        load_pretrained(model, path)
    report = load_pretrained(model, path, allowed_unexpected_prefixes=("linear1.",))
    assert report == LoadReport(missing=[], unexpected=["linear1.weight"])

    wrong = dict(state, **{"conv5.0.weight": torch.zeros(16, 512, 1)})
    message = r"shape mismatch: 1 key\(s\): conv5\.0\.weight \(file \(16, 512, 1\), model \(32, 512, 1\)\)"
    with pytest.raises(ValueError, match=message):
        load_pretrained(model, wrong)
    partial = {key: value for key, value in state.items() if not key.startswith("inv_head.")}
    with pytest.raises(ValueError, match=r"missing from the file: 9 key\(s\): inv_head\.0\.weight"):
        load_pretrained(model, partial)


def test_long_key_lists_are_truncated():
    model = DGCNN(k=5, emb_dims=32)
    with pytest.raises(ValueError, match=r"missing from the file: 64 key\(s\): .* \.\.\. and 54 more"):
        load_pretrained(model, {"bogus": torch.zeros(1)})


# ---------------------------------------------------------------------------------------------
# Project weights: round trip, sidecar, atomic writes, clear errors.
# ---------------------------------------------------------------------------------------------


def test_save_weights_round_trip_with_sidecar(tmp_path):
    source = DGCNN(k=5, emb_dims=32)
    with torch.no_grad():
        for param in source.parameters():
            param.normal_()
    meta = {"model": "dgcnn", "model_args": {"k": 5, "emb_dims": 32}, "kind": "point_encoder", "config": {"lr": 0.001}}
    path = tmp_path / "out" / "point_encoder_best.pth"
    save_weights(source.state_dict(), path, meta)
    assert read_weights_meta(path) == {**meta, "version": 1}  # the sidecar schema version is written
    assert sorted(p.name for p in path.parent.iterdir()) == ["point_encoder_best.json", "point_encoder_best.pth"]

    target = DGCNN(k=5, emb_dims=32)
    assert load_pretrained(target, path) == LoadReport()
    assert_state_equals(target, source.state_dict())
    assert list(load_state_dict_file(path)) == list(source.state_dict())

    save_weights(source.state_dict(), path, meta=None)  # a sidecar never describes other weights
    assert read_weights_meta(path) is None


def test_atomic_save_leaves_previous_file_on_failure(tmp_path):
    path = tmp_path / "w.pth"
    atomic_torch_save({"a": torch.ones(2)}, path)
    atomic_write_text(tmp_path / "note.json", '{"ok": true}')
    assert sorted(os.listdir(tmp_path)) == ["note.json", "w.pth"]
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        atomic_torch_save({"a": torch.zeros(2), "bad": lambda: None}, path)
    assert sorted(os.listdir(tmp_path)) == ["note.json", "w.pth"]
    torch.testing.assert_close(load_state_dict_file(path)["a"], torch.ones(2))
    assert json.loads((tmp_path / "note.json").read_text()) == {"ok": True}


def test_load_state_dict_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_state_dict_file(tmp_path / "nope.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        load_state_dict_file(tmp_path / "garbage.pth")
    torch.save([torch.ones(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"list\.pth: expected a non-empty dict of tensors"):
        load_state_dict_file(tmp_path / "list.pth")
    torch.save({"model": {"w": torch.ones(1)}, "epoch": 3}, tmp_path / "state.pth")
    with pytest.raises(ValueError, match=r"state\.pth: not a plain state dict.*training-state"):
        load_state_dict_file(tmp_path / "state.pth")
    torch.save({"w": torch.ones(1), "obj": Path("x")}, tmp_path / "unsafe.pth")
    with pytest.raises(ValueError, match=r"unsafe\.pth.*weights_only"):
        load_state_dict_file(tmp_path / "unsafe.pth")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match=r"bad\.json"):
        read_weights_meta(tmp_path / "bad.pth")


def test_atomic_write_uses_the_umask_mode(tmp_path):
    """Checkpoints get the permissions a plain open() would give, not mkstemp's 0600."""
    import os

    from util.checkpoint import atomic_write_text

    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644


def test_any_garbage_file_is_one_clear_checkpoint_error(tmp_path):
    """Random bytes make torch's unpickler raise many exception types; each becomes one CheckpointError line."""

    from util.checkpoint import CheckpointError

    rng = np.random.default_rng(0)
    for i in range(60):
        path = tmp_path / f"garbage{i}.pth"
        path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        with pytest.raises(CheckpointError) as info:
            load_state_dict_file(path)
        msg = str(info.value)
        assert str(path) in msg and "\n" not in msg and "weights_only=False" not in msg


def test_an_empty_file_is_named_empty(tmp_path):
    """A 0-byte weights file or training state is 'empty (0 bytes)', not 'a pickle that needs arbitrary code'."""
    from util.checkpoint import CheckpointError
    from util.checkpoint import load_training_state

    (tmp_path / "w.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"w\.pth: is empty \(0 bytes\)") as info:
        load_state_dict_file(tmp_path / "w.pth")
    assert "arbitrary code" not in str(info.value) and "\n" not in str(info.value)
    (tmp_path / "training_state_last.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"training_state_last\.pt: is empty \(0 bytes\)") as info:
        load_training_state(tmp_path / "training_state_last.pt", models={})
    assert "arbitrary code" not in str(info.value)


@pytest.mark.parametrize("sidecar", [b"\x80\x81garbage\xff", b'{"model": "dgcnn", "model_args": {"k": 2', b"[1, 2]",
                                     b'"text"', b'{"model_args": [1]}', b'{"model_args": {"emb_dims": 0}}',
                                     b'{"kind": ["point_encoder"]}', b'{"epoch": "3"}', b'{"version": 99}'])
def test_a_corrupt_sidecar_is_one_line_naming_it(tmp_path, sidecar):
    """Garbage, truncated JSON or JSON of the wrong type: an InputFileError (what the scripts print as one line)."""
    from util.fileio import InputFileError, user_errors

    (tmp_path / "w.json").write_bytes(sidecar)
    with pytest.raises(InputFileError, match=r"w\.json"):
        read_weights_meta(tmp_path / "w.pth")
    with pytest.raises(SystemExit) as info, user_errors("prog"):
        read_weights_meta(tmp_path / "w.pth")
    assert str(tmp_path / "w.json") in str(info.value) and "\n" not in str(info.value)


def test_training_state_round_trip(tmp_path):
    loader, model, opt = toy_problem()
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)

    def step_fn(batch):
        xb, yb = batch
        return (model(xb) - yb).pow(2).mean(), {}

    train_one_epoch(step_fn, loader, opt, torch.device("cpu"), 0, None, progress=False)
    sched.step()
    g = make_generator(3)
    path = tmp_path / "state.pt"
    save_training_state(
        path, models={"net": model}, optimizer=opt, scheduler=sched, epoch=0,
        config={"lr": 0.05, "name": "toy"}, rng=get_rng_state({"g": g}), extra={"best": 0.5, "history": [1.0]},
    )
    torch.load(path, weights_only=True)  # must not need pickle

    _, model2, opt2 = toy_problem(seed=1)
    sched2 = torch.optim.lr_scheduler.CosineAnnealingLR(opt2, T_max=10)
    state = load_training_state(path, models={"net": model2}, optimizer=opt2, scheduler=sched2)
    assert state["epoch"] == 0 and state["config"]["name"] == "toy" and state["extra"]["best"] == 0.5
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    assert sched2.last_epoch == sched.last_epoch
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    with pytest.raises(ValueError, match="not a training-state file"):
        torch.save(model.state_dict(), tmp_path / "w.pth")
        load_training_state(tmp_path / "w.pth", models={"net": model2})
