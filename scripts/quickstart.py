"""The main job, end to end: data -> CrossPoint pretraining -> linear SVM, few-shot, part segmentation.

    python scripts/quickstart.py --preset small            # synthetic data, CPU, about 10 minutes
    python scripts/quickstart.py --preset full --device cuda   # GPU-scale synthetic run
    python scripts/quickstart.py --data_root data --device cuda  # the real archives, published settings

It compares three point encoders of the same architecture on the same data and settings:
CrossPoint (IMID + CMID), IMID only (no image branch in the loss), and a randomly initialized
encoder (no training). Results go to ``<results_dir>/quickstart.json`` and ``quickstart.md`` with
t-SNE pictures of the test features. Numbers on synthetic data are labelled as such: they are not
the paper's tables.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import eval_fewshot  # noqa: E402
import eval_svm  # noqa: E402
import train_crossmodal  # noqa: E402
import train_partseg  # noqa: E402
from datasets.synthetic import data_kind, generate  # noqa: E402
from util.checkpoint import atomic_write_text  # noqa: E402

# Settings per scale. "paper" is what the published runs used (and what --data_root with the
# real archives runs); the others are cut down so a CPU finishes in minutes.
SETTINGS: dict[str, dict[str, Any]] = {
    "tiny": {
        "pretrain": {"num_points": 256, "k": 8, "emb_dims": 64, "img_model": "resnet18", "image_size": 32,
                     "batch_size": 8, "epochs": 2, "lr": 1e-3, "probe_every": 2, "probe_points": 256},
        "eval_points": 256,
        "fewshot": {"k_way": 5, "m_shot": 2, "n_query": 2, "n_runs": 5},
        "partseg": {"num_points": 256, "k": 8, "emb_dims": 64, "batch_size": 8, "epochs": 2, "lr": 0.1},
    },
    "small": {
        "pretrain": {"num_points": 512, "k": 15, "emb_dims": 256, "img_model": "resnet18", "image_size": 64,
                     "batch_size": 20, "epochs": 15, "lr": 1e-3, "probe_every": 5, "probe_points": 512},
        "eval_points": 512,
        "fewshot": {"k_way": 5, "m_shot": 10, "n_query": 15, "n_runs": 10},
        "partseg": {"num_points": 512, "k": 10, "emb_dims": 256, "batch_size": 16, "epochs": 3, "lr": 0.1},
    },
    "paper": {
        "pretrain": {"num_points": 2048, "k": 15, "emb_dims": 1024, "img_model": "resnet50", "image_size": 224,
                     "batch_size": 20, "epochs": 100, "lr": 1e-3, "probe_every": 1, "probe_points": 1024},
        "eval_points": 1024,
        "fewshot": {"k_way": 5, "m_shot": 10, "n_query": 20, "n_runs": 10},
        "partseg": {"num_points": 2048, "k": 40, "emb_dims": 1024, "batch_size": 8, "epochs": 300, "lr": 0.1},
    },
}
SETTINGS["full"] = SETTINGS["paper"]

ARMS = {
    "crosspoint": "CrossPoint (IMID + CMID)",
    "imid_only": "IMID only",
    "random": "Random init (no training)",
}
SVM_DATASETS = ("modelnet40", "scanobjectnn")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=["tiny", "small", "full"], default="small",
                   help="synthetic data preset and matching settings (default: small, CPU-sized)")
    p.add_argument("--data_root", default=None,
                   help="existing data root (real archives or synthetic); default: generate data/synthetic_<preset>")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--seed", type=int, default=1, help="seed for data generation, training and evaluation")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's pretraining epochs")
    p.add_argument("--partseg_epochs", type=int, default=None, help="override the preset's part-seg epochs")
    p.add_argument("--num_workers", type=int, default=1, help="DataLoader workers for pretraining")
    p.add_argument("--runs_dir", default="runs/quickstart", help="where training runs and checkpoints go")
    p.add_argument("--results_dir", default="results", help="where quickstart.json/.md and the pictures go")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none", help="autocast on GPU")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    return p


def _flags(options: dict[str, Any]) -> list[str]:
    """{"num_points": 512} -> ["--num_points", "512"]; True -> bare flag, None/False -> omitted."""
    argv: list[str] = []
    for key, value in options.items():
        if value is None or value is False:
            continue
        argv += [f"--{key}"] if value is True else [f"--{key}", str(value)]
    return argv


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


def prepare_data(args: argparse.Namespace) -> tuple[Path, str]:
    """Returns (data root, "synthetic" | "real")."""
    if args.data_root is not None:
        root = Path(args.data_root)
        return root, data_kind(root)
    root = REPO_ROOT / "data" / f"synthetic_{args.preset}"
    generate(root, preset=args.preset, seed=args.seed, progress=not args.no_progress)
    return root, "synthetic"


def pretrain(arm: str, args: argparse.Namespace, settings: dict[str, Any], data_root: Path) -> dict[str, Any]:
    """Pretrain one arm; returns train_crossmodal's summary plus the weights path."""
    options = dict(settings["pretrain"])
    if args.epochs is not None:
        options["epochs"] = args.epochs
    options.update({
        "data_root": data_root, "device": args.device, "seed": args.seed, "num_workers": args.num_workers,
        "output_dir": Path(args.runs_dir), "exp_name": arm, "model": "dgcnn", "amp": args.amp,
        "probe_dataset": "modelnet40", "imid_only": arm == "imid_only", "no_progress": args.no_progress,
        "print_freq": 10_000,
    })
    run_dir = Path(args.runs_dir) / arm
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a fresh run each time: the comparison must not mix settings
    summary = train_crossmodal.main(_flags(options))
    summary["weights"] = str(run_dir / "checkpoints" / "point_encoder_best.pth")
    return summary


def evaluate_arm(weights: str, args: argparse.Namespace, settings: dict[str, Any], data_root: Path,
                 plot_dir: Path, arm: str) -> dict[str, Any]:
    """Linear SVM on both datasets and few-shot on both datasets for one encoder."""
    common = {"model_path": weights, "data_root": data_root, "num_points": settings["eval_points"],
              "device": args.device, "seed": args.seed, "no_progress": args.no_progress,
              "cache_dir": Path(args.runs_dir) / "feature_cache"}
    if weights == "random":
        pre = settings["pretrain"]
        common.update({"model": "dgcnn", "k": pre["k"], "emb_dims": pre["emb_dims"]})
    out: dict[str, Any] = {}
    for dataset in SVM_DATASETS:
        svm_json = plot_dir / f"{arm}_svm_{dataset}.json"
        svm = eval_svm.main(_flags({**common, "dataset": dataset, "output": svm_json, "plot": dataset == "modelnet40"}))
        out[f"svm_{dataset}"] = svm["accuracy"]
        if "tsne_png" in svm:
            out["tsne_png"] = svm["tsne_png"]
        fs = eval_fewshot.main(_flags({**common, **settings["fewshot"], "dataset": dataset,
                                       "output": plot_dir / f"{arm}_fewshot_{dataset}.json"}))
        out[f"fewshot_{dataset}"] = {"mean": fs["mean"], "std": fs["std"]}
    return out


def finetune_partseg(args: argparse.Namespace, settings: dict[str, Any], data_root: Path) -> dict[str, Any]:
    """A short part-segmentation fine-tune from random init (the DGCNN part-seg network)."""
    options = dict(settings["partseg"])
    if args.partseg_epochs is not None:
        options["epochs"] = args.partseg_epochs
    options.update({"data_root": data_root, "device": args.device, "seed": args.seed, "output_dir": Path(args.runs_dir),
                    "exp_name": "partseg_scratch", "num_workers": 0, "amp": args.amp, "eval_at_init": True,
                    "no_progress": args.no_progress, "print_freq": 10_000})
    return train_partseg.main(_flags(options))


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def write_report(results: dict[str, Any], results_dir: Path) -> None:
    """quickstart.json and a Markdown table."""
    results_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(results_dir / "quickstart.json", json.dumps(results, indent=2))
    label = "SYNTHETIC data (not the paper's benchmarks)" if results["data"] == "synthetic" else "real data"
    fs = results["settings"]["fewshot"]
    lines = [
        f"# Quickstart results ({label})",
        "",
        f"Preset `{results['preset']}`, device `{results['device']}`, seed {results['seed']}, "
        f"total {results['total_seconds'] / 60:.1f} min. Linear SVM: `SVC(kernel='linear', C=0.01)` on frozen "
        f"{results['feat_dim']}-d features; few-shot: {fs['k_way']}-way {fs['m_shot']}-shot, "
        f"{fs['n_query']} queries/class, mean ± std over {fs['n_runs']} runs (original protocol).",
        "",
        "| encoder | SVM ModelNet40-style | SVM ScanObjectNN-style | few-shot ModelNet40-style | few-shot ScanObjectNN-style |",
        "|---|---|---|---|---|",
    ]
    for arm, name in ARMS.items():
        r = results["arms"][arm]
        few = [f"{100 * r[f'fewshot_{d}']['mean']:.1f} ± {100 * r[f'fewshot_{d}']['std']:.1f}" for d in SVM_DATASETS]
        lines.append(f"| {name} | {_pct(r['svm_modelnet40'])} | {_pct(r['svm_scanobjectnn'])} | {few[0]} | {few[1]} |")
    ps = results["partseg"]
    lines += [
        "",
        "Part segmentation (DGCNN part-seg network from random init, short fine-tune, test split, "
        "argmax restricted to each shape's category): "
        f"instance mIoU {_pct(ps['init_instance_miou'])} at initialization -> {_pct(ps['instance_miou'])} "
        f"after {ps['epochs']} epochs; class mIoU {_pct(ps['class_miou'])}.",
        "",
        "Stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in results["stage_seconds"].items()),
        "",
    ]
    for arm in ("crosspoint", "random"):
        if results["arms"][arm].get("tsne_png"):
            lines.append(f"![t-SNE {ARMS[arm]}](quickstart_tsne_{arm}.png)")
    atomic_write_text(results_dir / "quickstart.md", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    clock = Stopwatch()
    data_root, kind = clock.run("data", prepare_data, args)
    settings = SETTINGS["paper" if kind == "real" else args.preset]
    results_dir = Path(args.results_dir)
    plot_dir = Path(args.runs_dir) / "eval"
    plot_dir.mkdir(parents=True, exist_ok=True)

    weights = {"random": "random"}
    pretraining = {}
    for arm in ("crosspoint", "imid_only"):
        summary = clock.run(f"pretrain {arm}", pretrain, arm, args, settings, data_root)
        weights[arm] = summary["weights"]
        pretraining[arm] = {"best_epoch": summary["best_epoch"], "best_probe_val_accuracy": summary["best_metric"],
                            "final_loss": summary["history"][-1].get("loss") if summary["history"] else None}
    arms = {arm: clock.run(f"evaluate {arm}", evaluate_arm, weights[arm], args, settings, data_root, plot_dir, arm)
            for arm in ARMS}
    partseg = clock.run("part segmentation", finetune_partseg, args, settings, data_root)

    results_dir.mkdir(parents=True, exist_ok=True)
    for arm, r in arms.items():
        if r.get("tsne_png"):
            target = results_dir / f"quickstart_tsne_{arm}.png"
            shutil.copyfile(r["tsne_png"], target)
            r["tsne_png"] = str(target)
    results = {
        "data": kind,
        "data_root": str(data_root),
        "preset": args.preset if kind == "synthetic" else "paper",
        "device": args.device,
        "seed": args.seed,
        "settings": settings,
        "feat_dim": 2 * settings["pretrain"]["emb_dims"],
        "pretraining": pretraining,
        "arms": arms,
        "partseg": _partseg_summary(partseg, settings, args),
        "stage_seconds": clock.stages,
        "total_seconds": clock.total(),
    }
    write_report(results, results_dir)
    print("\n" + (results_dir / "quickstart.md").read_text(), flush=True)
    return results


def _partseg_summary(out: dict[str, Any], settings: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    test = out["test"]["restricted"]
    init = out.get("test_at_init", {}).get("restricted", {})
    return {
        "epochs": args.partseg_epochs or settings["partseg"]["epochs"],
        "instance_miou": test["instance_miou"],
        "class_miou": test["class_miou"],
        "init_instance_miou": init.get("instance_miou"),
        "checkpoint": out["checkpoint"],
    }

if __name__ == "__main__":
    main()
