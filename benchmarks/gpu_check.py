"""One command that proves a GPU: CUDA tests, the full step per precision, fast-vs-plain agreement, kill + resume.

    bash scripts/gpu_check.sh [--out benchmarks/results/gpu_check.json] [--data_root DIR]
    python -m benchmarks.gpu_check --device cpu --smoke --out /tmp/gpu_check.json   # the code path, tiny sizes, CPU

On a machine with one CUDA GPU it runs four parts, each in its own process under a time budget
(``BUDGET_S``, about 7.5 minutes in all; a part over its budget is stopped and recorded as failed):

- ``tests``: the CUDA-only tests of tests/ (``benchmarks.cuda_tests_plugin`` selects them) with pytest;
  pass/fail/skip counts from its JUnit XML.
- ``steps``: the full CrossPoint pretraining step at the published sizes (DGCNN k 15, emb 1024 +
  head on 2 x 20 clouds of 2048 points, ResNet-50 + head on 20 images of 224 px, IMID + CMID,
  backward, Adam) in fp32, bf16 and fp16 (GradScaler) for the fast and the plain EdgeConv, through
  ``benchmarks.run.time_crosspoint``: median step time after warm-up (``torch.cuda.synchronize``) and
  ``torch.cuda.max_memory_allocated`` (reset before each precision). Random inputs, no data.
- ``agreement``: with TF32 off, fast vs plain EdgeConv on the same weights and inputs (one layer and
  the whole DGCNN: outputs and gradients, max abs and relative differences), the fast layer under
  ``torch.sparse.check_sparse_tensor_invariants`` (sorted CSR columns), and the share of rows whose
  neighbour set ``knn`` / ``knn_plain`` keep under bf16/fp16 autocast against a float64 reference;
  the same DGCNN comparison with TF32 on, for information.
- ``resume``: ``train_crossmodal.py --preset paper`` for 2 epochs of 3 steps (batch 20, or the
  data's object count if smaller) on synthetic data with ``--deterministic``, stopped after epoch 1
  (``--stop_after 1``) and continued with ``--resume``, against an uninterrupted 2-epoch run: the
  max abs difference of the final weights (pass: 0). Without ``--data_root`` the synthetic
  ShapeNetRender set (preset small) is generated first, which needs trimesh and embreex.

It writes ``--out`` (device, torch/CUDA versions, every part's results and pass/fail, the total
time) and prints a table; the exit status is 0 when every part passed. Without a CUDA GPU it prints
one line and exits 0. ``--device cpu --smoke`` runs every part at tiny sizes on the CPU (tests).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import torch

from util.fileio import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
PARTS = ("tests", "steps", "agreement", "resume")
BUDGET_S = {"tests": 90, "steps": 150, "agreement": 60, "resume": 150}  # 450 s of the 8 minutes
SMOKE_BUDGET_S = {"tests": 240, "steps": 240, "agreement": 120, "resume": 480}  # a busy shared 2-core CPU
REL_TOL = 1e-3  # fast vs plain in fp32 without TF32: max |fast - plain| / max |plain|
KNN_MIN_AGREEMENT = 0.999  # share of rows whose neighbour set equals the float64 reference


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results/gpu_check.json", help="JSON result (default: %(default)s)")
    p.add_argument("--data_root", default=None,
                   help="synthetic data root (ShapeNet/ + ShapeNetRendering/) for the resume part "
                        "(default: generate the small preset's ShapeNetRender set in --work_dir)")
    p.add_argument("--device", default="cuda", help="cuda or cuda:N; cpu only with --smoke (default: cuda)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (the code path in seconds, e.g. on a CPU)")
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of %(default)s")
    p.add_argument("--tests", nargs="+", default=["tests"], help="pytest paths of the tests part (default: tests)")
    p.add_argument("--work_dir", default=None, help="scratch folder for runs and data (default: a temporary one)")
    p.add_argument("--part", default=None, help=argparse.SUPPRESS)
    p.add_argument("--part_out", default=None, help=argparse.SUPPRESS)
    return p


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------
# Part: CUDA tests
# ---------------------------------------------------------------------------------------------


def junit_cases(path: Path) -> list[dict[str, str]]:
    """Every test case of a JUnit XML file: its id (module::name, or the module for a collection
    error) and outcome (passed, failed, error, skipped, or "collection error": a test module that
    could not be imported, e.g. for lack of an optional package on the GPU machine)."""
    outcomes = {"failure": "failed", "error": "error", "skipped": "skipped"}
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        marks = [child for child in case if child.tag in outcomes]
        outcome = outcomes[marks[0].tag] if marks else "passed"
        if outcome == "error" and marks[0].get("message") == "collection failure":
            error = [line for line in (marks[0].text or "").splitlines() if line.startswith("E ")]
            cases.append({"id": case.get("name"), "outcome": "collection error", "error": " ".join(error[-1:])})
            continue
        cases.append({"id": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome})
    return cases


def part_tests(opts: argparse.Namespace, budget: float) -> dict[str, Any]:
    """pytest on the CUDA-only tests (``benchmarks.cuda_tests_plugin``), stopped after ``budget`` seconds.

    Test modules that cannot be imported are recorded (outcome "collection error", with the error
    line) but do not fail the part; a failed or erroring test does, and so does a GPU run in which
    no test passed.
    """
    junit = Path(opts.work_dir) / "cuda_tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "benchmarks.cuda_tests_plugin",
           "-o", "addopts=", "--continue-on-collection-errors", f"--junitxml={junit}", *opts.tests]
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=budget)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return {"passed": False, "error": f"pytest timed out after {budget:.0f} s", "output_tail": tail(out),
                "summary": "timed out"}
    cases = junit_cases(junit) if junit.is_file() else []
    counts = {outcome: sum(c["outcome"] == outcome for c in cases)
              for outcome in ("passed", "failed", "error", "skipped", "collection error")}
    ran_on_gpu = counts["passed"] > 0 or not opts.device.startswith("cuda")
    passed = proc.returncode in (0, 1) and bool(cases) and counts["failed"] == counts["error"] == 0 and ran_on_gpu
    summary = ", ".join(f"{n} {outcome}" for outcome, n in counts.items() if n or outcome in ("passed", "failed"))
    return {"passed": passed, "returncode": proc.returncode, "counts": counts, "cases": cases,
            "command": " ".join(cmd[1:]), "output_tail": tail(proc.stdout + proc.stderr),
            "summary": summary if cases else f"pytest exit {proc.returncode}, no test report"}


# ---------------------------------------------------------------------------------------------
# Part: the full CrossPoint step per precision and EdgeConv formulation
# ---------------------------------------------------------------------------------------------


def part_steps(opts: argparse.Namespace, budget: float) -> dict[str, Any]:
    """fp32 / bf16 / fp16 CrossPoint steps for the fast and plain EdgeConv (``benchmarks.run.time_crosspoint``)."""
    from benchmarks.run import crosspoint_sizes, default_amps, tf32_settings, time_crosspoint

    device = torch.device(opts.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as training without --deterministic: fixed image size
    sizes = crosspoint_sizes("tiny", batch_size=4, num_points=128) if opts.smoke else crosspoint_sizes("paper")
    amps = default_amps(device)
    start, rows, errors, last = time.perf_counter(), [], {}, 0.0
    for impl in ("fast", "plain"):
        if time.perf_counter() - start + 2 * last > budget:  # plain is the slower one: allow it twice fast's time
            errors[impl] = f"not run: would exceed the part's budget of {budget:.0f} s"
            continue
        impl_start = time.perf_counter()
        try:
            rows += time_crosspoint(device, impl, sizes, amps, rounds=1, warmup=0 if opts.smoke else 2,
                                    repeats=1 if opts.smoke else 5)
        except torch.cuda.OutOfMemoryError as exc:
            errors[impl] = f"out of memory: {str(exc).splitlines()[0]}"
        last = time.perf_counter() - impl_start
        if device.type == "cuda":
            torch.cuda.empty_cache()
    keep = ("impl", "precision", "step_s_median", "step_s_min", "step_s_all", "speedup_vs_fp32", "peak_step_mib",
            "max_allocated_mib")
    rows = [{key: row[key] for key in keep if key in row} for row in rows]
    summary = "; ".join(f"{r['impl']} {r['precision']} {r['step_s_median'] * 1000:.0f} ms"
                        + (f" {r['max_allocated_mib']:.0f} MiB" if "max_allocated_mib" in r else "") for r in rows)
    return {"passed": not errors and len(rows) == 2 * len(amps), "sizes": sizes, "amps": amps, "rows": rows,
            "errors": errors, "tf32": tf32_settings(), "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "summary": summary or "no step ran"}


# ---------------------------------------------------------------------------------------------
# Part: fast vs plain agreement (EdgeConv, DGCNN, CSR invariants, kNN under autocast)
# ---------------------------------------------------------------------------------------------


def diff(fast: torch.Tensor, plain: torch.Tensor) -> dict[str, float]:
    """Max abs difference and that over max |plain| (the relative difference) of two same-shape tensors."""
    abs_diff = (fast.double() - plain.double()).abs().max().item()
    return {"max_abs_diff": abs_diff, "max_rel_diff": abs_diff / max(plain.double().abs().max().item(), 1e-30)}


def worst(diffs: list[dict[str, float]]) -> dict[str, float]:
    return {key: max(d[key] for d in diffs) for key in ("max_abs_diff", "max_rel_diff")}


def compare_edgeconv_layer(device: torch.device, batch: int, channels: int, points: int, k: int) -> dict[str, Any]:
    """One EdgeConv layer, fast vs plain: outputs and gradients (input, conv weight, BN affine), fp32.

    Inputs: x (batch, channels, points), neighbours from ``knn``, Conv2d(2C, 64) and a BatchNorm2d
    with random affine parameters (negative gammas included), a random upstream gradient.
    """
    from models.edgeconv import edge_conv, knn

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, points, generator=gen).to(device)
    conv = torch.nn.Conv2d(2 * channels, 64, kernel_size=1, bias=False).to(device)
    bn = torch.nn.BatchNorm2d(64).to(device)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(64, generator=gen))
        bn.bias.copy_(torch.randn(64, generator=gen))
    idx = knn(x, k)  # (B, N, k)
    grad_out = torch.randn(batch, 64, points, generator=gen).to(device)
    results = {}
    for impl in ("fast", "plain"):
        x_in, conv_i, bn_i = x.clone().requires_grad_(True), copy.deepcopy(conv), copy.deepcopy(bn)
        out = edge_conv(x_in, idx, conv_i, bn_i, impl=impl)  # (B, 64, N)
        out.backward(grad_out)
        results[impl] = [out.detach(), x_in.grad, conv_i.weight.grad, bn_i.weight.grad, bn_i.bias.grad,
                         bn_i.running_mean, bn_i.running_var]
    pairs = list(zip(results["fast"], results["plain"]))
    return {"output": diff(*pairs[0]), "gradients": worst([diff(f, p) for f, p in pairs[1:5]]),
            "bn_running_stats": worst([diff(f, p) for f, p in pairs[5:]])}


def compare_dgcnn(device: torch.device, batch: int, points: int, k: int, emb_dims: int) -> dict[str, Any]:
    """DGCNN(edgeconv="fast") vs a copy with edgeconv="plain" (same weights, train mode): features and
    the gradients of every parameter for a random linear loss on the (B, 2 * emb_dims) features."""
    from models.dgcnn import DGCNN

    torch.manual_seed(0)
    fast = DGCNN(k=k, emb_dims=emb_dims, edgeconv="fast").to(device).train()
    plain = DGCNN(k=k, emb_dims=emb_dims, edgeconv="plain").to(device).train()
    plain.load_state_dict(fast.state_dict())
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, points, generator=gen).to(device)  # (B, 3, N)
    weight = torch.randn(batch, 2 * emb_dims, generator=gen).to(device)  # (B, 2 * emb_dims)
    feats = {}
    for name, model in (("fast", fast), ("plain", plain)):
        feats[name] = model(x)  # (B, 2 * emb_dims)
        (feats[name] * weight).sum().backward()
    grads = [diff(pf.grad, pp.grad) for pf, pp in zip(fast.parameters(), plain.parameters())
             if pf.grad is not None or pp.grad is not None]  # inv_head is not in the forward
    return {"features": diff(feats["fast"].detach(), feats["plain"].detach()), "gradients": worst(grads)}


def csr_invariants(device: torch.device, batch: int, points: int, k: int) -> dict[str, Any]:
    """The fast EdgeConv forward + backward with every ``torch.sparse_csr_tensor`` built with
    ``check_invariants=True`` (sorted, in-range column indices per row; what cuSPARSE assumes), even
    where the code passes False. Returns pass/fail, the number of CSR matrices built and the error."""
    from models.edgeconv import edge_conv, knn

    build = torch.sparse_csr_tensor
    built = []

    def checked(*args: Any, **kwargs: Any) -> torch.Tensor:
        built.append(1)
        return build(*args, **{**kwargs, "check_invariants": True})

    x = torch.randn(batch, 64, points, device=device, requires_grad=True)
    conv = torch.nn.Conv2d(128, 64, kernel_size=1, bias=False).to(device)
    bn = torch.nn.BatchNorm2d(64).to(device)
    try:
        with mock.patch.object(torch, "sparse_csr_tensor", checked):
            edge_conv(x, knn(x.detach(), k), conv, bn, impl="fast").sum().backward()
    except RuntimeError as exc:
        return {"passed": False, "csr_tensors_built": len(built), "error": str(exc).splitlines()[0]}
    return {"passed": True, "csr_tensors_built": len(built)}


def knn_agreement(device: torch.device, batch: int, channels: int, points: int, k: int) -> dict[str, dict]:
    """Share of rows whose neighbour set from ``knn`` / ``knn_plain`` (fp32 input, under fp32, bf16 or
    fp16 autocast) equals the float64 reference set, for x (batch, channels, points) ~ N(0, 1)."""
    from benchmarks.run import amp_available
    from models.edgeconv import knn, knn_plain
    from util.device import autocast_context

    x = torch.randn(batch, channels, points, generator=torch.Generator().manual_seed(2)).to(device)
    reference = knn_plain(x.double(), k).sort(dim=-1).values  # (B, N, k)
    table: dict[str, dict] = {}
    for amp in ("none", "bf16", "fp16"):
        if not amp_available(device, amp):
            table[amp] = {"skipped": f"no {amp} autocast on {device.type}"}
            continue
        with autocast_context(device, amp):
            found = {name: fn(x, k) for name, fn in (("knn", knn), ("knn_plain", knn_plain))}
        table[amp] = {name: (idx.sort(dim=-1).values == reference).all(dim=-1).double().mean().item()
                      for name, idx in found.items()}
    return table


def part_agreement(opts: argparse.Namespace, budget: float) -> dict[str, Any]:
    """Fast vs plain on the device (items 3, 5 and 6 of issue 19); pass thresholds REL_TOL, KNN_MIN_AGREEMENT."""
    from benchmarks.run import tf32_settings
    from util.device import configure_backends

    device = torch.device(opts.device)
    n, k, emb, batch = (128, 8, 32, 2) if opts.smoke else (2048, 15, 1024, 4)
    before = tf32_settings()
    configure_backends(device, allow_tf32=False)  # the training scripts' fp32 policy; this part's own process
    torch.backends.cudnn.benchmark = False
    result: dict[str, Any] = {"tf32_before": before, "sizes": {"batch": batch, "points": n, "k": k, "emb_dims": emb}}
    result["edgeconv_layer_fp32"] = compare_edgeconv_layer(device, batch, 64, n, k)
    result["dgcnn_fp32"] = compare_dgcnn(device, batch, n, k, emb)
    result["csr_invariants"] = csr_invariants(device, batch, n, k)
    result["knn_neighbour_sets"] = knn_agreement(device, batch, 64, n, k)
    configure_backends(device, allow_tf32=True)  # --allow_tf32
    torch.backends.cudnn.benchmark = False
    result["dgcnn_tf32_info"] = compare_dgcnn(device, batch, n, k, emb)
    rel = [result["edgeconv_layer_fp32"][key]["max_rel_diff"] for key in ("output", "gradients", "bn_running_stats")]
    rel += [result["dgcnn_fp32"][key]["max_rel_diff"] for key in ("features", "gradients")]
    shares = [v for row in result["knn_neighbour_sets"].values() for v in row.values() if isinstance(v, float)]
    result["passed"] = max(rel) < REL_TOL and result["csr_invariants"]["passed"] and min(shares) >= KNN_MIN_AGREEMENT
    result["summary"] = (f"max rel diff {max(rel):.1e} (tol {REL_TOL:g}); CSR invariants "
                         f"{'ok' if result['csr_invariants']['passed'] else 'FAIL'}; min kNN agreement {min(shares):.4f}")
    return result


# ---------------------------------------------------------------------------------------------
# Part: a paper-shaped pretraining run killed after epoch 1 and resumed, vs an uninterrupted one
# ---------------------------------------------------------------------------------------------


def synthetic_root(opts: argparse.Namespace, deadline: float) -> tuple[Path | None, str]:
    """``--data_root``, or a ShapeNetRender set generated in the work folder; (None, why) if that fails."""
    if opts.data_root:
        return Path(opts.data_root), f"--data_root {opts.data_root}"
    root = Path(opts.work_dir) / "synthetic"
    preset = "tiny" if opts.smoke else "small"
    cmd = [sys.executable, "-m", "datasets.synthetic", "--root", str(root), "--preset", preset,
           "--only", "shapenet_render", "--quiet", "--workers", str(min(8, os.cpu_count() or 1))]
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=max(deadline - time.time(), 1))
    except subprocess.TimeoutExpired:
        return None, "generating the synthetic data timed out"
    if proc.returncode != 0:
        return None, f"generating the synthetic data failed (give --data_root): {tail(proc.stderr, 3)}"
    return root, f"generated: {' '.join(cmd[1:])}"


def train(args: list[str], deadline: float) -> dict[str, Any]:
    """Run ``train_crossmodal.py args``; its exit code, seconds and the tail of its output."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "train_crossmodal.py", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=max(deadline - time.time(), 1))
    except subprocess.TimeoutExpired:
        return {"returncode": None, "error": "timed out (part budget)", "seconds": time.perf_counter() - start}
    return {"returncode": proc.returncode, "seconds": time.perf_counter() - start,
            "output_tail": tail(proc.stdout + proc.stderr, 8)}


def weights_difference(state_a: Path, state_b: Path) -> dict[str, Any]:
    """Max abs difference over the models' floating tensors of two training states, and whether the
    other entries (e.g. BN batch counters) and the epochs are equal."""
    a, b = (torch.load(p, map_location="cpu", weights_only=False) for p in (state_a, state_b))
    max_abs, other_equal = 0.0, a["epoch"] == b["epoch"]
    for name, model in a["models"].items():
        for key, tensor in model.items():
            other = b["models"][name][key]
            if tensor.is_floating_point():
                max_abs = max(max_abs, (tensor.double() - other.double()).abs().max().item())
            else:
                other_equal = other_equal and bool(torch.equal(tensor, other))
    return {"max_abs_diff": max_abs, "other_entries_equal": other_equal, "epochs": [a["epoch"], b["epoch"]]}


def part_resume(opts: argparse.Namespace, budget: float) -> dict[str, Any]:
    """2 epochs stopped after 1 and resumed vs 2 uninterrupted (train_crossmodal.py, --deterministic)."""
    deadline = time.time() + budget
    root, data_note = synthetic_root(opts, deadline)
    if root is None:
        return {"passed": False, "error": data_note, "summary": data_note}
    objects = len(list((root / "ShapeNet").rglob("*.ply")))
    batch = 8 if opts.smoke else min(20, objects)
    runs = Path(opts.work_dir) / "runs"
    common = ["--preset", "tiny" if opts.smoke else "paper", "--data_root", str(root), "--output_dir", str(runs),
              "--device", opts.device, "--epochs", "2", "--max_steps_per_epoch", "1" if opts.smoke else "3",
              "--batch_size", str(batch), "--probe_dataset", "none", "--deterministic", "--no_progress",
              "--num_workers", "0" if opts.smoke else "4", "--seed", "1", "--overwrite"]
    steps = {"interrupted": train(common + ["--exp_name", "interrupted", "--stop_after", "1"], deadline)}
    resume_args = [a for a in common if a != "--overwrite"]
    steps["resumed"] = train(resume_args + ["--exp_name", "interrupted", "--resume", str(runs / "interrupted")],
                             deadline)
    steps["uninterrupted"] = train(common + ["--exp_name", "uninterrupted"], deadline)
    result = {"data": data_note, "objects": objects, "batch_size": batch, "runs": steps, "passed": False}
    failed = [name for name, step in steps.items() if step["returncode"] != 0]
    if failed:
        result["summary"] = f"{', '.join(failed)} run failed: {tail(steps[failed[0]].get('output_tail', ''), 1)}"
        return result
    state = Path("checkpoints") / "training_state_last.pt"
    result["weights"] = weights_difference(runs / "interrupted" / state, runs / "uninterrupted" / state)
    result["passed"] = result["weights"]["max_abs_diff"] == 0.0 and result["weights"]["other_entries_equal"]
    result["summary"] = (f"batch {batch}, resumed vs uninterrupted: max abs weight diff "
                         f"{result['weights']['max_abs_diff']:.3g}")
    return result


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------

PART_FUNCTIONS: dict[str, Callable[[argparse.Namespace, float], dict[str, Any]]] = {
    "tests": part_tests, "steps": part_steps, "agreement": part_agreement, "resume": part_resume,
}


def run_part(name: str, opts: argparse.Namespace, argv: list[str], budget: float) -> dict[str, Any]:
    """Run one part in a fresh process (``--part name``), stopped after its budget plus a margin."""
    out = Path(opts.work_dir) / f"part_{name}.json"
    cmd = [sys.executable, "-m", "benchmarks.gpu_check", *argv, "--work_dir", opts.work_dir, "--part", name,
           "--part_out", str(out)]
    print(f"gpu_check: {name} (budget {budget:.0f} s) ...", flush=True)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=budget + 30)
    except subprocess.TimeoutExpired:
        return {"passed": False, "error": f"over its budget of {budget:.0f} s", "summary": "timed out",
                "seconds": time.perf_counter() - start}
    if proc.returncode != 0 or not out.is_file():
        result = {"passed": False, "error": tail(proc.stderr, 20), "summary": tail(proc.stderr, 1)}
    else:
        result = json.loads(out.read_text())
    result["seconds"] = time.perf_counter() - start
    return result


def environment(device: str) -> dict[str, Any]:
    """Device name and versions of torch, CUDA and cuDNN."""
    from benchmarks.run import machine_info

    info = machine_info(device)
    info.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                device_name=torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else info["cpu"])
    return info


def print_table(record: dict[str, Any]) -> None:
    print(f"\ngpu_check on {record['environment']['device_name']} (torch {record['environment']['torch']}, "
          f"CUDA {record['environment']['cuda']}), {record['total_s']:.0f} s")
    width = max(len(name) for name in record["parts"])
    for name, part in record["parts"].items():
        status = "pass" if part["passed"] else "FAIL"
        print(f"  {name.ljust(width)}  {status}  {part.get('seconds', 0):6.1f} s  {part.get('summary', '')}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = build_parser().parse_args(argv)
    if opts.part is not None:
        budget = (SMOKE_BUDGET_S if opts.smoke else BUDGET_S)[opts.part]
        result = PART_FUNCTIONS[opts.part](opts, budget)
        Path(opts.part_out).write_text(json.dumps(result, indent=2, default=str) + "\n")
        return 0
    if opts.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA GPU visible (torch {torch.__version__}, cuda available: False); nothing to check")
        return 0
    if not opts.device.startswith("cuda") and not opts.smoke:
        raise SystemExit(f"gpu_check: --device {opts.device} needs --smoke (the full sizes are for a GPU).")
    parts = [p.strip() for p in opts.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise SystemExit(f"gpu_check: --parts {opts.parts}: unknown part(s) {unknown}; choose from {list(PARTS)}.")
    budgets = SMOKE_BUDGET_S if opts.smoke else BUDGET_S
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as scratch:
        opts.work_dir = opts.work_dir or scratch
        Path(opts.work_dir).mkdir(parents=True, exist_ok=True)
        results = {name: run_part(name, opts, argv, budgets[name]) for name in parts}
    record = {"environment": environment(opts.device), "smoke": opts.smoke, "budgets_s": budgets, "parts": results,
              "passed": all(r["passed"] for r in results.values()), "total_s": time.perf_counter() - start}
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(record, indent=2, default=str) + "\n")
    print_table(record)
    print(f"wrote {out}")
    return 0 if record["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
