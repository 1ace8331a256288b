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


def _bash(script, *args, env=None):
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1",
           **(env or {})}
    proc = subprocess.run(["bash", str(REPO_ROOT / "scripts" / script), *map(str, args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
def test_finetune_cls_script_runs_every_dataset(tiny_data_root, tmp_path):
    """Issue 22: RECIPE=pointmae runs Point-MAE's recipe on every set (its config says so)."""
    _bash("finetune_cls.sh", "none", tiny_data_root, "--preset", "tiny", "--epochs", "1", "--max_steps_per_epoch",
          "1", "--output_dir", tmp_path, "--num_workers", "0", "--no_progress", env={"RECIPE": "pointmae"})
    runs = sorted(p.parent.name for p in tmp_path.glob("*/results.json"))
    assert runs == ["cls_modelnet40_pointmae_scratch", "cls_scanobjectnn_obj_bg_pointmae_scratch",
                    "cls_scanobjectnn_obj_only_pointmae_scratch", "cls_scanobjectnn_pb_t50_rs_pointmae_scratch"]
    assert json.loads((tmp_path / runs[-1] / "results.json").read_text())["variant"] == "pb_t50_rs"
    for run in runs:
        config = json.loads((tmp_path / run / "config.json").read_text())
        assert (config["recipe"], config["optimizer"], config["grad_clip"]) == ("pointmae", "adamw", 10.0)


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


def _fake_repo(tmp_path, *scripts):
    """A copy of scripts/ whose .venv/bin/python records its arguments instead of running anything."""
    (tmp_path / "scripts").mkdir()
    for name in scripts + ("_python.sh", "_eval_args.sh"):
        (tmp_path / "scripts" / name).write_text((REPO_ROOT / "scripts" / name).read_text())
    venv_python = tmp_path / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text(f'#!/usr/bin/env bash\necho "$*" >> "{tmp_path}/calls.txt"\n')
    venv_python.chmod(0o755)
    return tmp_path


def _run_fake(repo, script, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/bin:/bin"  # no venv of the caller's on PATH
    proc = subprocess.run(["bash", str(repo / "scripts" / script), *args], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return (repo / "calls.txt").read_text().splitlines()


@pytest.mark.parametrize("script", ["eval_svm.sh", "fsl_script.sh", "finetune_cls.sh"])
def test_extra_arguments_work_without_a_data_root(tmp_path, script):
    """Issue 24: `bash scripts/eval_svm.sh MODEL --plot` took --plot for DATA_ROOT (--data_root: expected one
    argument). It works before or after a DATA_ROOT, and the scripts use the venv's Python."""
    repo = _fake_repo(tmp_path, script)
    calls = _run_fake(repo, script, "m.pth", "--plot")
    assert calls and all("--data_root data " in c and c.endswith("--plot") for c in calls)
    (repo / "calls.txt").unlink()
    calls = _run_fake(repo, script, "m.pth", "mydata", "--plot")
    assert calls and all("--data_root mydata " in c and c.endswith("--plot") for c in calls)


def test_finetune_cls_passes_the_recipe_and_names_it(tmp_path, monkeypatch):
    """Issue 22: RECIPE=pointmae runs every dataset with --recipe pointmae (in the run names too); unset, the
    script passes no --recipe (train_cls.py's default, dgcnn)."""
    repo = _fake_repo(tmp_path, "finetune_cls.sh")
    monkeypatch.setenv("RECIPE", "pointmae")
    calls = _run_fake(repo, "finetune_cls.sh", "none", "--seed", "2")
    assert len(calls) == 4 and all(" --recipe pointmae " in c and c.endswith("--seed 2") for c in calls)
    assert "--exp_name cls_scanobjectnn_pb_t50_rs_pointmae_scratch " in calls[-1]
    (repo / "calls.txt").unlink()
    monkeypatch.delenv("RECIPE")
    calls = _run_fake(repo, "finetune_cls.sh", "none")
    assert len(calls) == 4 and not any("--recipe" in c for c in calls)
    assert "--exp_name cls_modelnet40_scratch" in calls[0]
    header = (REPO_ROOT / "scripts" / "finetune_cls.sh").read_text().split("set -euo")[0]
    assert "RECIPE=dgcnn" in header and "RECIPE=pointmae" in header


def test_script_sh_and_gpu_check_use_the_venv_python(tmp_path):
    """Issue 24: script.sh ran `python` from PATH (outside the venv); every command now runs the venv's."""
    repo = _fake_repo(tmp_path, "script.sh", "eval_svm.sh", "fsl_script.sh", "gpu_check.sh")
    calls = _run_fake(repo, "script.sh")
    assert sum(c.startswith("train_crossmodal.py") for c in calls) == 2
    assert any(c.startswith("train_partseg.py") for c in calls) and any("eval_fewshot.py" in c for c in calls)
    assert _run_fake(repo, "gpu_check.sh", "--smoke")[-1] == "-m benchmarks.gpu_check --smoke"


def test_bench_prepare_meshes_help_states_its_default_object_count():
    """Issue 24: --help said "20 objects by default" while the --copies default gives 100."""
    from benchmarks import bench_prepare_meshes as bench

    objects = len(bench.MESH_FILES) * bench.build_parser().get_default("copies")
    assert f"= {objects} objects by default" in bench.build_parser().format_help()
