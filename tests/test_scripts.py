"""The shell scripts of scripts/: they parse, and the cheap ones run end to end on the tiny synthetic set."""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO_ROOT


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO_ROOT / "scripts").glob("*.sh")))
def test_shell_scripts_parse(script):
    assert subprocess.run(["bash", "-n", str(REPO_ROOT / "scripts" / script)]).returncode == 0


def _bash(script, *args):
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(REPO_ROOT / "scripts" / script), *map(str, args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
def test_finetune_cls_script_runs_every_dataset(tiny_data_root, tmp_path):
    _bash("finetune_cls.sh", "none", tiny_data_root, "--preset", "tiny", "--epochs", "1", "--max_steps_per_epoch",
          "1", "--output_dir", tmp_path, "--num_workers", "0", "--no_progress")
    runs = sorted(p.parent.name for p in tmp_path.glob("*/results.json"))
    assert runs == ["cls_modelnet40_scratch", "cls_scanobjectnn_obj_bg_scratch", "cls_scanobjectnn_obj_only_scratch",
                    "cls_scanobjectnn_pb_t50_rs_scratch"]
    assert json.loads((tmp_path / runs[-1] / "results.json").read_text())["variant"] == "pb_t50_rs"


@pytest.mark.slow
def test_eval_svm_script_runs_both_datasets(tiny_data_root, tmp_path):
    from models import build_point_encoder
    from util.checkpoint import save_weights

    torch.manual_seed(0)
    ckpt = tmp_path / "point_encoder_best.pth"
    save_weights(build_point_encoder("dgcnn", k=5, emb_dims=32).state_dict(), ckpt,
                 {"model": "dgcnn", "model_args": {"k": 5, "emb_dims": 32}, "kind": "point_encoder"})
    out = _bash("eval_svm.sh", ckpt, tiny_data_root, "--num_points", "128", "--device", "cpu", "--no_progress",
                "--cache_dir", tmp_path / "cache")
    assert "modelnet40 linear-SVM accuracy" in out and "scanobjectnn (obj_bg) linear-SVM accuracy" in out
    assert len(list(tmp_path.glob("svm_point_encoder_best_*.json"))) == 2
