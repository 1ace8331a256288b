"""Your own objects end to end: a ModelNet-style raw tree of real meshes (tests/data/meshes, not made by this
project) -> prepare_meshes -> datasets.check --full -> pretraining -> SVM, few-shot, fine-tuning, embedding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import trimesh

import embed
import eval_fewshot
import eval_svm
import train_cls
import train_crossmodal
from datasets import check
from datasets.prepare_meshes.prepare import main as prepare_main

MESHES = Path(__file__).resolve().parent / "data" / "meshes"
# DIR/<class>/{train,test}/<name>.<ext>, as ModelNet's raw release; every format, two ModelNet-header OFFs.
LAYOUT = {
    "vessel": {"train": ["teapot.stl", "fuze.ply", "sphere.ply"], "test": ["teapot_modelnet.off"]},
    "block": {"train": ["comments.off", "BoxInterleaved.glb", "multibody.stl"], "test": ["whitespace.off", "nested.glb"]},
    "figure": {"train": ["rabbit.obj", "two_objects.obj"], "test": ["rabbit_modelnet.off"]},
}


def _modelnet_off(src: Path, dst: Path) -> None:
    """A real mesh rewritten as ModelNet writes OFF files: the counts on the header line (``OFF490 518 0``)."""
    mesh = trimesh.load(str(src), force="mesh", process=False)
    lines = [f"OFF{len(mesh.vertices)} {len(mesh.faces)} 0"]
    lines += [" ".join(repr(float(c)) for c in v) for v in mesh.vertices]
    lines += ["3 " + " ".join(str(int(i)) for i in f) for f in mesh.faces]
    dst.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def prepared_root(tmp_path_factory) -> tuple[Path, Path]:
    raw = tmp_path_factory.mktemp("modelnet_raw")
    for cls, splits in LAYOUT.items():
        for split, names in splits.items():
            folder = raw / cls / split
            folder.mkdir(parents=True)
            for name in names:
                if name.endswith("_modelnet.off"):
                    _modelnet_off(MESHES / ("teapot.stl" if cls == "vessel" else "rabbit.obj"), folder / name)
                else:
                    shutil.copy(MESHES / name, folder / name)
                    if name == "rabbit.obj":
                        shutil.copy(MESHES / "rabbit.mtl", folder / "rabbit.mtl")
    root = tmp_path_factory.mktemp("prepared")
    assert prepare_main(["--input", str(raw), "--output", str(root), "--views", "2", "--num_points", "512",
                         "--seed", "0", "--workers", "1", "--quiet"]) == 0
    return raw, root


@pytest.mark.slow
def test_every_command_runs_on_a_prepared_root(prepared_root, tmp_path, capsys):
    raw, root = prepared_root
    assert check.main(["--root", str(root), "--full", "--num_points", "512", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "custom: ok" in out and "shapenet_render: ok" in out

    pre = train_crossmodal.main(["--preset", "tiny", "--data_root", str(root), "--output_dir", str(tmp_path),
                                 "--exp_name", "own", "--batch_size", "4", "--epochs", "1", "--probe_dataset", "custom",
                                 "--probe_val_fraction", "0.3", "--num_workers", "0", "--no_progress"])
    weights = Path(pre["run_dir"]) / "checkpoints" / "point_encoder_best.pth"
    assert weights.is_file() and "probe_val_acc" in pre["history"][0]

    common = ["--model_path", str(weights), "--data_root", str(root), "--dataset", "custom", "--device", "cpu",
              "--no_progress", "--no_cache"]
    svm = eval_svm.main(common + ["--num_points", "256", "--output", str(tmp_path / "svm.json")])
    saved = json.loads((tmp_path / "svm.json").read_text())
    assert saved["dataset"] == "custom" and saved["class_names"] == ["block", "figure", "vessel"]
    assert saved["n_test"] == 4 and 0.0 <= svm["accuracy"] <= 1.0
    few = eval_fewshot.main(common + ["--k_way", "2", "--m_shot", "1", "--n_query", "1", "--n_runs", "3",
                                      "--output", str(tmp_path / "few.json")])
    assert few["num_points"] == 512 and len(few["accs"]) == 3

    cls = train_cls.main(["--preset", "tiny", "--data_root", str(root), "--dataset", "custom", "--output_dir",
                          str(tmp_path), "--exp_name", "own_cls", "--pretrained_path", pre["run_dir"], "--k", "8",
                          "--batch_size", "2", "--epochs", "1", "--val_fraction", "0.4", "--num_workers", "0",
                          "--no_progress"])
    assert cls["test"]["num_samples"] == 4 and cls["model_args"]["num_classes"] == 3

    feats = embed.main(["--model_path", str(weights), "--input", str(raw), "--output", str(tmp_path / "f.npz"),
                        "--num_points", "256", "--device", "cpu", "--no_progress"])
    assert feats["features"].shape[0] == 12 and np.isfinite(feats["features"]).all()
