"""Few-shot (N-way K-shot) classification with a linear SVM on frozen point-encoder features (CrossPoint Tables 3, 4).

    python eval_fewshot.py --model_path checkpoints/official/dgcnn_cls_best.pth --dataset modelnet40 \
        --k_way 5 --m_shot 10
    python eval_fewshot.py --model_path ... --dataset scanobjectnn --k_way 10 --m_shot 20 --query_split test

Default protocol = the original eval_fewshot.py: per run, k_way classes are drawn from the training split, and
per class m_shot support and n_query query clouds, disjoint, also from the training split; features are
standardized (StandardScaler fit on the support set) and a linear SVC (C=1.0, scikit-learn's default) is fit.
Like the original, every stored point of each cloud is fed to the encoder (its --num_points flag was never
used); ``--num_points N`` takes the first N instead. ``--query_split test`` is the stricter protocol: support
from the training split, queries from the test split. Prints mean ± std (population std, as the original) and
the standard error of the mean over ``--n_runs`` episodes; deterministic for ``--seed``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Sequence

from datasets.classification import (CLASSIFICATION_DATASETS, SCANOBJECTNN_VARIANTS, VARIANT_HELP, ClassificationData,
                                     check_variant)
from datasets.provenance import data_kind
from evaluation.cli import add_eval_arguments, default_output, result_header, write_result
from evaluation.features import ExtractOptions, load_features
from evaluation.fewshot import few_shot
from evaluation.plots import write_tsne
from util.weights import load_point_encoder
from util.fileio import user_errors
from util.presets import FEWSHOT, add_preset_argument, parse_with_preset
from util.run import AT_LEAST_1, AT_LEAST_2, POSITIVE, check_args, check_points_for_k
from util.device import resolve_device

PROG = "eval_fewshot.py"
PROTOCOLS = {
    "train": "original CrossPoint protocol: support and query drawn (disjoint) from the training split, "
             "StandardScaler fit on the support set, SVC(kernel='linear')",
    "test": "stricter protocol: support from the training split, query from the test split, "
            "StandardScaler fit on the support set, SVC(kernel='linear')",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Few-shot classification of frozen point-encoder features")
    add_preset_argument(p, "fewshot")
    add_eval_arguments(p, CLASSIFICATION_DATASETS, SCANOBJECTNN_VARIANTS, VARIANT_HELP, FEWSHOT["num_points"],
                       "points per cloud, the first N of each (default: every stored point, as the original, which "
                       "ignored its --num_points flag; 2048 in the published files)")
    p.add_argument("--k_way", type=int, default=FEWSHOT["k_way"], help="classes per episode (paper: 5 or 10)")
    p.add_argument("--m_shot", type=int, default=FEWSHOT["m_shot"], help="support samples per class (paper: 10 or 20)")
    p.add_argument("--n_query", type=int, default=FEWSHOT["n_query"], help="query samples per class (original: 20)")
    p.add_argument("--n_runs", type=int, default=FEWSHOT["n_runs"],
                   help="episodes; mean ± std over them (paper: 10; the original fsl_script.sh used 50)")
    p.add_argument("--svm_C", type=float, default=1.0, help="SVC C (original: scikit-learn's default 1.0)")
    p.add_argument("--query_split", choices=["train", "test"], default="train",
                   help="where queries come from: train = the original protocol (default), test = stricter")
    return p


def validate(args: argparse.Namespace) -> None:
    """Every flag checked before anything is loaded (one line naming the flag); resolves ``args.variant``."""
    check_args(PROG, args, {"k_way": AT_LEAST_2, "m_shot": AT_LEAST_1, "n_query": AT_LEAST_1, "n_runs": AT_LEAST_1,
                            "svm_C": POSITIVE})
    check_points_for_k(PROG, args.num_points, args.k)
    args.variant = check_variant(PROG, args.dataset, args.variant)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_with_preset(build_parser(), "fewshot", argv)
    validate(args)
    t_start = time.perf_counter()
    device = resolve_device(args.device, prog=PROG)
    encoder = load_point_encoder(args.model_path, model=args.model, k=args.k,
                                 emb_dims=args.emb_dims, device=device, seed=args.seed)
    # k may come from the checkpoint's sidecar: checked before any feature is extracted.
    check_points_for_k(PROG, args.num_points, encoder.model_args.get("k"), encoder.sources.get("k"))
    data = ClassificationData(args.dataset, args.data_root, args.variant, args.num_points)
    kind = data_kind(args.data_root)
    splits = ("train",) if args.query_split == "train" else ("train", "test")
    # Differs from the original: features are extracted once per split (eval mode, so a cloud's feature does
    # not depend on its batch) instead of once per episode.
    feats = load_features(encoder, data, splits, ExtractOptions(
        device, args.batch_size, args.num_workers, args.cache_dir, not args.no_cache, not args.no_progress))
    query = {} if args.query_split == "train" else {"query_f": feats["test_f"], "query_y": feats["test_y"]}
    res = few_shot(feats["train_f"], feats["train_y"], k_way=args.k_way, m_shot=args.m_shot, n_query=args.n_query,
                   n_runs=args.n_runs, seed=args.seed, C=args.svm_C, class_names=feats["class_names"], **query)
    protocol = PROTOCOLS[args.query_split]
    sem = "n/a" if res["sem"] is None else f"{100 * res['sem']:.2f}"
    print(f"Protocol: {protocol}, C={args.svm_C:g}, {feats['num_points']} points per cloud", flush=True)
    print(f"{data.tag} {args.k_way}-way {args.m_shot}-shot ({args.n_query} queries/class, queries from "
          f"{args.query_split}): {100 * res['mean']:.2f} ± {100 * res['std']:.2f} % (std over {args.n_runs} runs; "
          f"standard error of the mean {sem}) (seed {args.seed}; data: {kind})", flush=True)
    stem = f"fewshot_{args.k_way}way_{args.m_shot}shot_q{args.query_split}"
    out_path = Path(args.output) if args.output else default_output(encoder.info(), data, stem)
    result = {
        **result_header("few_shot", kind, encoder, data, feats["num_points"]),
        "protocol": protocol, "query_split": args.query_split, "k_way": args.k_way, "m_shot": args.m_shot,
        "n_query": args.n_query, "n_runs": args.n_runs, "seed": args.seed, "C": args.svm_C,
        "mean": res["mean"], "std": res["std"], "sem": res["sem"],
        "spread_note": "std: population std over the runs (as the original); sem: std(ddof=1) / sqrt(n_runs)",
        "accs": res["accs"], "feature_cache": feats["cache"], "extract_seconds": feats["extract_seconds"],
        "total_seconds": time.perf_counter() - t_start, "device": str(device),
    }
    if args.plot:
        split = "train" if args.query_split == "train" else "test"
        result["tsne_png"] = write_tsne(feats[f"{split}_f"], feats[f"{split}_y"], feats["class_names"],
                                        out_path.with_name(out_path.stem + "_tsne.png"),
                                        f"t-SNE, {data.tag} {split} features ({kind} data)")
    write_result(out_path, result)
    return result


if __name__ == "__main__":
    with user_errors(PROG):  # bad checkpoint or data: the message, no traceback
        main()
