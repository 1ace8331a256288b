"""The README's main job at the tiny size: every stage runs, seeds are resumed/skipped, the reports are written."""

import json
import shutil

import pytest

from conftest import REPO_ROOT


@pytest.fixture(scope="module")
def quickstart():
    import sys

    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import quickstart

    return quickstart


@pytest.mark.slow
def test_quickstart_tiny_end_to_end(quickstart, tiny_data_root, tmp_path):
    common = ["--preset", "tiny", "--data_root", str(tiny_data_root), "--device", "cpu", "--num_workers", "0",
              "--runs_dir", str(tmp_path / "runs"), "--results_dir", str(tmp_path / "results"), "--no_progress",
              "--stages", "pretrain", "eval", "partseg"]
    out = quickstart.main(common)
    saved = json.loads((tmp_path / "results" / "quickstart.json").read_text())
    assert saved["data"] == "synthetic" and out["data"] == "synthetic" and saved["seeds"] == [1]
    assert set(saved["arms"]) == {"crosspoint", "imid_only", "random"}
    # Features a broken encoder (constant or NaN output) could not give: far above chance on every set.
    chance = {"modelnet40": 1 / 6, "scanobjectnn": 1 / 6}
    for arm in saved["arms"].values():
        assert arm["svm_modelnet40"] >= 2 * chance["modelnet40"]
        for dataset in ("modelnet40", "scanobjectnn"):
            for split in ("train", "test"):
                assert arm[f"fewshot_{dataset}_{split}"]["mean"] > 1 / 5  # 5-way chance
    for pre in saved["pretraining"].values():
        assert pre["final_loss"] < pre["first_loss"]  # the contrastive loss goes down
    assert saved["partseg"]["instance_miou"] > saved["partseg"]["init_instance_miou"]
    table = (tmp_path / "results" / "quickstart.md").read_text()
    assert "SYNTHETIC data" in table and "queries from test (strict)" in table
    for name in ("CrossPoint (IMID + CMID)", "IMID only", "Random init (no training)"):
        assert name in table
    assert (tmp_path / "results" / "quickstart_tsne_crosspoint.png").stat().st_size > 1000

    # A second seed (its result made from seed 1's, no training: running a seed is what the call above did):
    # both are reused from their result.json, and the ablation gets the spread.
    seed_dir = next((tmp_path / "runs").glob("*/seed1/result.json")).parent  # runs/<preset>-<data hash>/seed1
    result = json.loads((seed_dir / "result.json").read_text())
    result["seed"] = 2
    for arm in result["arms"].values():
        arm["svm_scanobjectnn"] += 0.01 if arm is result["arms"]["crosspoint"] else 0.02
    (seed_dir.parent / "seed2").mkdir()
    (seed_dir.parent / "seed2" / "result.json").write_text(json.dumps(result))
    ablation = quickstart.main(common + ["--seeds", "1", "2"])
    assert not any(name.startswith(("seed 1:", "seed 2:")) for name in ablation["stage_seconds"])
    svm = ablation["metrics"]["svm_scanobjectnn"]
    assert svm["arms"]["crosspoint"]["n"] == 2 and len(svm["arms"]["crosspoint"]["values"]) == 2
    assert svm["differences"]["crosspoint - random"]["method"].startswith("paired t-interval")
    md = (tmp_path / "results" / "ablation.md").read_text()
    assert "Ablation over 2 seeds" in md and "CrossPoint − random" in md
    # One seed again, now next to the committed spread.
    quickstart.main(common)
    assert "seed std" in (tmp_path / "results" / "quickstart.md").read_text()


@pytest.mark.slow
def test_quickstart_tiny_finetuning_stages(quickstart, tiny_data_root, tmp_path):
    """Issue 22: stage cls fine-tunes from CrossPoint and from random init under both recipes; stage
    partseg_pretrained pretrains dgcnn_seg with CrossPoint and fine-tunes part segmentation from it beside the
    from-scratch run; the ablation gets their rows with seed-paired intervals."""
    common = ["--preset", "tiny", "--data_root", str(tiny_data_root), "--device", "cpu", "--num_workers", "0",
              "--runs_dir", str(tmp_path / "runs"), "--results_dir", str(tmp_path / "results"), "--no_progress",
              "--threads", "1", "--epochs", "1", "--stages", "pretrain", "cls", "partseg_pretrained"]
    out = quickstart.main(common)
    seed_dir = next((tmp_path / "runs").glob("*/seed1/result.json")).parent  # runs/<preset>-<data hash>/seed1
    for recipe in ("dgcnn", "pointmae"):
        for arm in ("crosspoint", "random"):
            config = json.loads((seed_dir / f"cls_{recipe}_{arm}" / "config.json").read_text())
            assert config["recipe"] == recipe and config["preset"] == "tiny"
            expected_init = "scratch" if arm == "random" else str(seed_dir / "crosspoint" / "checkpoints")
            assert config["init_weights"].startswith(expected_init)
        assert set(out["metrics"][f"cls_{recipe}_overall_accuracy"]) == {"crosspoint", "random"}
    assert not (seed_dir / "imid_only").exists()  # the IMID-only arm is only pretrained for stage eval
    seg = json.loads((seed_dir / "crosspoint_seg" / "config.json").read_text())
    assert seg["model"] == "dgcnn_seg"
    pretrained = json.loads((seed_dir / "partseg_crosspoint" / "config.json").read_text())
    assert pretrained["init_weights"].startswith(str(seed_dir / "crosspoint_seg" / "checkpoints"))
    assert json.loads((seed_dir / "partseg_scratch" / "config.json").read_text())["init_weights"] == "scratch"
    assert set(out["metrics"]["partseg_pretrained_instance_miou"]) == {"crosspoint", "scratch"}
    table = (tmp_path / "results" / "quickstart.md").read_text()
    assert "recipe pointmae" in table and "from CrossPoint (dgcnn_seg) / from scratch" in table

    # A second seed (its result made from the first, no training): the ablation rows with paired intervals.
    result = json.loads((seed_dir / "result.json").read_text())
    result["seed"] = 2
    for arms in result["cls"].values():
        arms["crosspoint"]["overall_accuracy"] += 0.1
    result["partseg_pretrained"]["crosspoint"]["instance_miou"] += 0.05
    (seed_dir.parent / "seed2").mkdir()
    (seed_dir.parent / "seed2" / "result.json").write_text(json.dumps(result))
    ablation = quickstart.main(common + ["--seeds", "1", "2", "--report_name", "ablation_finetuning"])
    assert not (tmp_path / "results" / "ablation.json").exists()
    for name in ("cls_dgcnn_overall_accuracy", "cls_pointmae_overall_accuracy"):
        assert ablation["metrics"][name]["differences"]["crosspoint - random"]["n"] == 2
    assert ablation["metrics"]["partseg_pretrained_instance_miou"]["differences"]["crosspoint - scratch"]["n"] == 2
    md = (tmp_path / "results" / "ablation_finetuning.md").read_text()
    # The held-out loss after each epoch (tiny: 2 epochs) and each kind of run's training time, from the runs.
    cls_run = result["cls"]["pointmae"]["random"]
    assert cls_run["train_seconds"] > 0 and len(cls_run["val_loss"]) == 2
    assert f"| pointmae, from random init | {cls_run['val_loss'][0]:.3f} |" in md  # seed 2 is a copy of seed 1
    assert "Training time per run" in md and "pretraining crosspoint_seg (dgcnn_seg)" in md
    assert "Per-seed values: `ablation_finetuning.json`." in md
    # One seed again: the fine-tuning rows get the seed std of the committed ablation_finetuning.json.
    quickstart.main(common)
    assert "seed std" in (tmp_path / "results" / "quickstart.md").read_text()
    with pytest.raises(SystemExit, match="must be a file name"):
        quickstart.main(common + ["--report_name", "../x"])
    assert "| classification fine-tuning | from CrossPoint | from random init | CrossPoint − random |" in md
    assert "| part segmentation (restricted argmax) | from CrossPoint | from scratch | CrossPoint − scratch |" in md
    assert "recipe dgcnn |" in md and "recipe pointmae |" in md and "| part seg. instance mIoU |" in md


def test_reports_record_the_seed_the_data_was_generated_with(quickstart, tiny_data_root, tmp_path, monkeypatch):
    """--data_root: the data seed in ablation.json/.md is the one SYNTHETIC.json records (the tiny root: 0), not
    the --data_seed default; real data has none; a contradicting --data_seed is refused."""
    monkeypatch.setattr(quickstart, "run_seed", lambda args, seed, *rest: {"seed": seed, "arms": {}, "pretraining": {}})
    monkeypatch.setattr(quickstart, "determinants", lambda *args: {})
    common = ["--data_root", str(tiny_data_root), "--device", "cpu", "--seeds", "1", "2", "--no_progress",
              "--runs_dir", str(tmp_path / "runs"), "--results_dir", str(tmp_path / "results")]
    assert quickstart.main(common)["data_seed"] == 0
    assert json.loads((tmp_path / "results" / "ablation.json").read_text())["data_seed"] == 0
    assert "data seed 0," in (tmp_path / "results" / "ablation.md").read_text()
    with pytest.raises(SystemExit, match=r"--data_seed 1, but --data_root .* holds synthetic data of seed 0"):
        quickstart.main(common + ["--data_seed", "1"])
    real = tmp_path / "real"
    real.mkdir()
    report = quickstart.main(common[:1] + [str(real)] + common[2:])
    assert report["data"] == "real" and report["data_seed"] is None
    assert "real data," in (tmp_path / "results" / "ablation.md").read_text()


@pytest.fixture
def fake_partseg(quickstart, monkeypatch):
    """The quickstart with its one stage (partseg) replaced by a recorder of the seed directory it trains in."""
    calls = []

    def partseg(args, seed, seed_dir, data_root):
        calls.append(seed_dir)
        return {"epochs": 1, "instance_miou": 0.5, "class_miou": 0.5, "init_instance_miou": 0.1}

    monkeypatch.setattr(quickstart, "finetune_partseg", partseg)
    monkeypatch.setattr(quickstart, "determinants", lambda *args: {})
    return calls


def test_runs_of_other_presets_or_data_never_share_a_directory(quickstart, fake_partseg, tiny_data_root, tmp_path):
    """Issue 24: the default preset after --preset tiny reused tiny's run directory (and failed on its k), and
    another data root reused models pretrained on other data."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data_root, data)
    common = ["--data_root", str(data), "--device", "cpu", "--stages", "partseg", "--no_progress",
              "--runs_dir", str(tmp_path / "runs"), "--results_dir", str(tmp_path / "results")]
    quickstart.main(common + ["--preset", "tiny"])
    quickstart.main(common + ["--preset", "small"])
    assert len(fake_partseg) == 2 and fake_partseg[0] != fake_partseg[1]
    assert fake_partseg[0].parent.name.startswith("tiny-") and fake_partseg[1].parent.name.startswith("small-")
    quickstart.main(common + ["--preset", "tiny"])  # the same settings and data: the finished seed is reused
    assert len(fake_partseg) == 2
    # The data changed under the same root: a new directory, nothing reused.
    labels = next(data.rglob("*.h5"))
    labels.write_bytes(labels.read_bytes() + b"\0")
    quickstart.main(common + ["--preset", "tiny"])
    assert len(fake_partseg) == 3 and fake_partseg[2] not in fake_partseg[:2]
    # Another data root with the same preset: another directory.
    other = tmp_path / "other"
    shutil.copytree(tiny_data_root, other)
    quickstart.main(common[:1] + [str(other)] + common[2:] + ["--preset", "tiny"])
    assert len(fake_partseg) == 4 and len(set(fake_partseg)) == 4


def test_an_explicit_preset_wins_on_real_data(quickstart, tmp_path, monkeypatch):
    """Issue 24: on a root made by prepare_meshes (no synthetic marker: "real"), --preset tiny became paper."""
    monkeypatch.setattr(quickstart, "run_seed", lambda args, seed, *rest: {"seed": seed, "arms": {}, "pretraining": {}})
    monkeypatch.setattr(quickstart, "determinants", lambda *args: {})
    real = tmp_path / "real"
    real.mkdir()
    common = ["--data_root", str(real), "--device", "cpu", "--no_progress", "--runs_dir", str(tmp_path / "runs"),
              "--results_dir", str(tmp_path / "results")]
    assert quickstart.main(common + ["--preset", "tiny"])["preset"] == "tiny"
    assert quickstart.main(common)["preset"] == "paper"
