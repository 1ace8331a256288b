"""The README's main job at the tiny size: every stage runs and the report is written."""

import json
import subprocess

import pytest

from conftest import REPO_ROOT


def test_quickstart_shell_script_parses():
    assert subprocess.run(["bash", "-n", str(REPO_ROOT / "scripts/quickstart.sh")]).returncode == 0


@pytest.mark.slow
def test_quickstart_tiny_end_to_end(tiny_data_root, tmp_path):
    import sys

    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import quickstart

    results_dir = tmp_path / "results"
    out = quickstart.main([
        "--preset", "tiny", "--data_root", str(tiny_data_root), "--device", "cpu", "--num_workers", "0",
        "--runs_dir", str(tmp_path / "runs"), "--results_dir", str(results_dir), "--no_progress",
    ])
    saved = json.loads((results_dir / "quickstart.json").read_text())
    assert saved["data"] == "synthetic" and out["data"] == "synthetic"
    assert set(saved["arms"]) == {"crosspoint", "imid_only", "random"}
    for arm in saved["arms"].values():
        for dataset in ("modelnet40", "scanobjectnn"):
            assert 0.0 <= arm[f"svm_{dataset}"] <= 1.0
            assert 0.0 <= arm[f"fewshot_{dataset}"]["mean"] <= 1.0
    assert saved["pretraining"]["crosspoint"]["final_loss"] is not None
    assert 0.0 <= saved["partseg"]["instance_miou"] <= 1.0
    table = (results_dir / "quickstart.md").read_text()
    assert "SYNTHETIC data" in table
    for name in ("CrossPoint (IMID + CMID)", "IMID only", "Random init (no training)"):
        assert f"| {name} |" in table
    assert (results_dir / "quickstart_tsne_crosspoint.png").stat().st_size > 1000
