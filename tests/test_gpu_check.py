"""scripts/gpu_check.sh / benchmarks.gpu_check (issue 19, item 10) and the CPU precision rows of
benchmarks.run's crosspoint section (item 9): everything but the GPU itself, on the CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check
from benchmarks.run import CP_PAPER, crosspoint_sizes, main as bench_main
from util.presets import PRESETS

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"


def test_gpu_check_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a CUDA GPU")
def test_gpu_check_without_gpu_says_so_in_one_line_and_exits_0(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(["bash", str(SCRIPT), "--out", str(out)], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"gpu_check: no CUDA GPU visible (torch {torch.__version__}, cuda available: False); nothing to check"
    ]
    assert proc.stderr == "" and not out.exists()


def test_gpu_check_refuses_full_sizes_on_the_cpu_and_unknown_parts():
    with pytest.raises(SystemExit, match="--device cpu needs --smoke"):
        gpu_check.main(["--device", "cpu"])
    with pytest.raises(SystemExit, match=r"unknown part\(s\) \['speed'\]"):
        gpu_check.main(["--device", "cpu", "--smoke", "--parts", "steps,speed"])


def test_crosspoint_sizes_follow_the_presets():
    assert crosspoint_sizes("paper") == CP_PAPER == {"num_points": 2048, "k": 15, "emb_dims": 1024,
                                                     "img_model": "resnet50", "image_size": 224, "batch_size": 20}
    small = PRESETS["pretrain"]["small"]
    assert crosspoint_sizes("small") == {key: small[key] for key in CP_PAPER}
    assert crosspoint_sizes("small", batch_size=4, k=None)["batch_size"] == 4


def test_knn_agreement_and_layer_comparison_report_every_precision():
    """The agreement helpers on the CPU: fp32 agrees with the float64 reference; fast and plain agree."""
    device = torch.device("cpu")
    table = gpu_check.knn_agreement(device, batch=2, channels=8, points=64, k=4)
    assert set(table) == {"none", "bf16", "fp16"}
    assert table["none"] == {"knn": 1.0, "knn_plain": 1.0}
    assert all(0.0 <= share <= 1.0 for row in table.values() for share in row.values() if isinstance(share, float))
    layer = gpu_check.compare_edgeconv_layer(device, batch=2, channels=8, points=64, k=4)
    assert layer["output"]["max_rel_diff"] < gpu_check.REL_TOL
    assert layer["gradients"]["max_rel_diff"] < gpu_check.REL_TOL
    assert layer["bn_running_stats"]["max_rel_diff"] < gpu_check.REL_TOL


def test_csr_check_counts_and_checks_every_sparse_matrix(monkeypatch):
    """csr_invariants forces check_invariants=True: an unsorted CSR matrix is reported, not accepted."""
    import models.edgeconv as edgeconv

    def edge_conv_with_unsorted_csr(x, idx, conv, bn, impl="fast"):
        crow, cols = torch.tensor([0, 2, 2]), torch.tensor([1, 0])  # row 0's columns out of order
        torch.sparse_csr_tensor(crow, cols, torch.ones(2), (2, 2), check_invariants=False)
        return x[:, :1]

    monkeypatch.setattr(edgeconv, "edge_conv", edge_conv_with_unsorted_csr)
    result = gpu_check.csr_invariants(torch.device("cpu"), batch=1, points=16, k=4)
    assert result["passed"] is False and result["csr_tensors_built"] >= 1 and "sorted" in result["error"]


def test_tests_part_selects_cuda_tests_and_records_unimportable_modules(tmp_path):
    """The plugin keeps the CUDA-only tests; a module that cannot be imported is a collection error, not a failure."""
    folder = tmp_path / "suite"
    folder.mkdir()
    (folder / "test_cuda.py").write_text(
        "import pytest\nimport torch\n\n"
        "@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')\ndef test_on_gpu():\n    pass\n\n"
        "def test_branch():\n    if torch.cuda.is_available():\n        pass\n\n"
        "def test_cpu_only():\n    pass\n")
    (folder / "test_broken.py").write_text("import not_a_module_of_this_project\n")
    opts = gpu_check.build_parser().parse_args(["--device", "cpu", "--smoke", "--tests", str(folder),
                                                "--work_dir", str(tmp_path)])
    result = gpu_check.part_tests(opts, budget=300)
    outcomes = {case["id"]: case["outcome"] for case in result["cases"]}
    gpu_outcome = "passed" if torch.cuda.is_available() else "skipped"
    assert outcomes == {"test_cuda::test_on_gpu": gpu_outcome, "test_cuda::test_branch": "passed",
                        "test_broken": "collection error"}
    assert result["passed"] and result["counts"]["collection error"] == 1
    broken = next(case for case in result["cases"] if case["id"] == "test_broken")
    assert "not_a_module_of_this_project" in broken["error"]


@pytest.mark.slow
def test_crosspoint_section_times_fp32_and_bf16_side_by_side_on_the_cpu():
    records = bench_main(["--only", "crosspoint", "--cp-preset", "tiny", "--cp-batch", "4", "--cp-points", "64",
                          "--impls", "fast", "--warmup", "0", "--repeats", "1", "--rounds", "2", "--no-save"])
    record = records["crosspoint"]
    assert record["sizes"]["batch_size"] == 4 and record["amps"] == ["none", "bf16"]
    rows = record["rows"]
    assert [(r["impl"], r["precision"]) for r in rows] == [("fast", "fp32"), ("fast", "bf16")]
    assert rows[0]["speedup_vs_fp32"] == 1.0 and rows[1]["speedup_vs_fp32"] > 0 and rows[1]["cpu_speedup_vs_fp32"] > 0
    assert all(len(r["round_step_s_medians"]) == 2 and len(r["round_speedups_vs_fp32"]) == 2 for r in rows)


@pytest.mark.slow
def test_gpu_check_smoke_run_on_the_cpu_writes_every_part(tmp_path, tiny_data_root):
    out = tmp_path / "gpu_check.json"
    code = gpu_check.main(["--device", "cpu", "--smoke", "--data_root", str(tiny_data_root), "--out", str(out),
                           "--tests", "tests/test_models.py", "--work_dir", str(tmp_path / "work")])
    record = json.loads(out.read_text())
    assert code == (0 if record["passed"] else 1)
    assert record["smoke"] is True and record["environment"]["torch"] == torch.__version__
    parts = record["parts"]
    assert list(parts) == list(gpu_check.PARTS)
    assert all({"passed", "seconds", "summary"} <= set(p) for p in parts.values())
    # tests: only the CUDA-only test of tests/test_models.py is selected (skipped here)
    assert [c["id"] for c in parts["tests"]["cases"]] == ["tests.test_models::test_models_follow_the_input_device"]
    assert parts["tests"]["counts"]["skipped"] == 1 and parts["tests"]["passed"]
    # steps: both EdgeConv formulations x (fp32, bf16) on the CPU
    assert [(r["impl"], r["precision"]) for r in parts["steps"]["rows"]] == [
        (impl, p) for impl in ("fast", "plain") for p in ("fp32", "bf16")]
    assert parts["steps"]["passed"] and all(r["step_s_median"] > 0 for r in parts["steps"]["rows"])
    # agreement: every comparison is recorded (pass/fail depends on the EdgeConv fixes, not on this tool)
    agreement = parts["agreement"]
    assert agreement["dgcnn_fp32"]["features"]["max_rel_diff"] < gpu_check.REL_TOL
    assert set(agreement["knn_neighbour_sets"]) == {"none", "bf16", "fp16"}
    assert "passed" in agreement["csr_invariants"] and "dgcnn_tf32_info" in agreement
    # resume: stopped after epoch 1 and resumed == uninterrupted, bit for bit on the CPU
    resume = parts["resume"]
    assert [r["returncode"] for r in resume["runs"].values()] == [0, 0, 0]
    assert resume["weights"]["max_abs_diff"] == 0.0 and resume["passed"]
