"""Pipeline benchmarks around the DGCNN step: pretraining data loading and the linear-SVM probe.

Usage (from the repository root):
    .venv/bin/python -m benchmarks.bench_pipeline                    # both sections
    .venv/bin/python -m benchmarks.bench_pipeline --only loader --workers 0,1,2,4
    .venv/bin/python -m benchmarks.bench_pipeline --only probe --svc_repeats 1 --no_linearsvc

Sections (``--only loader,probe``):

* ``loader``: items/s of ``datasets.shapenet_render.ShapeNetRender`` (one item = two augmented
  2048-point views + one 224 px image, PNG decode and the default CrossPoint transforms) through a
  ``torch.utils.data.DataLoader`` with the pretraining batch size (20) and the pretraining loader settings
  (``util.loaders.loader_kwargs``), for several ``num_workers``. The sampler draws shuffled epochs back to back
  (``RandomSampler(num_samples=...)``) so the timed windows never include a worker restart; the first batches
  (worker start-up and prefetch) are a warm-up. Reported: median items/s over the timed windows of N batches,
  plus a per-item cost breakdown (points read, 2 point transforms, image read, image transform).
* ``probe``: the ModelNet40-sized linear-SVM probe. (a) Feature extraction: DGCNN(k=20, emb_dims=1024)
  in eval mode, no grad, batch 32, 1024 points; a few batches are timed and the per-cloud time is
  EXTRAPOLATED to 9840 + 2468 clouds. (b) SVM fit + predict on a synthetic ModelNet40-sized feature set
  (9840 x 2048 train, 2468 x 2048 test, 40 classes; see ``probe_features``) with the paper's
  ``SVC(kernel="linear", C=0.01)`` and with ``SVC(kernel="precomputed")`` on the linear Gram matrix (the same
  libsvm problem, ``evaluation.svm.linear_svm(solver="svc_precomputed")``), and for reference
  ``LinearSVC(C=0.01)``, a DIFFERENT classifier (squared hinge, one-vs-rest, liblinear).

The data root defaults to ``data/synthetic_small`` when it holds the ``small`` synthetic preset, else the
``small`` preset is generated into ``/tmp/bench_data`` (once). Results go to
``benchmarks/results/pipeline_<device>.json``; a run with ``--only`` keeps the other section of an existing file,
and the earlier result of a re-run section moves to ``previous_runs[<section>]``.
On a shared machine, compare medians and look at the recorded load average.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from benchmarks.run import machine_info as run_machine_info

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
SECTIONS = ("loader", "probe")
MODELNET40_TRAIN, MODELNET40_TEST, MODELNET40_CLASSES, FEAT_DIM = 9840, 2468, 40, 2048
PRETRAIN_BATCH = 20  # train_crossmodal.py --batch_size default (paper)
PRETRAIN_WORKERS = 4  # train_crossmodal.py --num_workers default
# CPU pretraining-step throughput on this 2-core machine, measured by benchmarks/run.py (DGCNN + ResNet step);
# quoted here for the comparison, not measured by this script.
CPU_STEP_SAMPLES_PER_S = {"published settings": (0.5, 1.3),
                          "quickstart-like settings": (13.0, 13.0)}


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def machine_info(device: str) -> dict[str, Any]:
    """``benchmarks.run.machine_info`` plus numpy/scikit-learn versions, a timestamp and the start load."""
    import sklearn

    info = run_machine_info(device)
    info.pop("load_average")
    info.update({
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "load_average_start": list(os.getloadavg()),
    })
    return info


def print_table(title: str, columns: list[tuple[str, str]], rows: list[dict]) -> None:
    """Print rows as an aligned text table; columns are (key, format) pairs."""
    header = [key for key, _ in columns]
    cells = [[("-" if row.get(key) is None else fmt.format(row[key])) for key, fmt in columns] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths)), flush=True)


def median_seconds(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Median and all wall times of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def _span(lo: float, hi: float, fmt: str = "{:.1f}") -> str:
    """'lo-hi', or one number when both round the same."""
    a, b = fmt.format(lo), fmt.format(hi)
    return a if a == b else f"{a}-{b}"


def resolve_data_root(data_root: str | None) -> Path:
    """``--data_root``, else data/synthetic_small (if it is the small preset), else /tmp/bench_data (generated)."""
    if data_root:
        return Path(data_root)
    repo_small = REPO / "data" / "synthetic_small"
    marker = repo_small / "SYNTHETIC.json"
    if marker.is_file() and json.loads(marker.read_text()).get("preset") == "small":
        return repo_small
    from datasets.synthetic.generator import generate

    root = Path("/tmp/bench_data")
    print(f"generating the synthetic 'small' preset into {root} (once) ...", flush=True)
    generate(root, preset="small", seed=0, progress=False)
    return root


# ---------------------------------------------------------------------------------------------
# Section: ShapeNetRender loader throughput
# ---------------------------------------------------------------------------------------------


def item_breakdown(ds: Any, n_items: int, batch_size: int) -> dict[str, float]:
    """Median milliseconds per item of each stage of ShapeNetRender.__getitem__, and of collating a batch
    (``default_collate`` of ``batch_size`` items, per item), in this process with its torch threads."""
    from torch.utils.data import default_collate

    from datasets.transforms import item_rng

    stages: dict[str, list[float]] = {"points_read": [], "point_transform_x2": [], "image_read": [],
                                      "image_transform": [], "total": []}
    for i in range(n_items):
        index = i % len(ds)
        rng = item_rng()
        t0 = time.perf_counter()
        points = ds.load_points(index)
        t1 = time.perf_counter()
        ds.point_transform(points, rng)
        ds.point_transform(points, rng)
        t2 = time.perf_counter()
        img = ds.load_image(index, rng)
        t3 = time.perf_counter()
        ds.img_transform(img, rng)
        t4 = time.perf_counter()
        for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
            stages[key].append(1000.0 * dt)
    out = {f"{key}_ms": statistics.median(v) for key, v in stages.items()}
    items = [ds[i % len(ds)] for i in range(batch_size)]
    collate_s, _ = median_seconds(lambda: default_collate(items), 5)
    out["collate_per_item_ms"] = 1000.0 * collate_s / batch_size
    return out


def loader_throughput(ds: Any, num_workers: int, batch_size: int, warmup: int, windows: int,
                      window_batches: int, seed: int) -> dict[str, Any]:
    """Items/s of a DataLoader over ``ds``: warm-up batches, then ``windows`` timed windows of ``window_batches``."""
    from torch.utils.data import DataLoader, RandomSampler

    from util.loaders import loader_kwargs

    n_batches = warmup + windows * window_batches
    gen = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(ds, replacement=False, num_samples=n_batches * batch_size, generator=gen)
    kwargs = loader_kwargs(torch.device("cpu"), num_workers, torch.Generator().manual_seed(seed), False)
    loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, drop_last=True, **kwargs)
    it = iter(loader)
    t_start = time.perf_counter()
    for _ in range(warmup):
        next(it)
    t_warm = time.perf_counter() - t_start
    rates = []
    for _ in range(windows):
        t0 = time.perf_counter()
        for _ in range(window_batches):
            pc1, pc2, img = next(it)
        rates.append(window_batches * batch_size / (time.perf_counter() - t0))
    if tuple(pc1.shape[1:]) != (ds.num_points, 3) or img.dim() != 4:
        raise RuntimeError(f"unexpected batch shapes {tuple(pc1.shape)}, {tuple(pc2.shape)}, {tuple(img.shape)}")
    del it
    return {
        "num_workers": num_workers,
        "batch_size": batch_size,
        "items_per_s_median": statistics.median(rates),
        "items_per_s_min": min(rates),
        "items_per_s_max": max(rates),
        "items_per_s_windows": rates,
        "warmup_batches": warmup,
        "warmup_s": t_warm,
    }


def bench_loader(args: argparse.Namespace) -> dict[str, Any]:
    from datasets.shapenet_render import ShapeNetRender

    root = resolve_data_root(args.data_root)
    ds = ShapeNetRender(root)  # default CrossPoint point and image transforms, 2048 points, 224 px
    torch.manual_seed(args.seed)
    main_threads = torch.get_num_threads()
    breakdown = {f"torch_threads_{main_threads}": item_breakdown(ds, args.breakdown_items, args.loader_batch)}
    # (num_workers, torch threads of the main process): workers always run 1 thread each (PyTorch sets it).
    configs = [(w, main_threads) for w in args.workers]
    if args.single_thread_row and 0 in args.workers and main_threads != 1:
        configs.insert(args.workers.index(0) + 1, (0, 1))
    # Rounds interleave the configurations, so a change of the machine's load hits all of them alike.
    runs: dict[tuple[int, int], list[dict[str, Any]]] = {c: [] for c in configs}
    for _ in range(args.rounds):
        for w, threads in configs:
            torch.set_num_threads(threads)
            if threads != main_threads and f"torch_threads_{threads}" not in breakdown:
                breakdown[f"torch_threads_{threads}"] = item_breakdown(ds, args.breakdown_items, args.loader_batch)
            warmup = max(args.warmup_batches, 2 * w + 2)  # worker start-up + prefetched batches (prefetch_factor 2)
            runs[(w, threads)].append(
                loader_throughput(ds, w, args.loader_batch, warmup, args.windows, args.window_batches, args.seed))
            torch.set_num_threads(main_threads)
    rows = []
    for (w, threads), rs in runs.items():
        rates = [v for r in rs for v in r["items_per_s_windows"]]
        rows.append({
            "num_workers": w,
            "main_torch_threads": threads,
            "batch_size": args.loader_batch,
            "items_per_s_median": statistics.median(rates),
            "items_per_s_min": min(rates),
            "items_per_s_max": max(rates),
            "items_per_s_windows": rates,
            "ms_per_item": 1000.0 / statistics.median(rates),
            "warmup_s_median": statistics.median(r["warmup_s"] for r in rs),
            "warmup_batches": rs[0]["warmup_batches"],
            "pretrain_default": "yes" if w == PRETRAIN_WORKERS else "",
        })
    print_table(
        f"ShapeNetRender loader ({len(ds)} synthetic objects under {root}, batch {args.loader_batch}, "
        f"2 x 2048 points + 224 px image per item; median over {args.rounds} rounds x {args.windows} windows x "
        f"{args.window_batches} batches)",
        [("num_workers", "{}"), ("main_torch_threads", "{}"), ("items_per_s_median", "{:.1f}"),
         ("items_per_s_min", "{:.1f}"), ("items_per_s_max", "{:.1f}"), ("ms_per_item", "{:.1f}"),
         ("warmup_s_median", "{:.1f}"), ("pretrain_default", "{}")],
        rows,
    )
    for key, stages in breakdown.items():
        print(f"\nPer-item cost in the main process, {key.replace('_', ' ')} (median ms over "
              f"{args.breakdown_items} items): " + ", ".join(f"{k[:-3]} {v:.2f}" for k, v in stages.items()))
    best = max(r["items_per_s_median"] for r in rows)
    w0 = next((r["items_per_s_median"] for r in rows if r["num_workers"] == 0
               and r["main_torch_threads"] == main_threads), None)
    comparison = {}
    for name, (lo, hi) in CPU_STEP_SAMPLES_PER_S.items():
        comparison[name] = {"cpu_step_samples_per_s": [lo, hi],
                            "loader_to_step_ratio_num_workers_0": None if w0 is None else [w0 / hi, w0 / lo],
                            "loader_to_step_ratio_best": [best / hi, best / lo]}
        print(f"CPU pretraining step, {name}: ~{_span(lo, hi, '{:g}')} samples/s (benchmarks/run.py) -> the loader "
              + (f"at num_workers 0 ({w0:.1f} items/s) is {_span(w0 / hi, w0 / lo)}x faster" if w0 else "")
              + f"; best {best:.1f} items/s")
    print("GPU pretraining step samples/s: not measured (no GPU in this run); the loader must deliver at least "
          "the GPU step's samples/s, compare with this table when it is measured.")
    return {
        "data_root": str(root),
        "data": "synthetic small preset",
        "objects": len(ds),
        "item": "(pc1 (2048,3), pc2 (2048,3), img (3,224,224)); default crosspoint_point_transform / "
                "crosspoint_image_transform; PNG 137x137 RGBA decode",
        "loader_settings": "util.loaders.loader_kwargs(cpu): pin_memory False, prefetch_factor 2, seeded workers; "
                           "RandomSampler over back-to-back shuffled epochs, drop_last",
        "timing": f"{args.rounds} interleaved rounds x {args.windows} windows x {args.window_batches} batches after "
                  "max(warmup_batches, 2 * num_workers + 2) warm-up batches per configuration",
        "note": "files are in the page cache (small synthetic set); the published ShapeNetRender (13 classes, tens "
                "of thousands of objects, the same 137x137 RGBA PNGs and 2048-point PLYs) may add disk I/O on a "
                "cold cache",
        "rows": rows,
        "per_item_breakdown_single_process": breakdown,
        "cpu_step_comparison": comparison,
        "cpu_step_source": "quoted from the benchmarks/run.py CPU measurements on this machine, not measured here",
        "gpu_step_samples_per_s": None,
        "gpu_note": "GPU pretraining step not measured (no GPU in this task)",
    }


# ---------------------------------------------------------------------------------------------
# Section: ModelNet40-sized linear-SVM probe
# ---------------------------------------------------------------------------------------------


def probe_features(n_train: int, n_test: int, n_classes: int, dim: int, separation: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic ModelNet40-like features with class structure.

    Each class has a mean ``m_c ~ N(0, separation^2 I_64)`` in a 64-d latent space; a sample is
    ``z = m_c + N(0, I_64)``, mapped to ``dim`` features by ``relu(z W) + 0.1 * N(0, I_dim)`` with a fixed random
    ``W ~ N(0, 1/64)`` of shape (64, dim): non-negative, correlated, O(1) per dimension like BN-normalized pooled
    DGCNN features. ``separation=0.52`` gives ~91 % linear-SVM accuracy at ModelNet40 size (the paper's
    DGCNN: 91.2 %). Classes are balanced (the real ModelNet40 is not: its largest class has several times
    the mean size, which makes the largest one-vs-one subproblems of SVC larger).

    Returns train_f (n_train, dim) float32, train_y (n_train,) int64, test_f (n_test, dim), test_y (n_test,).
    """
    rng = np.random.default_rng(seed)
    latent = 64
    means = rng.normal(0.0, separation, size=(n_classes, latent))  # (C, 64)
    proj = rng.normal(0.0, 1.0 / np.sqrt(latent), size=(latent, dim))  # (64, D)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % n_classes  # (n,) balanced up to one sample
        y = y[rng.permutation(n)]
        z = means[y] + rng.normal(0.0, 1.0, size=(n, latent))  # (n, 64)
        x = np.maximum(z @ proj, 0.0) + 0.1 * rng.normal(0.0, 1.0, size=(n, dim))  # (n, D)
        return x.astype(np.float32), y.astype(np.int64)

    train_f, train_y = draw(n_train)
    test_f, test_y = draw(n_test)
    return train_f, train_y, test_f, test_y


def bench_extraction(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Per-cloud DGCNN feature-extraction time (eval, no grad), extrapolated to ModelNet40."""
    from datasets.modelnet40 import ModelNet40
    from models import build_point_encoder

    root = resolve_data_root(args.data_root)
    data = ModelNet40(root, "train", num_points=args.probe_points).data  # (M, P, 3)
    n_need = args.extract_batch * (args.extract_batches + 1)
    idx = np.arange(n_need) % len(data)
    clouds = torch.as_tensor(data[idx, : args.probe_points]).to(device)  # (n_need, P, 3)
    torch.manual_seed(args.seed)
    model = build_point_encoder("dgcnn", k=20, emb_dims=1024).to(device).eval()
    times = []
    with torch.no_grad():
        for b in range(args.extract_batches + 1):
            x = clouds[b * args.extract_batch:(b + 1) * args.extract_batch].transpose(1, 2).contiguous()  # (B, 3, P)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            out = model(x)  # (B, 2048)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if b > 0:  # batch 0 is the warm-up
                times.append(time.perf_counter() - t0)
    per_batch = statistics.median(times)
    per_cloud = per_batch / args.extract_batch
    total = MODELNET40_TRAIN + MODELNET40_TEST
    return {
        "model": "DGCNN(k=20, emb_dims=1024), default EdgeConv implementation, eval mode, no grad",
        "feat_dim": int(out.shape[1]),
        "points": args.probe_points,
        "batch": args.extract_batch,
        "timed_batches": args.extract_batches,
        "batch_s_all": times,
        "batch_s_median": per_batch,
        "batch_s_min": min(times),
        "ms_per_cloud": 1000.0 * per_cloud,
        "ms_per_cloud_best": 1000.0 * min(times) / args.extract_batch,
        "clouds_per_s": 1.0 / per_cloud,
        "extrapolated_modelnet40_s": per_cloud * total,
        "extrapolated_modelnet40_s_best": min(times) / args.extract_batch * total,
        "extrapolated_clouds": total,
        "input": f"synthetic ModelNet40 clouds from {root} (first {args.probe_points} points), repeated",
    }


def bench_svm(args: argparse.Namespace) -> dict[str, Any]:
    """Fit + predict time and accuracy of the SVM solvers on ModelNet40-sized synthetic features."""
    from sklearn.svm import LinearSVC

    from evaluation.svm import linear_svm

    t0 = time.perf_counter()
    train_f, train_y, test_f, test_y = probe_features(MODELNET40_TRAIN, MODELNET40_TEST, MODELNET40_CLASSES,
                                                      FEAT_DIM, args.separation, args.seed)
    print(f"\nsynthetic features: train {train_f.shape}, test {test_f.shape}, {MODELNET40_CLASSES} classes "
          f"(made in {time.perf_counter() - t0:.1f} s); mean feature norm "
          f"{float(np.linalg.norm(train_f, axis=1).mean()):.1f}", flush=True)
    x64 = np.ascontiguousarray(train_f, dtype=np.float64)  # (N_train, D)
    gram_s, _ = median_seconds(lambda: x64 @ x64.T, args.repeats)  # (N_train, N_train)
    rows: list[dict[str, Any]] = []
    preds: dict[str, np.ndarray] = {}
    plan = [("svc", args.svc_repeats), ("svc_precomputed", args.repeats)]
    for solver, repeats in plan:
        runs = []
        for _ in range(repeats):
            r = linear_svm(train_f, train_y, test_f, test_y, C=args.C, solver=solver)
            runs.append(r)
            print(f"  {solver}: fit {r['fit_seconds']:.1f} s, predict {r['predict_seconds']:.1f} s, "
                  f"accuracy {100 * r['accuracy']:.2f} %", flush=True)
        preds[solver] = runs[0]["predictions"]
        rows.append({
            "classifier": solver,
            "model": ("SVC(kernel='linear') (paper)" if solver == "svc"
                      else "SVC(kernel='precomputed'), K = X X^T float64 (same problem)"),
            "fit_s": statistics.median(r["fit_seconds"] for r in runs),
            "predict_s": statistics.median(r["predict_seconds"] for r in runs),
            "fit_s_all": [r["fit_seconds"] for r in runs],
            "predict_s_all": [r["predict_seconds"] for r in runs],
            "accuracy_pct": 100 * runs[0]["accuracy"],
            "mean_class_accuracy_pct": 100 * runs[0]["mean_class_accuracy"],
            "repeats": repeats,
        })
    if args.linearsvc:
        fits, predicts = [], []
        for _ in range(args.linearsvc_repeats):
            clf = LinearSVC(C=args.C, max_iter=args.linearsvc_max_iter)
            t0 = time.perf_counter()
            clf.fit(train_f, train_y)
            t1 = time.perf_counter()
            pred = clf.predict(test_f).astype(np.int64)
            fits.append(t1 - t0)
            predicts.append(time.perf_counter() - t1)
        preds["linearsvc"] = pred
        rows.append({
            "classifier": "linearsvc",
            "model": "LinearSVC (DIFFERENT classifier: squared hinge, one-vs-rest, liblinear)",
            "fit_s": statistics.median(fits), "predict_s": statistics.median(predicts),
            "fit_s_all": fits, "predict_s_all": predicts,
            "accuracy_pct": 100 * float(np.mean(pred == test_y)),
            "mean_class_accuracy_pct": 100 * float(np.mean([np.mean(pred[test_y == c] == c)
                                                            for c in np.unique(test_y)])),
            "repeats": args.linearsvc_repeats,
            "n_iter": int(np.max(clf.n_iter_)),
            "max_iter": args.linearsvc_max_iter,
        })
    ref = preds["svc"]
    for row in rows:
        row["total_s"] = row["fit_s"] + row["predict_s"]
        row["agreement_with_svc_pct"] = 100 * float(np.mean(preds[row["classifier"]] == ref))
    svc_total = rows[0]["total_s"]
    for row in rows:
        row["speedup_vs_svc"] = svc_total / row["total_s"]
    return {
        "C": args.C,
        "features": (f"synthetic: 40 balanced classes, 64-d latent Gaussian class means (separation "
                     f"{args.separation}) + unit within-class noise -> relu(z W) + 0.1 noise, 2048-d "
                     "(benchmarks/bench_pipeline.py probe_features)"),
        "n_train": MODELNET40_TRAIN, "n_test": MODELNET40_TEST, "feat_dim": FEAT_DIM,
        "gram_matmul_s_median": gram_s,
        "rows": rows,
    }


def bench_probe(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    ext = bench_extraction(args, device)
    print_table(
        f"DGCNN feature extraction on {device} (k=20, emb_dims=1024, {args.probe_points} points, batch "
        f"{args.extract_batch}, eval, no grad; median of {args.extract_batches} batches after 1 warm-up)",
        [("batch_s_median", "{:.2f}"), ("batch_s_min", "{:.2f}"), ("ms_per_cloud", "{:.1f}"),
         ("ms_per_cloud_best", "{:.1f}"), ("clouds_per_s", "{:.1f}"), ("extrapolated_modelnet40_s", "{:.0f}"),
         ("extrapolated_modelnet40_s_best", "{:.0f}")],
        [ext],
    )
    print(f"  extrapolated_modelnet40_s = ms_per_cloud x {ext['extrapolated_clouds']} clouds (9840 train + 2468 "
          "test); EXTRAPOLATED, not a full run. *_best uses the fastest batch (least disturbed by other processes)")
    svm = bench_svm(args)
    print_table(
        f"Linear SVM on ModelNet40-sized synthetic features (9840 x 2048 train, 2468 x 2048 test, 40 classes, "
        f"C={args.C:g}; median over repeats; Gram matmul alone {svm['gram_matmul_s_median']:.1f} s)",
        [("classifier", "{}"), ("fit_s", "{:.1f}"), ("predict_s", "{:.1f}"), ("total_s", "{:.1f}"),
         ("speedup_vs_svc", "{:.1f}x"), ("accuracy_pct", "{:.2f}"), ("agreement_with_svc_pct", "{:.2f}"),
         ("repeats", "{}")],
        svm["rows"],
    )
    print("  svc = the paper's SVC(kernel='linear'); svc_precomputed solves the same libsvm problem from K = X X^T "
          "(fit includes K, predict includes K_test); linearsvc is a DIFFERENT classifier (reference only).")
    return {"extraction": ext, "svm": svm}


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _sections(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [n for n in names if n not in SECTIONS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown section(s) {bad}; choose from {','.join(SECTIONS)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Loader and linear-SVM probe benchmarks (see the module docstring)")
    p.add_argument("--only", type=_sections, default=list(SECTIONS), help="comma list of sections: loader,probe")
    p.add_argument("--device", default="cpu", help="device of the feature extraction (cpu | cuda)")
    p.add_argument("--data_root", default=None,
                   help="synthetic or real data root (default: data/synthetic_small, else /tmp/bench_data)")
    p.add_argument("--seed", type=int, default=0, help="seed (sampler, augmentations, features)")
    p.add_argument("--output", default=None, help="JSON path (default: benchmarks/results/pipeline_<device>.json)")
    g = p.add_argument_group("loader")
    g.add_argument("--workers", type=_int_list, default=[0, 1, 2, PRETRAIN_WORKERS],
                   help=f"comma list of num_workers (pretraining default: {PRETRAIN_WORKERS})")
    g.add_argument("--loader_batch", type=int, default=PRETRAIN_BATCH, help="batch size (paper: 20)")
    g.add_argument("--warmup_batches", type=int, default=3, help="warm-up batches (at least 2 * num_workers + 2)")
    g.add_argument("--rounds", type=int, default=2, help="rounds over all num_workers settings (interleaved)")
    g.add_argument("--windows", type=int, default=6, help="timed windows per round")
    g.add_argument("--window_batches", type=int, default=10, help="batches per timed window")
    g.add_argument("--no_single_thread_row", dest="single_thread_row", action="store_false",
                   help="skip the extra num_workers=0 row with 1 torch thread in the main process")
    g.add_argument("--breakdown_items", type=int, default=40, help="items for the per-stage cost breakdown")
    g = p.add_argument_group("probe")
    g.add_argument("--probe_points", type=int, default=1024, help="points per cloud (paper: 1024)")
    g.add_argument("--extract_batch", type=int, default=32, help="feature-extraction batch")
    g.add_argument("--extract_batches", type=int, default=6, help="timed extraction batches (after 1 warm-up)")
    g.add_argument("--C", type=float, default=0.01, help="SVM C (paper's eval_ssl.ipynb: 0.01)")
    g.add_argument("--separation", type=float, default=0.52, help="class-mean scale of the synthetic features")
    g.add_argument("--repeats", type=int, default=3, help="repeats of the fast solvers and of the Gram matmul")
    g.add_argument("--svc_repeats", type=int, default=3, help="repeats of the paper SVC (about a minute each)")
    g.add_argument("--linearsvc_repeats", type=int, default=1, help="repeats of the LinearSVC reference")
    g.add_argument("--no_linearsvc", dest="linearsvc", action="store_false", help="skip the LinearSVC reference")
    g.add_argument("--linearsvc_max_iter", type=int, default=1000, help="LinearSVC max_iter (sklearn default 1000)")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    device_tag = torch.device(args.device).type
    out_path = Path(args.output) if args.output else RESULTS_DIR / f"pipeline_{device_tag}.json"
    record: dict[str, Any] = {}
    if out_path.is_file():
        record = json.loads(out_path.read_text())
    machine = machine_info(args.device)
    print(f"machine: {machine['cpu']}, {machine['cpu_count']} cores, torch {machine['torch']} "
          f"({machine['torch_threads']} threads), load average {machine['load_average_start']}", flush=True)
    runners = {"loader": bench_loader, "probe": bench_probe}
    for name in args.only:
        t0 = time.perf_counter()
        result = runners[name](args)
        result["machine"] = dict(machine, load_average_end=list(os.getloadavg()))
        result["section_seconds"] = time.perf_counter() - t0
        if name in record:  # keep earlier runs: on a shared machine their spread is part of the result
            record.setdefault("previous_runs", {}).setdefault(name, []).append(record[name])
        record[name] = result
    from util.checkpoint import atomic_write_text

    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_path, json.dumps(record, indent=2))
    print(f"\nwrote {out_path}")
    return record


if __name__ == "__main__":
    main()
