"""The main job, end to end: data -> CrossPoint pretraining -> linear SVM, few-shot, part segmentation.

    python scripts/quickstart.py                                  # preset small, seed 1, synthetic data, CPU
    python scripts/quickstart.py --seeds 1 2 3 4 5 --stages pretrain eval partseg   # the ablation with spread
    python scripts/quickstart.py --seeds 1 2 3 4 5 --stages pretrain cls partseg_pretrained --threads 1 \
        --report_name ablation_finetuning                         # the fine-tuning ablation
    python scripts/quickstart.py --preset paper --device cuda     # GPU-scale synthetic run, published settings
    python scripts/quickstart.py --data_root data --device cuda   # the real archives, published settings

It compares point encoders of the same architecture on the same data and settings: CrossPoint
(IMID + CMID), IMID only (no image branch in the loss) and a randomly initialized encoder, with the
linear SVM (fixed C, the original protocol) and few-shot classification (both protocols: queries from
train, the original; queries from test, stricter). Stage ``partseg`` fine-tunes part segmentation from
scratch (a pipeline check); stage ``cls`` fine-tunes a classifier from the CrossPoint encoder and from
random init under both recipes of ``train_cls.py`` (``dgcnn`` and ``pointmae``, the preset's epochs with the
warm-up scaled to them); stage ``partseg_pretrained`` pretrains the part-segmentation encoder with CrossPoint
(``train_crossmodal.py --model dgcnn_seg``, the paper's path) and fine-tunes part segmentation from it, beside
the from-scratch run. The default stages are ``pretrain eval partseg``. Every training run is a separate
process (``train_*.py`` with ``--preset``), so nothing here restates their settings; a stage that finished is
skipped and an interrupted one resumed, and a seed whose ``result.json`` exists is not run again, so a long
multi-seed run survives interruption.

One seed writes ``<results_dir>/quickstart.{json,md}`` and t-SNE pictures (with the seed-to-seed spread
measured in the committed ``ablation*.json`` of the same preset, if any); several seeds write
``<results_dir>/<report_name>.{json,md}``: per-seed values, mean ± std, seed-paired differences with 95%
intervals, the held-out loss curves of the fine-tuning runs and each run's training time. Numbers on synthetic data are labelled as such: they are not the paper's tables.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from datasets.classification import ClassificationData  # noqa: E402
from datasets.provenance import data_kind, data_seed  # noqa: E402
from datasets.synthetic.generator import generate  # noqa: E402
from evaluation.features import ExtractOptions, load_features  # noqa: E402
from evaluation.fewshot import few_shot  # noqa: E402
from evaluation.plots import write_tsne  # noqa: E402
from evaluation.seeds import paired_difference, summarize  # noqa: E402
from evaluation.svm import SVMConfig, svm_on_dataset  # noqa: E402
from util.checkpoint import TRAINING_STATE_NAME, torch_load_checked  # noqa: E402
from util.device import resolve_device  # noqa: E402
from util.fileio import atomic_write_text  # noqa: E402
from util.presets import (FEWSHOT, PRETRAIN_K, PUBLISHED_EMB_DIMS, SVM_C, SVM_POINTS, setting)  # noqa: E402
from util.weights import RANDOM_INIT, load_point_encoder  # noqa: E402

ARMS = {"crosspoint": "CrossPoint (IMID + CMID)", "imid_only": "IMID only", "random": "Random init (no training)"}
SVM_DATASETS = ("modelnet40", "scanobjectnn")
PROTOCOLS = {"train": "queries from train (original)", "test": "queries from test (strict)"}
CLS_ARMS = {"crosspoint": "from CrossPoint", "random": "from random init"}
CLS_DATA = {"dataset": "scanobjectnn", "variant": "obj_bg"}
CLS_RECIPES = ("dgcnn", "pointmae")  # train_cls.py --recipe, each from CrossPoint and from random init
PARTSEG_ARMS = {"crosspoint": "from CrossPoint (dgcnn_seg pretraining)", "scratch": "from scratch"}
STAGES = ("pretrain", "eval", "partseg", "cls", "partseg_pretrained")
# Environment of every training process: one BLAS/OpenMP thread pool of a fixed size, so results do not
# depend on how many cores the machine has (see the README's reproducibility section); idle OpenMP threads
# sleep instead of spinning, which only matters for speed on a shared machine.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Kernel choices that decide the last bits of every result (read by torch at import; `quickstart.sh
# --portable` sets them to values every x86-64 CPU can follow), recorded in the reports.
KERNEL_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=["tiny", "small", "paper"], default=None,
                   help="settings of every script (util/presets.py) and the synthetic data size (paper: 'full'); "
                        "default small, or paper on real data (an explicit --preset always wins)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1],
                   help="training/evaluation seeds; several give per-seed values, mean ± std and paired intervals")
    p.add_argument("--stages", nargs="+", choices=STAGES, default=["pretrain", "eval", "partseg"],
                   help="what to run per seed (cls: classification fine-tuning under both recipes, CrossPoint "
                        "vs random init, needs pretrain for the CrossPoint arm; partseg_pretrained: CrossPoint "
                        "pretraining of dgcnn_seg, part segmentation from it and from scratch)")
    p.add_argument("--data_root", default=None,
                   help="existing data root (real archives or synthetic); default: generate data/synthetic_<preset>")
    p.add_argument("--data_seed", type=int, default=None,
                   help="seed of the generated synthetic data, fixed across seeds (default 1; with --data_root: the "
                        "seed its SYNTHETIC.json records, none for real data)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=2,
                   help="intra-op threads of every process (fixed, so results do not depend on the core count)")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's pretraining epochs")
    p.add_argument("--num_workers", type=int, default=1, help="DataLoader workers for pretraining")
    p.add_argument("--runs_dir", default="runs/quickstart",
                   help="where training runs and checkpoints go: <runs_dir>/<preset>-<data hash>/seed<N>, so runs of "
                        "other presets or data never share a directory")
    p.add_argument("--results_dir", default="results", help="where the reports and pictures go")
    p.add_argument("--report_name", default="ablation",
                   help="several seeds: the report's file name, <results_dir>/<report_name>.{json,md} (the committed "
                        "ones: ablation = stages pretrain eval partseg cls, ablation_finetuning = stages pretrain cls "
                        "partseg_pretrained)")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none", help="autocast on GPU")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    return p


class Stopwatch:
    """Prints a banner per stage and records its wall time."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.stages: dict[str, float] = {}

    def run(self, name: str, fn, *args, **kwargs):
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.stages[name] = round(time.perf_counter() - t0, 1)
        print(f"=== {name}: {self.stages[name]:.0f} s ===", flush=True)
        return out

    def total(self) -> float:
        return round(time.perf_counter() - self.start, 1)


def prepare_data(args: argparse.Namespace) -> tuple[Path, str, int | None]:
    """Returns (data root, "synthetic" | "real", the seed the data was generated with: None for real data).

    The seed of an existing ``--data_root`` is the one its SYNTHETIC.json records; a ``--data_seed`` that
    contradicts it is refused (the reports would name a seed the data was not made with).
    """
    if args.data_root is not None:
        root = Path(args.data_root)
        kind = data_kind(root)
        seed = data_seed(root) if kind == "synthetic" else None
        if args.data_seed is not None and args.data_seed != seed:
            held = "real data" if kind == "real" else f"synthetic data of seed {seed} (its SYNTHETIC.json)"
            raise SystemExit(f"quickstart: --data_seed {args.data_seed}, but --data_root {root} holds {held}; drop "
                             "--data_seed (the seed is read from the data) or generate data with that seed.")
        return root, kind, seed
    size = "full" if args.preset == "paper" else args.preset
    root = REPO_ROOT / "data" / f"synthetic_{size}"
    seed = 1 if args.data_seed is None else args.data_seed
    generate(root, preset=size, seed=seed, progress=not args.no_progress)
    return root, "synthetic", seed


def child_env(args: argparse.Namespace) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **{v: str(args.threads) for v in THREAD_VARS}}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("WANDB_MODE", "disabled")
    return env


def run_script(args: argparse.Namespace, script: str, run_dir: Path, flags: list[str]) -> None:
    """``python <script> --preset P ... --exp_name <run_dir>``: resumes a run that has a training state, starts
    over one that does not (a run killed before its first checkpoint)."""
    cmd = [sys.executable, str(REPO_ROOT / script), "--preset", args.preset, "--output_dir", str(run_dir.parent),
           "--exp_name", run_dir.name, "--device", args.device, "--amp", args.amp, "--print_freq", "100000", *flags]
    if (run_dir / "checkpoints" / TRAINING_STATE_NAME).is_file():
        cmd += ["--resume", str(run_dir)]
    elif run_dir.exists():
        cmd.append("--overwrite")
    if args.no_progress:
        cmd.append("--no_progress")
    print("$ " + " ".join(cmd[1:]), flush=True)
    code = subprocess.run(cmd, cwd=REPO_ROOT, env=child_env(args)).returncode
    if code != 0:
        raise SystemExit(f"quickstart: {script} failed (exit status {code}; its message is above). Fix the cause and "
                         "run the same command again: finished stages are skipped and this one resumes.")


def pretrain(args: argparse.Namespace, arm: str, seed: int, seed_dir: Path, data_root: Path,
             model: str = "dgcnn") -> dict[str, Any]:
    """Pretrain one arm (or resume it) with the ``model`` encoder; returns its summary from the training state."""
    run_dir = seed_dir / arm
    flags = ["--data_root", str(data_root), "--seed", str(seed), "--num_workers", str(args.num_workers),
             "--model", model, "--probe_dataset", "modelnet40"] + (["--imid_only"] if arm == "imid_only" else [])
    if args.epochs is not None:
        flags += ["--epochs", str(args.epochs)]
    run_script(args, "train_crossmodal.py", run_dir, flags)
    state = torch_load_checked(run_dir / "checkpoints" / TRAINING_STATE_NAME, "a training state")
    history = state["extra"]["history"]
    return {"weights": str(run_dir / "checkpoints" / "point_encoder_best.pth"), "train_seconds": train_seconds(history),
            "best_epoch": state["extra"]["best_epoch"], "best_probe_val_accuracy": state["extra"]["best_metric"],
            "first_loss": history[0]["loss"], "final_loss": history[-1]["loss"], "epochs": len(history)}


def train_seconds(history: list[dict[str, Any]]) -> float:
    """A run's training time: the sum of its epochs' wall times (``time_s``: training and per-epoch validation;
    not start-up or the final test), the same whether the quickstart ran the run or found it done."""
    return round(sum(h.get("time_s", 0.0) for h in history), 1)


def fewshot_settings(preset: str) -> dict[str, Any]:
    """The few-shot settings (k_way, m_shot, n_query, n_runs, num_points) of ``preset``."""
    return {k: setting("fewshot", preset, k, v) for k, v in FEWSHOT.items()}


def evaluate_arm(args: argparse.Namespace, weights: str, seed: int, data_root: Path, kind: str,
                 plot_dir: Path | None) -> dict[str, Any]:
    """Linear SVM and few-shot (both protocols) on both data sets, with the eval scripts' preset settings."""
    device = resolve_device(args.device)
    random_args = {}
    if weights == RANDOM_INIT:
        random_args = {"model": "dgcnn", "k": setting("pretrain", args.preset, "k", PRETRAIN_K),
                       "emb_dims": setting("pretrain", args.preset, "emb_dims", PUBLISHED_EMB_DIMS)}
    encoder = load_point_encoder(weights, device=device, seed=seed, **random_args)
    opts = ExtractOptions(device, cache_dir=Path(args.runs_dir) / "feature_cache", progress=not args.no_progress)
    fs = fewshot_settings(args.preset)
    out: dict[str, Any] = {}
    for name in SVM_DATASETS:
        data = ClassificationData(name, data_root, "obj_bg", setting("svm", args.preset, "num_points", SVM_POINTS))
        ev = svm_on_dataset(encoder, data, kind, opts, SVMConfig([SVM_C]))
        out[f"svm_{name}"] = ev["best"]["accuracy"]
        if plot_dir is not None and name == "modelnet40":
            out["tsne_png"] = write_tsne(ev["features"]["test_f"], ev["features"]["test_y"],
                                         ev["features"]["class_names"], plot_dir / f"tsne_{name}.png",
                                         f"t-SNE, {data.tag} test features ({kind} data)")
        feats = load_features(encoder, ClassificationData(name, data_root, "obj_bg", fs["num_points"]),
                              ("train", "test"), opts)
        for split in PROTOCOLS:
            query = {} if split == "train" else {"query_f": feats["test_f"], "query_y": feats["test_y"]}
            res = few_shot(feats["train_f"], feats["train_y"], k_way=fs["k_way"], m_shot=fs["m_shot"],
                           n_query=fs["n_query"], n_runs=fs["n_runs"], seed=seed, C=1.0, **query)
            out[f"fewshot_{name}_{split}"] = {k: res[k] for k in ("mean", "std", "sem")}
            print(f"{data.tag} few-shot {fs['k_way']}-way {fs['m_shot']}-shot, {PROTOCOLS[split]}: "
                  f"{100 * res['mean']:.1f} ± {100 * res['std']:.1f}", flush=True)
    return out


def finetune_partseg(args: argparse.Namespace, seed: int, seed_dir: Path, data_root: Path,
                     pretrained: str | None = None) -> dict[str, Any]:
    """A short part-segmentation fine-tune from random init (a pipeline check), or from a ``dgcnn_seg``
    pretraining run directory (``pretrained``)."""
    run_dir = seed_dir / ("partseg_scratch" if pretrained is None else "partseg_crosspoint")
    if not (run_dir / "results.json").is_file():
        init = [] if pretrained is None else ["--pretrained_path", pretrained]
        run_script(args, "train_partseg.py", run_dir, ["--data_root", str(data_root), "--seed", str(seed),
                                                       "--num_workers", "0", "--eval_at_init", *init])
    out = json.loads((run_dir / "results.json").read_text())
    return {"epochs": len(out["history"]), "train_seconds": train_seconds(out["history"]), "instance_miou": out["test"]["restricted"]["instance_miou"],
            "class_miou": out["test"]["restricted"]["class_miou"],
            "init_instance_miou": out.get("test_at_init", {}).get("restricted", {}).get("instance_miou")}


def finetune_cls(args: argparse.Namespace, recipe: str, arm: str, seed: int, seed_dir: Path, data_root: Path,
                 weights: str | None) -> dict[str, Any]:
    """Classification fine-tuning under ``recipe`` from the CrossPoint encoder's pretraining run, or from random
    init (the preset's epochs; train_cls.py scales the recipe's warm-up to them)."""
    run_dir = seed_dir / f"cls_{recipe}_{arm}"
    if not (run_dir / "results.json").is_file():
        flags = ["--data_root", str(data_root), "--seed", str(seed), "--num_workers", "0", "--recipe", recipe,
                 "--dataset", CLS_DATA["dataset"], "--variant", CLS_DATA["variant"]]
        run_script(args, "train_cls.py", run_dir, flags + (["--pretrained_path", weights] if weights else []))
    out = json.loads((run_dir / "results.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    return {"overall_accuracy": out["test"]["overall_accuracy"],
            "mean_class_accuracy": out["test"]["mean_class_accuracy"], "best_epoch": out["best_epoch"],
            "epochs": len(out["history"]), "train_seconds": train_seconds(out["history"]),
            "warmup_epochs": config["warmup_epochs"],
            "val_loss": [h.get("val/loss") for h in out["history"]]}


def data_sha256(root: Path) -> str:
    """sha256 over the relative paths and bytes of every file under a synthetic data root: two machines trained
    on the same data only if this matches (the renderer's instruction set can change a few renders)."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def determinants(args: argparse.Namespace, data_root: Path, kind: str) -> dict[str, Any]:
    """What decides the last bits of the numbers besides the seed (README: reproducibility)."""
    from benchmarks.run import machine_info

    return {**machine_info(args.device), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads_per_process": args.threads, "pretrain_num_workers": args.num_workers,
            "kernel_env": {v: os.environ.get(v) for v in KERNEL_VARS},
            "data_sha256": data_sha256(data_root) if kind == "synthetic" else None}


def data_fingerprint(root: Path) -> str:
    """A short hash of a data root: its resolved path and every file's relative path, size and modification time
    (cheap on the real archives too). Other data, or data changed under the same root, gives another hash."""
    h = hashlib.sha1(str(Path(root).resolve()).encode())
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file() and not p.name.startswith(".")):
        st = path.stat()
        h.update(f"\0{path.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:10]


def run_root(args: argparse.Namespace, data_hash: str) -> Path:
    """<runs_dir>/<preset>-<data hash>: the training runs of one preset on one data root (never shared)."""
    return Path(args.runs_dir) / f"{args.preset}-{data_hash}"


def settings_key(args: argparse.Namespace, data_root: Path, data_hash: str) -> str:
    """What determines a seed's results besides the seed: a seed result with another key is redone."""
    fields = {"preset": args.preset, "stages": sorted(args.stages), "data_root": str(Path(data_root).resolve()),
              "data_hash": data_hash, "data_seed": args.data_seed, "epochs": args.epochs, "threads": args.threads}
    if "cls" in args.stages:
        fields["cls_recipes"] = list(CLS_RECIPES)  # a seed result from before the recipes is redone
    return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def run_seed(args: argparse.Namespace, seed: int, data_root: Path, kind: str, clock: Stopwatch,
             data_hash: str) -> dict[str, Any]:
    """Every stage for one seed; the result is saved to <runs_dir>/<preset>-<data hash>/seed<seed>/result.json
    (reused when done with the same settings and data)."""
    seed_dir = run_root(args, data_hash) / f"seed{seed}"
    path, key = seed_dir / "result.json", settings_key(args, data_root, data_hash)
    if path.is_file():
        done = json.loads(path.read_text())
        if done.get("settings_key") == key:
            print(f"seed {seed}: done already ({path})", flush=True)
            return done
    result: dict[str, Any] = {"seed": seed, "settings_key": key, "arms": {}, "pretraining": {}}
    weights = {"random": RANDOM_INIT}
    if "pretrain" in args.stages:
        # the IMID-only arm is only evaluated (stage eval): fine-tuning starts from the CrossPoint arm
        for arm in ("crosspoint", "imid_only") if "eval" in args.stages else ("crosspoint",):
            result["pretraining"][arm] = clock.run(f"seed {seed}: pretrain {arm}", pretrain, args, arm, seed,
                                                   seed_dir, data_root)
            weights[arm] = result["pretraining"][arm]["weights"]
    if "eval" in args.stages:
        for arm, w in sorted(weights.items(), key=lambda item: list(ARMS).index(item[0])):
            plots = seed_dir / "eval" / arm if arm in ("crosspoint", "random") else None
            result["arms"][arm] = clock.run(f"seed {seed}: evaluate {arm}", evaluate_arm, args, w, seed, data_root,
                                            kind, plots)
    if "partseg" in args.stages:
        result["partseg"] = clock.run(f"seed {seed}: part segmentation", finetune_partseg, args, seed, seed_dir,
                                      data_root)
    if "cls" in args.stages:
        pre = str(seed_dir / "crosspoint") if "crosspoint" in weights else None
        result["cls"] = {recipe: {arm: clock.run(f"seed {seed}: classification fine-tuning {recipe} {arm}",
                                                 finetune_cls, args, recipe, arm, seed, seed_dir, data_root,
                                                 pre if arm == "crosspoint" else None)
                                  for arm in CLS_ARMS if arm == "random" or pre is not None}
                         for recipe in CLS_RECIPES}
    if "partseg_pretrained" in args.stages:
        result["partseg_pretrained"] = partseg_from_pretraining(args, seed, seed_dir, data_root, clock)
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    return result


def partseg_from_pretraining(args: argparse.Namespace, seed: int, seed_dir: Path, data_root: Path,
                             clock: Stopwatch) -> dict[str, Any]:
    """Stage partseg_pretrained: CrossPoint pretraining of the part-segmentation encoder (``dgcnn_seg``, arm
    ``crosspoint_seg``), part segmentation fine-tuned from it, and the from-scratch run beside it (shared with
    stage ``partseg``). Returns {"pretraining": summary, "crosspoint": results, "scratch": results}."""
    pre = clock.run(f"seed {seed}: pretrain crosspoint_seg (dgcnn_seg)", pretrain, args, "crosspoint_seg", seed,
                    seed_dir, data_root, model="dgcnn_seg")
    return {"pretraining": pre,
            "crosspoint": clock.run(f"seed {seed}: part segmentation from CrossPoint", finetune_partseg, args, seed,
                                    seed_dir, data_root, str(seed_dir / "crosspoint_seg")),
            "scratch": clock.run(f"seed {seed}: part segmentation from scratch", finetune_partseg, args, seed,
                                 seed_dir, data_root)}


# ----------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------


def metrics_of(seed_result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{metric: {arm: value}} of one seed (accuracies in [0, 1])."""
    out: dict[str, dict[str, float]] = {}
    for arm, r in seed_result.get("arms", {}).items():
        for name, value in r.items():
            if name.startswith("svm_"):
                out.setdefault(name, {})[arm] = value
            elif name.startswith("fewshot_"):
                out.setdefault(name, {})[arm] = value["mean"]
    for recipe, arms in seed_result.get("cls", {}).items():
        for arm, r in arms.items():
            out.setdefault(f"cls_{recipe}_overall_accuracy", {})[arm] = r["overall_accuracy"]
            out.setdefault(f"cls_{recipe}_mean_class_accuracy", {})[arm] = r["mean_class_accuracy"]
    if "partseg" in seed_result:
        out["partseg_instance_miou"] = {"scratch": seed_result["partseg"]["instance_miou"]}
    if "partseg_pretrained" in seed_result:
        for what in ("instance_miou", "class_miou"):
            out[f"partseg_pretrained_{what}"] = {arm: seed_result["partseg_pretrained"][arm][what]
                                                 for arm in PARTSEG_ARMS}
    return out


def metric_label(name: str, fs: dict[str, Any]) -> str:
    if name.startswith("svm_"):
        return f"SVM {name[4:]}-style (C={SVM_C:g})"
    if name.startswith("fewshot_"):
        _, dataset, split = name.split("_")
        return f"few-shot {fs['k_way']}w{fs['m_shot']}s {dataset}-style, {PROTOCOLS[split]}"
    if name.startswith("cls_"):
        what = "OA" if "overall" in name else "mAcc"
        return (f"fine-tuned classifier {what}, {CLS_DATA['dataset']} {CLS_DATA['variant']}-style, recipe "
                f"{name.split('_')[1]}")
    if name.startswith("partseg_pretrained_"):
        return "part seg. " + ("instance" if "instance" in name else "class") + " mIoU"
    return "part seg. instance mIoU (from scratch)"


def aggregate(seed_results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per metric and arm: per-seed values, mean, std; paired differences CrossPoint vs the others."""
    per_seed = [metrics_of(r) for r in seed_results]
    table: dict[str, Any] = {}
    for name in per_seed[0]:
        arms = per_seed[0][name]
        entry = {"arms": {arm: summarize([m[name][arm] for m in per_seed]) for arm in arms}, "differences": {}}
        for other in ("imid_only", "random", "scratch"):
            if "crosspoint" in arms and other in arms:
                entry["differences"][f"crosspoint - {other}"] = paired_difference(
                    [m[name]["crosspoint"] for m in per_seed], [m[name][other] for m in per_seed])
        table[name] = entry
    return table


def _pm(s: dict[str, Any]) -> str:
    return f"{100 * s['mean']:.1f}" + (f" ± {100 * s['std']:.1f}" if s["std"] is not None else "")


def _diff(d: dict[str, Any] | None) -> str:
    if d is None:
        return ""
    if d["ci_low"] is None:
        return f"{100 * d['mean']:+.1f}"
    mark = "" if d["excludes_zero"] else " (n.s.)"
    return f"{100 * d['mean']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]{mark}"


def _finetuning_rows(report: dict[str, Any], prefix: str, title: str, other_name: str, other: str) -> list[str]:
    """The table of the fine-tuning metrics named ``prefix*``: from CrossPoint, from ``other``, the paired
    difference (empty cells for an arm that did not run)."""
    names = [n for n in report["metrics"] if n.startswith(prefix)]
    if not names:
        return []
    lines = ["", f"| {title} | from CrossPoint | {other_name} | CrossPoint − {other} |",
             "|---|---|---|---|"]
    for name in names:
        arms, diffs = report["metrics"][name]["arms"], report["metrics"][name]["differences"]
        cells = [_pm(arms[a]) if a in arms else "" for a in ("crosspoint", other)]
        lines.append(f"| {metric_label(name, report['fewshot'])} | {cells[0]} | {cells[1]} | "
                     f"{_diff(diffs.get(f'crosspoint - {other}'))} |")
    return lines


def ablation_markdown(report: dict[str, Any]) -> str:
    fs = report["fewshot"]
    data = "real data" if report["data"] == "real" else f"data seed {report['data_seed']}"
    lines = [f"# Ablation over {len(report['seeds'])} seeds ({report['label']})", "",
             f"Preset `{report['preset']}`, seeds {report['seeds']}, {data}, device `{report['device']}`, "
             f"{_threads(report)} per process. Each cell: mean ± std over seeds "
             "(sample std); differences: mean of the per-seed differences with a 95% paired t-interval over seeds; "
             "(n.s.): the interval contains 0."]
    frozen = [name for name in report["metrics"] if name.startswith(("svm_", "fewshot_"))]
    if any(name.startswith("fewshot_") for name in frozen):
        lines[-1] += f" Few-shot cells are each seed's mean over {fs['n_runs']} episodes."
    if frozen:
        lines += ["", "| metric | CrossPoint | IMID only | random init | CrossPoint − IMID only | "
                  "CrossPoint − random |", "|---|---|---|---|---|---|"]
    for name in frozen:
        arms, diffs = report["metrics"][name]["arms"], report["metrics"][name]["differences"]
        lines.append(f"| {metric_label(name, fs)} | " + " | ".join(_pm(arms[a]) for a in ARMS) + " | "
                     f"{_diff(diffs.get('crosspoint - imid_only'))} | {_diff(diffs.get('crosspoint - random'))} |")
    lines += _finetuning_rows(report, "cls_", "classification fine-tuning", "from random init", "random")
    lines += _finetuning_rows(report, "partseg_pretrained_", "part segmentation (restricted argmax)",
                              "from scratch", "scratch")
    if "partseg_instance_miou" in report["metrics"]:
        lines += ["", f"Part segmentation from scratch (pipeline check): instance mIoU "
                      f"{_pm(report['metrics']['partseg_instance_miou']['arms']['scratch'])}."]
    lines += _heldout_loss_rows(report) + _train_time_rows(report)
    lines += ["", f"Per-seed values: `{report.get('report_name', 'ablation')}.json`.", ""]
    return "\n".join(lines)


HELDOUT_EPOCHS = (1, 2, 3, 5, 10)  # 1-based epochs of the held-out loss table (and the last one)


def _heldout_loss_rows(report: dict[str, Any]) -> list[str]:
    """Held-out loss of the classification fine-tuning runs after the first epochs (mean over seeds): whether a
    recipe keeps what pretraining gave (a lower loss early from CrossPoint than from random init) or not."""
    runs = [r["cls"] for r in report.get("per_seed", []) if "cls" in r]
    if not runs:
        return []
    n = min(len(arm["val_loss"]) for seed in runs for arms in seed.values() for arm in arms.values())
    epochs = [e for e in HELDOUT_EPOCHS if e < n] + [n]
    lines = ["", "Held-out loss of the classification fine-tuning (cross-entropy on the held-out split after each "
                 "epoch; mean over seeds) and the epoch kept (held-out selection; mean over seeds):", "",
             "| recipe, init | " + " | ".join(f"epoch {e}" for e in epochs) + " | epoch kept |",
             "|---|" + "---|" * (len(epochs) + 1)]
    for recipe, arms in runs[0].items():
        for arm in arms:
            curves = [seed[recipe][arm]["val_loss"] for seed in runs]
            cells = ["n/a" if any(c[e - 1] is None for c in curves) else f"{sum(c[e - 1] for c in curves) / len(curves):.3f}"
                     for e in epochs]
            kept = sum(seed[recipe][arm]["best_epoch"] + 1 for seed in runs) / len(runs)
            lines.append(f"| {recipe}, {CLS_ARMS[arm]} | " + " | ".join(cells) + f" | {kept:.1f} |")
    return lines


def _train_time_rows(report: dict[str, Any]) -> list[str]:
    """Each kind of training run's time (sum of its epochs' wall times, mean over seeds)."""
    times: dict[str, list[float]] = {}
    for r in report.get("per_seed", []):
        for arm, pre in r.get("pretraining", {}).items():
            times.setdefault(f"pretraining {arm}", []).append(pre.get("train_seconds"))
        for recipe, arms in r.get("cls", {}).items():
            for arm, run in arms.items():
                times.setdefault(f"classification {recipe} {arm}", []).append(run.get("train_seconds"))
        if "partseg" in r:
            times.setdefault("part segmentation scratch", []).append(r["partseg"].get("train_seconds"))
        ps = r.get("partseg_pretrained", {})
        for what, run in (("pretraining crosspoint_seg (dgcnn_seg)", ps.get("pretraining")),
                          ("part segmentation from crosspoint_seg", ps.get("crosspoint")),
                          ("part segmentation scratch", ps.get("scratch") if "partseg" not in r else None)):
            if run is not None:
                times.setdefault(what, []).append(run.get("train_seconds"))
    cells = [f"{name} {sum(v) / len(v):.0f} s" for name, v in times.items() if v and None not in v]
    if not cells:
        return []
    return ["", f"Training time per run (sum of its epochs' wall times, mean over seeds; {_threads(report)} per "
                f"process, {report['determinants'].get('cpu', 'CPU')}): " + ", ".join(cells) + "."]


def _threads(report: dict[str, Any]) -> str:
    return f"{report['threads']} thread" + ("" if report["threads"] == 1 else "s")


def quickstart_markdown(report: dict[str, Any], spread: dict[str, Any] | None) -> str:
    """One seed's table, with the seed-to-seed std of a committed multi-seed ablation next to each number."""
    fs, metrics = report["fewshot"], report["metrics"]

    def cell(name: str, arm: str) -> str:
        text = f"{100 * metrics[name][arm]:.1f}"
        if spread is not None and name in spread and arm in spread[name]["arms"] and spread[name]["arms"][arm]["std"]:
            text += f" (seed std {100 * spread[name]['arms'][arm]['std']:.1f})"
        return text

    lines = [f"# Quickstart results ({report['label']})", "",
             f"Preset `{report['preset']}`, seed {report['seeds'][0]}, device `{report['device']}`, total "
             f"{report['total_seconds'] / 60:.1f} min. Linear SVM: `SVC(kernel='linear', C={SVM_C:g})` on frozen "
             f"features; few-shot: {fs['k_way']}-way {fs['m_shot']}-shot, {fs['n_query']} queries/class, mean over "
             f"{fs['n_runs']} episodes.",
             "One seed does not separate methods: " + (
                 f"the seed std in brackets is the spread measured over {spread['_seeds']} seeds in "
                 "results/ablation*.json (same preset)." if spread is not None else
                 "run `--seeds 1 2 3 4 5` for the spread."), "",
             "| metric | " + " | ".join(ARMS.values()) + " |", "|---|---|---|---|"]
    for name in metrics:
        if name.startswith(("svm_", "fewshot_")):
            lines.append(f"| {metric_label(name, fs)} | " + " | ".join(cell(name, a) for a in ARMS) + " |")
    for name in metrics:
        if name.startswith("cls_"):
            cross = cell(name, "crosspoint") if "crosspoint" in metrics[name] else ""
            lines.append(f"| {metric_label(name, fs)} | {cross} | | {cell(name, 'random')} |")
    for name in metrics:
        if name.startswith("partseg_pretrained_"):
            lines.append(f"| {metric_label(name, fs)}: from CrossPoint (dgcnn_seg) / from scratch | "
                         f"{cell(name, 'crosspoint')} | | {cell(name, 'scratch')} |")
    if "partseg" in report:
        ps = report["partseg"]
        init = "n/a" if ps["init_instance_miou"] is None else f"{100 * ps['init_instance_miou']:.1f}"
        lines += ["", f"Part segmentation (from random init, short fine-tune, restricted argmax): instance mIoU "
                      f"{init} at initialization -> {100 * ps['instance_miou']:.1f} after {ps['epochs']} epochs."]
    lines += ["", "Stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in report["stage_seconds"].items()), ""]
    lines += [f"![t-SNE {ARMS[a]}](quickstart_tsne_{a}.png)" for a in ("crosspoint", "random")
              if report.get("tsne", {}).get(a)]
    return "\n".join(lines) + "\n"


def committed_spread(results_dir: Path, preset: str) -> dict[str, Any] | None:
    """The per-metric spread of the committed multi-seed reports (``ablation*.json``) of the same preset, else
    None. ``_seeds``: the smallest number of seeds among them."""
    spread: dict[str, Any] = {}
    for path in sorted(results_dir.glob("ablation*.json")):
        ablation = json.loads(path.read_text())
        if ablation.get("preset") == preset:
            spread.update(ablation["metrics"])
            spread["_seeds"] = min(spread.get("_seeds", len(ablation["seeds"])), len(ablation["seeds"]))
    return spread or None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if Path(args.report_name).name != args.report_name or args.report_name in ("", ".", ".."):
        raise SystemExit(f"quickstart: --report_name {args.report_name!r} must be a file name without a folder "
                         "(the report goes to --results_dir).")
    resolve_device(args.device, prog="quickstart.py")  # a missing GPU fails here, before data or runs are written
    torch.set_num_threads(args.threads)  # this process evaluates; the training processes get the same count
    clock = Stopwatch()
    explicit_preset = args.preset is not None
    args.preset = args.preset or "small"
    data_root, kind, args.data_seed = clock.run("data", prepare_data, args)
    if kind == "real" and not explicit_preset and args.preset != "paper":
        print(f"{data_root} holds real data: using the published settings (--preset paper; pass --preset to "
              "choose another).", flush=True)
        args.preset = "paper"
    data_hash = data_fingerprint(data_root)
    print(f"Training runs: {run_root(args, data_hash)}", flush=True)
    seed_results = [run_seed(args, seed, data_root, kind, clock, data_hash) for seed in args.seeds]
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "data": kind, "label": "SYNTHETIC data: not the paper's benchmarks" if kind == "synthetic" else "real data",
        "data_root": str(data_root), "data_seed": args.data_seed, "data_hash": data_hash,
        "runs": str(run_root(args, data_hash)), "preset": args.preset, "device": args.device,
        "threads": args.threads, "seeds": args.seeds, "stages": args.stages, "report_name": args.report_name,
        "fewshot": fewshot_settings(args.preset),
        "stage_seconds": clock.stages, "total_seconds": clock.total(),
        "determinants": determinants(args, data_root, kind)}
    if len(args.seeds) > 1:
        report.update(metrics=aggregate(seed_results), per_seed=seed_results)
        atomic_write_text(results_dir / f"{args.report_name}.json", json.dumps(report, indent=2) + "\n")
        text = ablation_markdown(report)
        atomic_write_text(results_dir / f"{args.report_name}.md", text)
        print("\n" + text, flush=True)
        return report
    only = seed_results[0]
    report.update(metrics={k: v for k, v in metrics_of(only).items() if k != "partseg_instance_miou"},
                  pretraining=only["pretraining"], arms=only["arms"], tsne={})
    if "partseg" in only:
        report["partseg"] = only["partseg"]
    for arm, r in only["arms"].items():
        if r.get("tsne_png"):
            shutil.copyfile(r["tsne_png"], results_dir / f"quickstart_tsne_{arm}.png")
            report["tsne"][arm] = str(results_dir / f"quickstart_tsne_{arm}.png")
    report["total_seconds"] = clock.total()
    atomic_write_text(results_dir / "quickstart.json", json.dumps(report, indent=2) + "\n")
    text = quickstart_markdown(report, committed_spread(results_dir, args.preset))
    atomic_write_text(results_dir / "quickstart.md", text)
    print("\n" + text, flush=True)
    return report


if __name__ == "__main__":
    main()
