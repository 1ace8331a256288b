"""scripts/verify_checkpoints.py identifies and strictly loads official-format checkpoints."""

import json
import sys

import pytest
import torch

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import verify_checkpoints  # noqa: E402

KEYS = json.loads((REPO_ROOT / "tests/data/official_state_dict_keys.json").read_text())


def _official_state_dict(name: str) -> dict:
    return {
        key: torch.tensor(7) if key.endswith("num_batches_tracked") else torch.randn(shape)
        for key, shape in KEYS[name]
    }


def test_all_official_files_load(tmp_path, capsys):
    for name in KEYS:
        torch.save(_official_state_dict(name), tmp_path / f"{name}.pth")
    torch.save({"module." + k: v for k, v in _official_state_dict("dgcnn_cls").items()}, tmp_path / "ddp.pth")
    assert verify_checkpoints.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("loaded strictly") == len(KEYS) + 1
    assert "fine-tuned (emb_dims 1024, 50 parts)" in out and "image encoder (resnet50)" in out


@pytest.mark.parametrize("corrupt", ["extra_key", "wrong_shape", "unknown"])
def test_bad_files_fail_with_the_key_named(tmp_path, capsys, corrupt):
    state_dict = _official_state_dict("dgcnn_cls")
    if corrupt == "extra_key":
        state_dict["linear9.weight"] = torch.zeros(2)
    elif corrupt == "wrong_shape":
        state_dict["conv2.0.weight"] = torch.zeros(64, 64, 1, 1)
    else:
        state_dict = {"foo": torch.zeros(1)}
    torch.save(state_dict, tmp_path / "bad.pth")
    assert verify_checkpoints.main([str(tmp_path / "bad.pth")]) == 1
    out = capsys.readouterr().out
    expected = {"extra_key": "linear9.weight", "wrong_shape": "conv2.0.weight", "unknown": "not a CrossPoint checkpoint"}
    assert f"FAIL {tmp_path / 'bad.pth'}" in out and expected[corrupt] in out


@pytest.mark.parametrize("kind", ["dgcnn_partseg_pretrain", "dgcnn_partseg_finetune"])
def test_the_keys_decide_how_the_partseg_file_is_used(tmp_path, capsys, kind):
    """The published dgcnn_partseg_best.pth is an encoder for --pretrained_path (as the original script.sh uses
    it) unless its keys show a fine-tuned network; the file name does not decide."""
    path = tmp_path / "dgcnn_partseg_best.pth"
    torch.save(_official_state_dict(kind), path)
    assert verify_checkpoints.main([str(path)]) == 0
    out = capsys.readouterr().out
    if kind == "dgcnn_partseg_pretrain":
        assert f"train_partseg.py --pretrained_path {path}" in out and "--eval" not in out
    else:
        assert f"train_partseg.py --eval --model_path {path}" in out and "--pretrained_path" not in out


def test_the_suggested_k_is_the_sidecars(tmp_path, capsys):
    """Issue 24: --k 15 was suggested for every file, also for this project's weights whose sidecar says k=8."""
    from util.checkpoint import save_weights

    official = _official_state_dict("dgcnn_cls")
    torch.save(official, tmp_path / "dgcnn_cls_best.pth")
    ours = tmp_path / "ours" / "point_encoder_best.pth"
    ours.parent.mkdir()
    save_weights(official, ours, {"model": "dgcnn", "model_args": {"k": 8, "emb_dims": 1024}, "kind": "point_encoder"})
    assert verify_checkpoints.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"--model_path {tmp_path / 'dgcnn_cls_best.pth'} --k 15  (no sidecar" in out
    assert f"--model_path {ours} --k 8  (k from its sidecar point_encoder_best.json" in out
    (ours.with_suffix(".json")).write_text("not json")
    assert verify_checkpoints.main([str(ours)]) == 1
    assert "point_encoder_best.json" in capsys.readouterr().out
