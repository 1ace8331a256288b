"""Speed and memory benchmarks: prints a table per section and writes JSON to benchmarks/results/.

Usage (from the repository root):
    .venv/bin/python -m benchmarks.run                       # every section (GPU ones skip without CUDA)
    .venv/bin/python -m benchmarks.run --only dgcnn --points 1024 --repeats 5
    .venv/bin/python -m benchmarks.run --only dgcnn --malloc system,jemalloc,mmap
    .venv/bin/python -m benchmarks.run --only crosspoint --device cuda --amp --channels-last

Sections are functions ``section(args) -> dict | None`` registered in ``SECTIONS``; add one by
writing the function, registering it, and (if it needs options) adding them in ``build_parser``.
A section returns its JSON record (or None when skipped); ``main`` writes it to
``benchmarks/results/<section>_<device>.json``.

Every measured configuration of the ``dgcnn`` section runs in a fresh subprocess, because the
peak resident set size (``ru_maxrss``) is process-wide and never decreases: the reported memory is
that process's peak RSS minus its RSS after model, optimizer and input creation. On CUDA the
memory is ``torch.cuda.max_memory_allocated`` over the timed steps.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from util.fileio import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
JEMALLOC_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
)
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def machine_info(device: str) -> dict:
    """Where the numbers come from: CPU model, cores, torch version and threads, GPU name."""
    cpu = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "device": device,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def run_and_save(bench: Callable[[], dict], out: Path | None) -> dict:
    """Runs ``bench()`` (a CPU benchmark returning its JSON record) and returns the record with
    ``machine`` (:func:`machine_info`, printed first, plus ``load_average_end``) and ``seconds``
    (wall time) added; writes it as JSON to ``out`` unless None."""
    machine = machine_info("cpu")
    print(f"machine: {machine['cpu']}, {machine['cpu_count']} cores, load average {machine['load_average']}",
          flush=True)
    t0 = time.perf_counter()
    record = bench()
    record["machine"] = dict(machine, load_average_end=list(os.getloadavg()))
    record["seconds"] = time.perf_counter() - t0
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(record, indent=2) + "\n")
        print(f"\nwrote {out}")
    return record


def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def find_jemalloc() -> str | None:
    for path in JEMALLOC_CANDIDATES:
        if Path(path).is_file():
            return path
    return None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], None], device: torch.device, warmup: int, repeats: int) -> dict:
    """Run ``step`` warmup + repeats times; wall and process CPU seconds of the timed runs."""
    for _ in range(warmup):
        step()
    synchronize(device)
    wall, cpu, sys_cpu = [], [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        step()
        synchronize(device)
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
        sys_cpu.append(after.ru_stime - before.ru_stime)
    return {
        "step_s_median": statistics.median(wall),
        "step_s_min": min(wall),
        "step_s_all": wall,
        "cpu_s_median": statistics.median(cpu),
        "sys_s_median": statistics.median(sys_cpu),
    }


def run_worker(task: dict, env_extra: dict | None = None) -> dict:
    """Run one configuration in a fresh Python process; returns the JSON it prints last."""
    env = dict(os.environ)
    env.update(env_extra or {})
    cmd = [sys.executable, "-m", "benchmarks.run", "--worker", json.dumps(task)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"benchmarks/run.py: worker {task} failed with exit code {proc.returncode}:\n{proc.stderr[-4000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_table(title: str, columns: list[tuple[str, str]], rows: list[dict]) -> None:
    """Print rows as an aligned text table; columns are (key, format) pairs."""
    header = [key for key, _ in columns]
    cells = [[("-" if row.get(key) is None else fmt.format(row[key])) for key, fmt in columns] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths)))


# ---------------------------------------------------------------------------------------------
# Section: DGCNN pretraining step (forward + backward + Adam), plain vs fast EdgeConv
# ---------------------------------------------------------------------------------------------


def dgcnn_worker(task: dict) -> dict:
    """One DGCNN configuration: build, measure baseline RSS, time training steps, report peak memory.

    The step is the point branch of CrossPoint pretraining: ``batch`` clouds (two augmented views
    of batch/2 shapes) -> DGCNN -> ``inv_head`` -> NT-Xent between the two views -> Adam step.
    ``impl="plain"`` is the original formulation: plain EdgeConv and the original kNN expression.
    """
    import models.dgcnn as dgcnn_module
    from models.edgeconv import knn_plain
    from models.losses import nt_xent

    device = torch.device(task["device"])
    if task["threads"]:
        torch.set_num_threads(task["threads"])
    torch.manual_seed(0)
    if task["impl"] == "plain":
        dgcnn_module.knn = knn_plain  # the original kNN (several (B, N, N) temporaries, autograd on)
    model = dgcnn_module.DGCNN(k=task["k"], emb_dims=task["emb_dims"], edgeconv=task["impl"]).to(device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-6)
    points = torch.randn(task["batch"], 3, task["points"], device=device)  # (B, 3, N)
    half = task["batch"] // 2

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        feats = model(points)  # (B, 2 * emb_dims)
        z = model.inv_head(feats)  # (B, 256)
        loss = nt_xent(z[:half], z[half:])
        loss.backward()
        optimizer.step()

    synchronize(device)
    baseline = current_rss_bytes()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        allocated_before = torch.cuda.memory_allocated(device)
    timing = time_steps(step, device, task["warmup"], task["repeats"])
    result = dict(task, **timing)
    if device.type == "cuda":
        result["peak_mem_bytes"] = torch.cuda.max_memory_allocated(device) - allocated_before
        result["memory_kind"] = "cuda max_memory_allocated minus allocated before the first step"
    else:
        result["peak_mem_bytes"] = peak_rss_bytes() - baseline
        result["memory_kind"] = "peak RSS minus RSS after model/optimizer/input creation"
    result["baseline_rss_bytes"] = baseline
    result["torch_threads"] = torch.get_num_threads()
    return result


def bench_dgcnn(args: argparse.Namespace) -> dict:
    """DGCNN training step, plain vs fast EdgeConv, at each --points; one subprocess per configuration."""
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("[dgcnn] skipped: --device cuda requested but CUDA is not available.")
        return None
    configs = []  # (task, env_extra)
    for malloc in args.malloc.split(","):
        env_extra = {}
        if malloc == "jemalloc":
            path = find_jemalloc()
            if path is None:
                print("[dgcnn] jemalloc not found (apt-get install libjemalloc2); skipping the jemalloc rows.")
                continue
            env_extra = {"LD_PRELOAD": path, "MALLOC_CONF": JEMALLOC_CONF}
        elif malloc == "mmap":
            # glibc with a fixed mmap threshold: every block >= 64 KiB is mmapped and returned on free,
            # so the peak RSS growth is close to the peak of live tensor memory (slower: page faults).
            env_extra = {"MALLOC_MMAP_THRESHOLD_": "65536"}
        elif malloc != "system":
            raise ValueError(f"benchmarks/run.py: unknown --malloc {malloc!r}; use system, jemalloc and/or mmap.")
        if args.omp_passive:
            # Threads sleep instead of spinning at OpenMP barriers: on an oversubscribed machine a
            # descheduled thread otherwise stalls every parallel region (many small ops suffer most).
            env_extra["OMP_WAIT_POLICY"] = "PASSIVE"
        for points in args.points:
            for impl in args.impls:
                task = {
                    "section": "dgcnn",
                    "impl": impl,
                    "points": points,
                    "batch": args.batch,
                    "k": args.k,
                    "emb_dims": args.emb_dims,
                    "device": device,
                    "warmup": args.warmup,
                    "repeats": args.repeats if impl == "fast" else args.plain_repeats,
                    "malloc": malloc,
                    "threads": args.threads,
                    "env": dict(env_extra),
                }
                configs.append((task, env_extra))

    # Rounds go over all configurations in turn, so a busy spell of a shared machine hits one round
    # of several configurations rather than every round of one.
    results = [[] for _ in configs]
    for round_index in range(args.rounds):
        for (task, env_extra), runs in zip(configs, results):
            print(
                f"[dgcnn] round {round_index + 1}/{args.rounds}: {task['impl']} N={task['points']} "
                f"malloc={task['malloc']} ...",
                flush=True,
            )
            runs.append(run_worker(task, env_extra))

    rows = []
    for runs in results:
        # Other processes only ever slow a round down: report the round with the lowest median.
        row = dict(min(runs, key=lambda r: r["step_s_median"]))
        row["round_step_s_medians"] = [r["step_s_median"] for r in runs]
        row["round_peak_mem_bytes"] = [r["peak_mem_bytes"] for r in runs]
        rows.append(row)
    plain_rows = {(r["points"], r["malloc"]): r for r in rows if r["impl"] == "plain"}
    for fast in rows:
        plain = plain_rows.get((fast["points"], fast["malloc"]))
        if fast["impl"] == "fast" and plain is not None:
            fast["speedup_vs_plain"] = plain["step_s_median"] / fast["step_s_median"]
            fast["cpu_speedup_vs_plain"] = plain["cpu_s_median"] / fast["cpu_s_median"]
            fast["memory_ratio_vs_plain"] = fast["peak_mem_bytes"] / max(plain["peak_mem_bytes"], 1)
    for row in rows:
        row["peak_mem_mib"] = row["peak_mem_bytes"] / 2**20
    print_table(
        f"DGCNN training step (batch {args.batch}, k={args.k}, emb_dims={args.emb_dims}, {device}, "
        f"{args.threads or torch.get_num_threads()} threads)",
        [
            ("malloc", "{}"),
            ("points", "{}"),
            ("impl", "{}"),
            ("step_s_median", "{:.3f}"),
            ("step_s_min", "{:.3f}"),
            ("cpu_s_median", "{:.2f}"),
            ("sys_s_median", "{:.2f}"),
            ("peak_mem_mib", "{:.0f}"),
            ("speedup_vs_plain", "{:.2f}x"),
            ("memory_ratio_vs_plain", "{:.3f}"),
        ],
        rows,
    )
    return {"machine": machine_info(device), "rows": rows}


# ---------------------------------------------------------------------------------------------
# Section: full CrossPoint step (two point views + image branch), meant for a GPU
# ---------------------------------------------------------------------------------------------


def bench_crosspoint(args: argparse.Namespace) -> dict | None:
    """Full CrossPoint pretraining step: DGCNN on 2 x batch clouds, ResNet on batch images, IMID + CMID.

    Runs on CUDA; on CPU only with --allow-cpu (a smoke test of the code path, use small sizes).
    Options: --amp (fp16 autocast + GradScaler), --channels-last (image branch in channels_last).
    """
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("[crosspoint] skipped: CUDA is not available on this machine (this section needs a GPU).")
        return None
    if device.type != "cuda" and not args.allow_cpu:
        print(
            "[crosspoint] skipped: the full CrossPoint step is a GPU benchmark; run with --device cuda "
            "(or --allow-cpu with small --cp-* sizes for a smoke test)."
        )
        return None
    import util.torchvision_compat

    util.torchvision_compat.install()
    from models import build_image_encoder
    from models.dgcnn import DGCNN
    from models.losses import crosspoint_loss

    rows = []
    for impl in args.impls:
        torch.manual_seed(0)
        point_model = DGCNN(k=args.k, emb_dims=args.emb_dims, edgeconv=impl).to(device).train()
        image_model = build_image_encoder(args.image_arch).to(device).train()
        if args.channels_last:
            image_model = image_model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(
            [{"params": point_model.parameters()}, {"params": image_model.parameters()}], lr=1e-3, weight_decay=1e-6
        )
        scaler = torch.amp.GradScaler(device.type, enabled=args.amp and device.type == "cuda")
        batch = args.cp_batch
        points = torch.randn(2 * batch, 3, args.cp_points, device=device)  # (2B, 3, N): both views
        images = torch.randn(batch, 3, args.cp_image_size, args.cp_image_size, device=device)  # (B, 3, H, W)
        if args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=args.amp):
                point_feats = point_model.inv_head(point_model(points))  # (2B, 256)
                image_feats = image_model.inv_head(image_model(images))  # (B, 256)
                loss, _ = crosspoint_loss(point_feats[:batch], point_feats[batch:], image_feats)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            allocated_before = torch.cuda.memory_allocated(device)
        print(f"[crosspoint] running {impl} ...", flush=True)
        timing = time_steps(step, device, args.warmup, args.repeats)
        row = {
            "impl": impl,
            "batch": batch,
            "points": args.cp_points,
            "image_size": args.cp_image_size,
            "image_arch": args.image_arch,
            "amp": args.amp,
            "channels_last": args.channels_last,
            **timing,
        }
        if device.type == "cuda":
            row["peak_mem_mib"] = (torch.cuda.max_memory_allocated(device) - allocated_before) / 2**20
        rows.append(row)
        point_model = image_model = optimizer = step = None  # free this impl's memory before the next one
    if len(rows) == 2:
        rows[1]["speedup_vs_plain"] = rows[0]["step_s_median"] / rows[1]["step_s_median"]
    print_table(
        f"CrossPoint step ({args.device}, amp={args.amp}, channels_last={args.channels_last})",
        [("impl", "{}"), ("step_s_median", "{:.3f}"), ("peak_mem_mib", "{:.0f}"), ("speedup_vs_plain", "{:.2f}x")],
        rows,
    )
    return {"machine": machine_info(args.device), "rows": rows}


SECTIONS: dict[str, Callable[[argparse.Namespace], dict | None]] = {
    "dgcnn": bench_dgcnn,
    "crosspoint": bench_crosspoint,
}
WORKERS: dict[str, Callable[[dict], dict]] = {"dgcnn": dgcnn_worker}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {list(SECTIONS)}")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default: cpu)")
    parser.add_argument("--impls", default="plain,fast", help="EdgeConv implementations (default: plain,fast)")
    parser.add_argument("--points", default="1024,2048", help="points per cloud, dgcnn section (default: 1024,2048)")
    parser.add_argument("--batch", type=int, default=8, help="clouds per DGCNN step (default: 8)")
    parser.add_argument("--k", type=int, default=20, help="kNN size (paper pretraining: 20)")
    parser.add_argument("--emb-dims", type=int, default=1024, help="DGCNN embedding width (paper: 1024)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in the dgcnn workers (default: torch's)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="fresh-process rounds per dgcnn configuration; the round with the lowest median is reported "
        "(use 2-3 on a shared machine) (default: 1)",
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before timing (default: 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps of the fast configurations (default: 5)")
    parser.add_argument("--plain-repeats", type=int, default=3, help="timed steps of plain configurations (default: 3)")
    parser.add_argument(
        "--malloc",
        default="system",
        help="allocators for the dgcnn rows, comma-separated: system (glibc default), jemalloc (LD_PRELOAD), "
        "mmap (glibc, MALLOC_MMAP_THRESHOLD_=65536: peak RSS ~ peak live memory) (default: system)",
    )
    parser.add_argument(
        "--omp-passive", action="store_true", help="dgcnn workers with OMP_WAIT_POLICY=PASSIVE (shared machines)"
    )
    parser.add_argument("--amp", action="store_true", help="crosspoint: fp16 autocast + GradScaler on CUDA")
    parser.add_argument("--channels-last", action="store_true", help="crosspoint: image branch in channels_last")
    parser.add_argument("--allow-cpu", action="store_true", help="crosspoint: allow a CPU smoke run")
    parser.add_argument("--cp-batch", type=int, default=20, help="crosspoint: shapes per step (paper: 20)")
    parser.add_argument("--cp-points", type=int, default=2048, help="crosspoint: points per cloud (paper: 2048)")
    parser.add_argument("--cp-image-size", type=int, default=224, help="crosspoint: image size (paper: 224)")
    parser.add_argument("--image-arch", default="resnet50", help="crosspoint: image backbone (paper: resnet50)")
    parser.add_argument("--no-save", action="store_true", help="print only, do not write benchmarks/results/")
    parser.add_argument("--tag", default="", help="suffix for the result file names")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.worker is not None:
        task = json.loads(args.worker)
        print(json.dumps(WORKERS[task["section"]](task)))
        return {}
    args.points = [int(p) for p in args.points.split(",")]
    args.impls = args.impls.split(",")
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise SystemExit(f"benchmarks/run.py: unknown section(s) {unknown}; choose from {list(SECTIONS)}.")
    records = {}
    for name in sections:
        record = SECTIONS[name](args)
        if record is None:
            continue
        record["section"] = name
        record["argv"] = sys.argv[1:] if argv is None else argv
        records[name] = record
        if not args.no_save:
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            device_tag = args.device.replace(":", "")
            path = RESULTS_DIR / f"{name}_{device_tag}{'_' + args.tag if args.tag else ''}.json"
            path.write_text(json.dumps(record, indent=2) + "\n")
            print(f"[{name}] wrote {path.relative_to(REPO)}")
    return records


if __name__ == "__main__":
    main()
