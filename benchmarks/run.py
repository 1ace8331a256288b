"""Speed and memory benchmarks: prints a table per section and writes JSON to benchmarks/results/.

Usage (from the repository root):
    .venv/bin/python -m benchmarks.run                       # every section (GPU ones skip without CUDA)
    .venv/bin/python -m benchmarks.run --only dgcnn --points 1024 --repeats 5
    .venv/bin/python -m benchmarks.run --only dgcnn --malloc system,jemalloc,mmap
    .venv/bin/python -m benchmarks.run --only crosspoint --rounds 4       # CPU: fp32 vs bf16, `small` sizes
    .venv/bin/python -m benchmarks.run --only crosspoint --device cuda --channels-last   # fp32/bf16/fp16, paper

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
from util.presets import PRESETS, PRETRAIN_K, PUBLISHED_EMB_DIMS
from util.device import autocast_context, make_grad_scaler

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
# Section: full CrossPoint step (two point views + image branch) per precision, CPU or GPU
# ---------------------------------------------------------------------------------------------

# The published pretraining step (paper; original scripts/script.sh: k 15, batch 20); the pretraining
# presets of util/presets.py override some of these (small: 512 points, emb 256, resnet18 at 64 px).
CP_PAPER = {"num_points": 2048, "k": PRETRAIN_K, "emb_dims": PUBLISHED_EMB_DIMS, "img_model": "resnet50",
            "image_size": 224, "batch_size": 20}
AMP_LABELS = {"none": "fp32", "bf16": "bf16", "fp16": "fp16"}


def crosspoint_sizes(preset: str, **overrides: int | str | None) -> dict:
    """Sizes of the CrossPoint step under a pretraining preset of util/presets.py (tiny, small, paper).

    Returns the keys of ``CP_PAPER``; an override that is not None replaces the preset's value.
    """
    sizes = {key: PRESETS["pretrain"][preset].get(key, value) for key, value in CP_PAPER.items()}
    sizes.update({key: value for key, value in overrides.items() if value is not None})
    return sizes


def amp_available(device: torch.device, amp: str) -> bool:
    """Whether autocast with ``amp`` runs a matmul in the reduced dtype on ``device``."""
    if amp == "none":
        return True
    try:
        with autocast_context(device, amp):
            out = torch.ones(2, 2, device=device) @ torch.ones(2, 2, device=device)
    except RuntimeError:
        return False
    return out.dtype == (torch.bfloat16 if amp == "bf16" else torch.float16)


def make_crosspoint_step(
    device: torch.device, impl: str, sizes: dict, channels_last: bool = False, seed: int = 0
) -> Callable[[str], torch.Tensor]:
    """Models, one Adam over both, and random inputs of one CrossPoint pretraining step.

    The step is train_crossmodal.py's: DGCNN(k, emb_dims, edgeconv=impl) + ``inv_head`` on the 2B
    clouds of both views in one batch (2B, 3, N), the image encoder + ``inv_head`` on B images
    (B, 3, S, S), under ``util.device.autocast_context``; ``crosspoint_loss`` (IMID + CMID) outside
    autocast; backward, Adam step (through ``util.device.make_grad_scaler``'s GradScaler for fp16).

    Returns:
        ``step(amp)`` running one step with amp in ("none", "bf16", "fp16") and returning the
        detached loss (a 0-dim tensor on ``device``).
    """
    import util.torchvision_compat

    util.torchvision_compat.install()
    from models import build_image_encoder
    from models.dgcnn import DGCNN
    from models.losses import crosspoint_loss

    torch.manual_seed(seed)
    batch = sizes["batch_size"]
    point_model = DGCNN(k=sizes["k"], emb_dims=sizes["emb_dims"], edgeconv=impl).to(device).train()
    image_model = build_image_encoder(sizes["img_model"]).to(device).train()
    if channels_last:
        image_model = image_model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(
        [{"params": point_model.parameters()}, {"params": image_model.parameters()}], lr=1e-3, weight_decay=1e-6
    )
    points = torch.randn(2 * batch, 3, sizes["num_points"], device=device)  # (2B, 3, N): both views
    images = torch.randn(batch, 3, sizes["image_size"], sizes["image_size"], device=device)  # (B, 3, S, S)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    scalers: dict[str, torch.amp.GradScaler | None] = {}

    def step(amp: str) -> torch.Tensor:
        if amp not in scalers:
            scalers[amp] = make_grad_scaler(device, amp)
        scaler = scalers[amp]
        optimizer.zero_grad(set_to_none=True)
        with autocast_context(device, amp):
            z = point_model.inv_head(point_model(points))  # (2B, 256)
            h = image_model.inv_head(image_model(images))  # (B, 256)
        loss, _ = crosspoint_loss(z[:batch], z[batch:], h)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        return loss.detach()

    return step


def _amp_row(impl: str, amp: str, sizes: dict, runs: list[dict]) -> dict:
    """One (impl, amp) row from its rounds' :func:`time_steps` records (the round with the lowest median)."""
    best = min(runs, key=lambda r: r["step_s_median"])
    row = {"impl": impl, "amp": amp, "precision": AMP_LABELS[amp], **sizes, **best,
           "round_step_s_medians": [r["step_s_median"] for r in runs]}
    peaks = [r["peak_step_mib"] for r in runs if "peak_step_mib" in r]
    if peaks:
        row["peak_step_mib"] = max(peaks)
        row["max_allocated_mib"] = max(r["max_allocated_mib"] for r in runs)
    return row


def time_crosspoint(
    device: torch.device, impl: str, sizes: dict, amps: list[str], rounds: int, warmup: int, repeats: int,
    channels_last: bool = False,
) -> list[dict]:
    """Time the CrossPoint step of one EdgeConv implementation at every precision, interleaved.

    One untimed fp32 step first creates Adam's state; then each round times every precision in
    turn (``warmup`` untimed + ``repeats`` timed steps each, :func:`time_steps`), so a busy spell of a
    shared machine hits all precisions alike. On CUDA each timing is preceded by
    ``reset_peak_memory_stats``: ``max_allocated_mib`` is ``torch.cuda.max_memory_allocated`` and
    ``peak_step_mib`` that minus what was allocated before the steps (models, Adam state, inputs).

    Returns:
        one row per precision (in ``amps`` order) with the best round's timing,
        ``round_step_s_medians`` and ``speedup_vs_fp32`` (median over rounds of the same round's
        fp32 median / this precision's median; 1.0 for fp32 itself, absent without an fp32 row), and
        ``cpu_speedup_vs_fp32``, the same for the process CPU seconds per step.
    """
    step = make_crosspoint_step(device, impl, sizes, channels_last)
    step("none")
    runs: dict[str, list[dict]] = {amp: [] for amp in amps}
    for round_index in range(rounds):
        for amp in amps:
            print(f"[crosspoint] round {round_index + 1}/{rounds}: {impl} {AMP_LABELS[amp]} ...", flush=True)
            if device.type == "cuda":
                synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
            timing = time_steps(lambda: step(amp), device, warmup, repeats)
            if device.type == "cuda":
                peak = torch.cuda.max_memory_allocated(device)
                timing.update(max_allocated_mib=peak / 2**20, peak_step_mib=(peak - before) / 2**20)
            runs[amp].append(timing)
    rows = [_amp_row(impl, amp, sizes, runs[amp]) for amp in amps]
    if "none" in runs:
        for row in rows:
            ratios = [f["step_s_median"] / r["step_s_median"] for f, r in zip(runs["none"], runs[row["amp"]])]
            row["speedup_vs_fp32"] = statistics.median(ratios)
            row["round_speedups_vs_fp32"] = ratios
            # CPU seconds (all threads) per step: on a machine other jobs share, less disturbed than wall time
            row["cpu_speedup_vs_fp32"] = statistics.median(
                f["cpu_s_median"] / r["cpu_s_median"] for f, r in zip(runs["none"], runs[row["amp"]]))
    return rows


def default_amps(device: torch.device) -> list[str]:
    """fp32, bf16 and fp16 on CUDA; fp32 and bf16 on the CPU (plus fp16 with --amp none,bf16,fp16)."""
    return ["none", "bf16", "fp16"] if device.type == "cuda" else ["none", "bf16"]


def bench_crosspoint(args: argparse.Namespace) -> dict | None:
    """Full CrossPoint pretraining step per EdgeConv implementation and precision (see :func:`time_crosspoint`).

    Sizes: ``--cp-preset`` (default paper on CUDA, small on the CPU) with ``--cp-*`` overrides.
    Precisions: ``--amp`` (default fp32,bf16,fp16 on CUDA, fp32,bf16 on the CPU), interleaved in
    ``--rounds`` rounds. ``--channels-last``: the image branch in channels_last.
    """
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("[crosspoint] skipped: CUDA is not available on this machine (run on the CPU with --device cpu).")
        return None
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # the images always have the same size, as in training
    sizes = crosspoint_sizes(
        args.cp_preset or ("paper" if device.type == "cuda" else "small"), num_points=args.cp_points,
        k=args.cp_k, emb_dims=args.cp_emb_dims, img_model=args.image_arch, image_size=args.cp_image_size,
        batch_size=args.cp_batch,
    )
    amps = args.amp.split(",") if args.amp else default_amps(device)
    unknown = [amp for amp in amps if amp not in AMP_LABELS]
    if unknown:
        raise SystemExit(f"benchmarks/run.py: --amp {args.amp}: unknown precision(s) {unknown}; use none, bf16, fp16.")
    missing = [amp for amp in amps if not amp_available(device, amp)]
    if missing:
        print(f"[crosspoint] skipping {missing}: autocast does not run them on {device} with torch {torch.__version__}.")
        amps = [amp for amp in amps if amp not in missing]
    rows = []
    for impl in args.impls:
        rows += time_crosspoint(device, impl, sizes, amps, args.rounds, args.warmup, args.repeats, args.channels_last)
    print_table(
        f"CrossPoint step ({args.device}, batch {sizes['batch_size']}, {sizes['num_points']} points, k "
        f"{sizes['k']}, emb {sizes['emb_dims']}, {sizes['img_model']} at {sizes['image_size']} px, "
        f"channels_last={args.channels_last}, {args.rounds} round(s), {torch.get_num_threads()} threads)",
        [("impl", "{}"), ("precision", "{}"), ("step_s_median", "{:.3f}"), ("step_s_min", "{:.3f}"),
         ("cpu_s_median", "{:.2f}"), ("speedup_vs_fp32", "{:.2f}x"), ("cpu_speedup_vs_fp32", "{:.2f}x"),
         ("peak_step_mib", "{:.0f}"),
         ("max_allocated_mib", "{:.0f}")],
        rows,
    )
    return {"machine": machine_info(args.device), "sizes": sizes, "amps": amps, "rows": rows,
            "cudnn_benchmark": torch.backends.cudnn.benchmark, "tf32": tf32_settings()}


def tf32_settings() -> dict:
    """torch's TF32 switches as they stand (they matter on Ampere and newer GPUs only)."""
    return {"matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision()}


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
        help="rounds: dgcnn runs every configuration once per round in a fresh process, crosspoint times "
        "its precisions in turn in each round; the round with the lowest median is reported "
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
    parser.add_argument(
        "--amp",
        nargs="?",
        const="fp16",
        default=None,
        help="crosspoint: comma-separated precisions of none (fp32), bf16, fp16 (GradScaler), timed interleaved "
        "(default: none,bf16,fp16 on CUDA, none,bf16 on the CPU; --amp alone: fp16)",
    )
    parser.add_argument("--channels-last", action="store_true", help="crosspoint: image branch in channels_last")
    parser.add_argument(
        "--cp-preset",
        choices=sorted(PRESETS["pretrain"]),
        default=None,
        help="crosspoint: sizes of a pretraining preset of util/presets.py (default: paper on CUDA, small on the CPU)",
    )
    parser.add_argument("--cp-batch", type=int, default=None, help="crosspoint: shapes per step (paper: 20)")
    parser.add_argument("--cp-points", type=int, default=None, help="crosspoint: points per cloud (paper: 2048)")
    parser.add_argument("--cp-k", type=int, default=None, help="crosspoint: kNN size (paper script: 15)")
    parser.add_argument("--cp-emb-dims", type=int, default=None, help="crosspoint: DGCNN width (paper: 1024)")
    parser.add_argument("--cp-image-size", type=int, default=None, help="crosspoint: image size (paper: 224)")
    parser.add_argument("--image-arch", default=None, help="crosspoint: image backbone (paper: resnet50)")
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
