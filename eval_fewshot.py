"""Few-shot (N-way K-shot) classification with a linear SVM on frozen point-encoder features (CrossPoint Table 3/4).

    python eval_fewshot.py --model_path dgcnn_cls_best.pth --dataset modelnet40 --k_way 5 --m_shot 10
    python eval_fewshot.py --model_path ... --dataset scanobjectnn --k_way 10 --m_shot 20 --query_split test

Default protocol = the original eval_fewshot.py: per run, k_way classes are drawn from the training split, and
per class m_shot support and n_query query clouds, disjoint, also from the training split; features are
standardized (StandardScaler fit on the support set) and a linear SVC (C=1.0, scikit-learn's default) is fit.
``--query_split test`` is the stricter protocol: support from the training split, queries from the test split.
Prints mean ± std (population std, as the original) over ``--n_runs`` episodes; deterministic for ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from datasets.synthetic import data_kind
from eval_svm import (
    USER_ERRORS,
    add_model_args,
    default_output,
    load_features,
    result_header,
    setup_model,
    write_tsne,
)
from util.checkpoint import atomic_write_text
from util.evaluation import few_shot

PROTOCOLS = {
    "train": "original CrossPoint protocol: support and query drawn (disjoint) from the training split, "
             "StandardScaler fit on the support set, SVC(kernel='linear')",
    "test": "stricter protocol: support from the training split, query from the test split, "
            "StandardScaler fit on the support set, SVC(kernel='linear')",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Few-shot classification of frozen point-encoder features")
    add_model_args(p)
    p.add_argument("--k_way", type=int, default=5, help="classes per episode (paper: 5 or 10)")
    p.add_argument("--m_shot", type=int, default=10, help="support samples per class (paper: 10 or 20)")
    p.add_argument("--n_query", type=int, default=20, help="query samples per class (original: 20)")
    p.add_argument("--n_runs", type=int, default=10,
                   help="episodes; mean ± std over them (paper: 10; the original fsl_script.sh used 50)")
    p.add_argument("--svm_C", type=float, default=1.0, help="SVC C (original: scikit-learn's default 1.0)")
    p.add_argument("--query_split", choices=["train", "test"], default="train",
                   help="where queries come from: train = the original protocol (default), test = stricter")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    t_start = time.perf_counter()
    model, info, device = setup_model(args)
    variant = args.variant if args.dataset == "scanobjectnn" else None
    kind = data_kind(args.data_root)
    splits = ("train",) if args.query_split == "train" else ("train", "test")
    # Differs from the original: features are extracted once per split (eval mode, so a cloud's feature does
    # not depend on its batch) instead of once per episode.
    feats = load_features(
        model, info, args.dataset, args.data_root, splits, variant=args.variant, num_points=args.num_points,
        device=device, batch_size=args.batch_size, num_workers=args.num_workers, cache_dir=args.cache_dir,
        use_cache=not args.no_cache, progress=not args.no_progress,
    )
    query = {} if args.query_split == "train" else {"query_f": feats["test_f"], "query_y": feats["test_y"]}
    res = few_shot(
        feats["train_f"], feats["train_y"], k_way=args.k_way, m_shot=args.m_shot, n_query=args.n_query,
        n_runs=args.n_runs, seed=args.seed, C=args.svm_C, class_names=feats["class_names"], **query,
    )
    tag = args.dataset if variant is None else f"{args.dataset} ({variant})"
    protocol = PROTOCOLS[args.query_split]
    print(f"Protocol: {protocol}, C={args.svm_C:g}", flush=True)
    print(
        f"{tag} {args.k_way}-way {args.m_shot}-shot ({args.n_query} queries/class): "
        f"{100 * res['mean']:.2f} ± {100 * res['std']:.2f} % over {args.n_runs} runs "
        f"(seed {args.seed}; data: {kind})",
        flush=True,
    )
    stem = f"fewshot_{args.k_way}way_{args.m_shot}shot_q{args.query_split}"
    out_path = Path(args.output) if args.output else default_output(info, args.dataset, variant, stem)
    result = {
        **result_header("few_shot", kind, args, info, variant),
        "protocol": protocol,
        "query_split": args.query_split,
        "k_way": args.k_way,
        "m_shot": args.m_shot,
        "n_query": args.n_query,
        "n_runs": args.n_runs,
        "seed": args.seed,
        "C": args.svm_C,
        "mean": res["mean"],
        "std": res["std"],
        "accs": res["accs"],
        "feature_cache": feats["cache"],
        "extract_seconds": feats["extract_seconds"],
        "total_seconds": time.perf_counter() - t_start,
        "device": str(device),
    }
    if args.plot:
        split = "train" if args.query_split == "train" else "test"
        png = out_path.with_name(out_path.stem + "_tsne.png")
        write_tsne(feats[f"{split}_f"], feats[f"{split}_y"], feats["class_names"], png,
                   f"t-SNE, {tag} {split} features ({kind} data)")
        result["tsne_png"] = str(png)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_path, json.dumps(result, indent=2))
    print(f"Result: {out_path}", flush=True)
    return result


if __name__ == "__main__":
    try:
        main()
    except USER_ERRORS as error:  # bad checkpoint or data: the message, no traceback
        sys.exit(f"eval_fewshot.py: error: {error}")
