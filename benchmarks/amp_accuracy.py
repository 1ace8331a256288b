"""Accuracy cost of mixed precision: CrossPoint pretraining in fp32 vs ``--amp bf16`` (or fp16), seed by seed.

    python -m benchmarks.amp_accuracy --seeds 1 2 3                       # quickstart `small` preset, CPU
    python -m benchmarks.amp_accuracy --seeds 1 2 3 --device cuda --preset paper --data_root data

For every seed and precision it runs ``train_crossmodal.py --preset P --amp A --seed S`` (a separate process,
resumed if interrupted), then the linear SVM (``eval_svm.py``, fixed C, the original protocol, in fp32) on the
ModelNet40-style and ScanObjectNN-style sets, and prints a table: per-precision mean ± std over seeds, the
seed-paired difference to fp32 with a 95% t-interval, and the pretraining time per run. Writes
``benchmarks/results/amp_accuracy.json``. On synthetic data the numbers are labelled as such.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.run import machine_info  # noqa: E402
from datasets.provenance import data_kind  # noqa: E402
from datasets.synthetic.generator import generate  # noqa: E402
from util.fileio import atomic_write_text  # noqa: E402
from evaluation.seeds import paired_difference, summarize  # noqa: E402
from util.checkpoint import TRAINING_STATE_NAME

SETS = ("modelnet40", "scanobjectnn")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--precisions", nargs="+", default=["none", "bf16"], choices=["none", "bf16", "fp16"],
                   help="--amp values to compare; the first is the reference")
    p.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    p.add_argument("--data_root", default=None, help="default: the quickstart's synthetic data of the preset")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="OMP/MKL threads of every child process")
    p.add_argument("--runs_dir", default="runs/amp_accuracy")
    p.add_argument("--output", default="benchmarks/results/amp_accuracy.json")
    return p


def child_env(threads: int) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "WANDB_MODE": "disabled"}
    env.update({v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def run(cmd: list[str], env: dict[str, str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    code = subprocess.run([sys.executable, *cmd], cwd=REPO_ROOT, env=env).returncode
    if code != 0:
        raise SystemExit(f"amp_accuracy: {cmd[0]} failed with exit status {code}; run the same command again to "
                         "resume.")


def one_run(args: argparse.Namespace, data_root: Path, amp: str, seed: int, env: dict[str, str]) -> dict[str, Any]:
    """Pretrain (or resume) one arm, then evaluate its best encoder; cached in ``<run>/amp_result.json``."""
    run_dir = Path(args.runs_dir) / f"{amp}_seed{seed}"
    done = run_dir / "amp_result.json"
    if done.is_file():
        return json.loads(done.read_text())
    cmd = ["train_crossmodal.py", "--preset", args.preset, "--data_root", str(data_root), "--seed", str(seed),
           "--amp", amp, "--device", args.device, "--output_dir", str(run_dir.parent), "--exp_name", run_dir.name,
           "--num_workers", "1", "--no_progress", "--print_freq", "100000"]
    if (run_dir / "checkpoints" / TRAINING_STATE_NAME).is_file():
        cmd += ["--resume", str(run_dir)]
    elif run_dir.exists():
        cmd.append("--overwrite")
    start = time.perf_counter()
    run(cmd, env)
    pretrain_s = time.perf_counter() - start
    weights = run_dir / "checkpoints" / "point_encoder_best.pth"
    out: dict[str, Any] = {"amp": amp, "seed": seed, "pretrain_s": pretrain_s}
    for name in SETS:
        result = run_dir / f"svm_{name}.json"
        run(["eval_svm.py", "--preset", args.preset, "--model_path", str(weights), "--dataset", name,
             "--data_root", str(data_root), "--device", args.device, "--output", str(result), "--no_cache",
             "--no_progress"], env)
        out[f"svm_{name}"] = json.loads(result.read_text())["accuracy"]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epochs = [m for m in metrics if "epoch/loss" in m]
    out["final_loss"] = epochs[-1]["epoch/loss"] if epochs else None
    out["epoch_time_s"] = [m.get("epoch/time_s") for m in epochs]
    atomic_write_text(done, json.dumps(out, indent=2) + "\n")
    return out


def report(args: argparse.Namespace, results: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    ref = args.precisions[0]
    by = {(r["amp"], r["seed"]): r for r in results}
    table: dict[str, Any] = {}
    for name in (*[f"svm_{s}" for s in SETS], "pretrain_s"):
        row: dict[str, Any] = {}
        for amp in args.precisions:
            values = [by[(amp, s)][name] for s in args.seeds]
            row[amp] = {"per_seed": values, **summarize(values)}
            if amp != ref:
                row[f"{amp}_minus_{ref}"] = paired_difference(values, [by[(ref, s)][name] for s in args.seeds])
        table[name] = row
    return {"data": kind, "preset": args.preset, "device": args.device, "seeds": args.seeds,
            "precisions": args.precisions, "metrics": table, "runs": results,
            "machine": machine_info(args.device),
            "method": "seed-paired difference, 95% t-interval over seeds (evaluation.seeds.paired_difference); SVM "
                      "(fixed C, original protocol) in fp32 on the encoder pretrained in each precision"}


def print_table(rep: dict[str, Any]) -> None:
    ref = rep["precisions"][0]
    print(f"\nMixed-precision pretraining, {rep['data'].upper()} data, preset {rep['preset']}, device "
          f"{rep['device']}, seeds {rep['seeds']}")
    print(f"{'metric':<18}" + "".join(f"{amp:>22}" for amp in rep["precisions"]) + f"{'difference':>32}")
    for name, row in rep["metrics"].items():
        scale = 100.0 if name.startswith("svm_") else 1.0
        cells = "".join(f"{scale * row[a]['mean']:>14.2f} ± {scale * row[a]['std']:<5.2f}" for a in rep["precisions"])
        diffs = "  ".join(
            f"{a}-{ref} {scale * d['mean']:+.2f} [{scale * d['ci_low']:+.2f}, {scale * d['ci_high']:+.2f}]"
            for a in rep["precisions"][1:] for d in [row[f"{a}_minus_{ref}"]])
        print(f"{name:<18}{cells}  {diffs}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.data_root is None:
        size = "full" if args.preset == "paper" else args.preset
        data_root = REPO_ROOT / "data" / f"synthetic_{size}"
        generate(data_root, preset=size, seed=1, progress=False)
    else:
        data_root = Path(args.data_root)
    kind = data_kind(data_root)
    env = child_env(args.threads)
    results = [one_run(args, data_root, amp, seed, env) for seed in args.seeds for amp in args.precisions]
    rep = report(args, results, kind)
    atomic_write_text(Path(args.output), json.dumps(rep, indent=2) + "\n")
    print_table(rep)
    print(f"\nwrote {args.output}")
    return rep


if __name__ == "__main__":
    main()
