"""Cluster readiness: --resume auto, SIGTERM, torchrun restarts, several nodes, the run lock, the weights pair,
and the SLURM scripts. Tiny synthetic data, CPU, gloo; the multi-process tests are marked slow."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train_cls
import train_crossmodal
import train_partseg
import util.checkpoint
from conftest import REPO_ROOT
from util.weights import load_point_encoder
from util.fileio import DirLock, LockHeldError
from util.run import FINISHED_NAME, PREEMPTED_EXIT, RUN_LOCK_NAME

# IMID only (no image encoder), no probe, 2 epochs of 2 steps (a stop can come mid-epoch).
FAST = ["--preset", "tiny", "--imid_only", "--probe_dataset", "none", "--max_steps_per_epoch", "2", "--batch_size",
        "4", "--num_workers", "0", "--no_progress", "--print_freq", "1", "--k", "8", "--epochs", "2"]


def _argv(root, out, name, *extra):
    return ["--data_root", str(root), "--output_dir", str(out), "--exp_name", name, *FAST, *extra]


def _weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "point_encoder_last.pth", weights_only=True)


def _assert_same_weights(run_a, run_b):
    a, b = _weights(run_a), _weights(run_b)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"point_encoder.{key} differs"


def _env(**extra):
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT), **extra}


def _fault_env(fault):
    env = _env()
    env.pop("CLUSTER_FAULT", None)
    return {**env, "CLUSTER_FAULT": fault} if fault else env


def _python(argv, fault=None, timeout=300):
    """train_crossmodal in a subprocess through tests/cluster_entry.py (optionally with a fault)."""
    env = _fault_env(fault)
    return subprocess.run([sys.executable, str(REPO_ROOT / "tests" / "cluster_entry.py"), "train_crossmodal", *argv],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _torchrun(launcher, argv, fault=None):
    env = _fault_env(fault)
    cmd = [sys.executable, "-m", "torch.distributed.run", *launcher, str(REPO_ROOT / "tests" / "cluster_entry.py"),
           "train_crossmodal", *argv, "--device", "cpu"]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _finish(proc, timeout=300):
    """(status, output) of a torchrun job; a job still running after ``timeout`` s is killed (with its workers)."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"torchrun still running after {timeout} s:\n{out[-4000:]}")
    return proc.returncode, out


def _state_epoch(run_dir):
    return torch.load(run_dir / "checkpoints" / "training_state_last.pt", weights_only=True)["epoch"]


# ----------------------------------------------------------------------------------------------
# --resume auto
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def whole_run(tiny_data_root, tmp_path_factory):
    """The uninterrupted in-process run every in-process continuation is compared with."""
    out = tmp_path_factory.mktemp("whole")
    train_crossmodal.main(_argv(tiny_data_root, out, "whole"))
    return out / "whole"


def test_resume_auto_same_command_until_done_equals_an_uninterrupted_run(whole_run, tiny_data_root, tmp_path):
    argv = _argv(tiny_data_root, tmp_path, "requeued", "--stop_after", "1", "--resume", "auto")
    epochs = [[h["epoch"] for h in train_crossmodal.main(argv)["history"]] for _ in range(2)]
    assert epochs == [[0], [0, 1]]
    run = tmp_path / "requeued"
    _assert_same_weights(whole_run, run)
    assert (run / FINISHED_NAME).is_file() and not (run / RUN_LOCK_NAME).exists()
    log = (run / "log.txt").read_text()
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    # Requeued once more: exits at once, changes nothing.
    assert train_crossmodal.main(argv) == {"run_dir": str(run), "already_finished": True}
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert log.count("Resumed from") == 1
    # More epochs asked for: the finished run is continued.
    more = _argv(tiny_data_root, tmp_path, "requeued", "--resume", "auto", "--epochs", "3")
    with pytest.warns(UserWarning, match=r"differ from the saved run .*'epochs': \(2, 3\)"):
        history = train_crossmodal.main(more)["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2]


def test_resume_auto_starts_over_a_run_killed_before_its_first_checkpoint(whole_run, tiny_data_root, tmp_path):
    run = tmp_path / "early"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "log.txt").write_text("a killed start\n")
    (run / "checkpoints" / ".training_state_last.pt.x1.tmp").write_bytes(b"half")
    train_crossmodal.main(_argv(tiny_data_root, tmp_path, "early", "--resume", "auto"))
    _assert_same_weights(whole_run, run)
    log = (run / "log.txt").read_text()
    assert "a killed start" not in log and "held no training state" in log and "started over" in log
    # A directory that is not a run of this project is never deleted.
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="already holds a run .*notes.txt"):
        train_crossmodal.main(_argv(tiny_data_root, tmp_path, "foreign", "--resume", "auto"))
    assert (tmp_path / "foreign" / "notes.txt").read_text() == "mine"


def test_resume_auto_is_in_every_training_script():
    for module in (train_crossmodal, train_partseg, train_cls):
        text = " ".join(module.build_parser().format_help().split())
        assert "'auto'" in text and "started over" in text


# ----------------------------------------------------------------------------------------------
# SIGTERM
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_finishes_the_step_exits_75_and_resume_auto_completes_exactly(tiny_data_root, tmp_path):
    argv = _argv(tiny_data_root, tmp_path, "term", "--resume", "auto")
    ref = _python(_argv(tiny_data_root, tmp_path, "ref"))
    assert ref.returncode == 0, ref.stderr[-3000:]
    proc = _python(argv, fault="term:0:1:0")
    assert proc.returncode == PREEMPTED_EXIT, proc.stdout[-2000:] + proc.stderr[-3000:]
    run = tmp_path / "term"
    log = (run / "log.txt").read_text()
    # Step 0 of epoch 1 (during which the signal came) finished; the stop came before step 1.
    assert "stopped by SIGTERM at epoch 1 after 1 step(s)" in log and "Exit status 75" in log
    assert _state_epoch(run) == 0 and not (run / RUN_LOCK_NAME).exists()
    proc = _python(argv)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same_weights(tmp_path / "ref", run)
    proc = _python(argv)
    assert proc.returncode == 0 and "already finished its 2 epochs" in proc.stdout


# ----------------------------------------------------------------------------------------------
# DDP: SIGTERM on one rank, torchrun restarts, several nodes
# ----------------------------------------------------------------------------------------------

DDP = ["--batch_size", "4"]  # 2 ranks x 2 samples: 3 steps per epoch (2 run)
STANDALONE = ["--standalone", "--nproc_per_node", "2"]


@pytest.fixture(scope="module")
def ddp_whole(tiny_data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_whole")
    code, text = _finish(_torchrun(STANDALONE, _argv(tiny_data_root, out, "whole", *DDP)))
    assert code == 0, text[-4000:]
    return out / "whole"


@pytest.mark.slow
def test_ddp_sigterm_on_one_rank_stops_every_rank_at_the_same_step(ddp_whole, tiny_data_root, tmp_path):
    argv = _argv(tiny_data_root, tmp_path, "term", *DDP, "--resume", "auto")
    code, text = _finish(_torchrun(STANDALONE, argv, fault="term:1:1:0"))
    assert code != 0 and re.search(rf"exitcode\s*:\s*{PREEMPTED_EXIT}", text), text[-4000:]
    run = tmp_path / "term"
    # Rank 0 never got the signal; it stopped at the step rank 1 did, and wrote the line.
    assert "stopped by SIGTERM at epoch 1 after 1 step(s)" in (run / "log.txt").read_text()
    assert _state_epoch(run) == 0
    code, text = _finish(_torchrun(STANDALONE, argv))
    assert code == 0, text[-4000:]
    _assert_same_weights(ddp_whole, run)


@pytest.mark.slow
def test_torchrun_restart_after_a_dead_worker_continues_exactly(ddp_whole, tiny_data_root, tmp_path):
    argv = _argv(tiny_data_root, tmp_path, "restart", *DDP, "--resume", "auto")
    code, text = _finish(_torchrun([*STANDALONE, "--max-restarts", "1"], argv, fault="die:1:1:0"))
    assert code == 0, text[-4000:]
    run = tmp_path / "restart"
    log = (run / "log.txt").read_text()
    assert "Resumed from" in log and "continuing at epoch 1" in log
    _assert_same_weights(ddp_whole, run)


@pytest.mark.slow
def test_two_nodes_on_one_host_train_like_one_node_with_two_processes(ddp_whole, tiny_data_root, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launcher = ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d", "--rdzv_endpoint",
                f"127.0.0.1:{port}", "--rdzv_id", "two_nodes"]
    argv = _argv(tiny_data_root, tmp_path, "nodes", *DDP, "--resume", "auto")
    nodes = [_torchrun(launcher, argv) for _ in range(2)]
    for proc in nodes:
        code, text = _finish(proc)
        assert code == 0, text[-4000:]
    assert json.loads((tmp_path / "nodes" / "config.json").read_text())["world_size"] == 2
    _assert_same_weights(ddp_whole, tmp_path / "nodes")


# ----------------------------------------------------------------------------------------------
# One process per run directory
# ----------------------------------------------------------------------------------------------


def _files(run_dir):
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def test_a_live_lock_refuses_a_second_process_and_changes_nothing(tiny_data_root, tmp_path):
    argv = _argv(tiny_data_root, tmp_path, "live", "--stop_after", "1")
    train_crossmodal.main(argv)
    run = tmp_path / "live"
    (run / "checkpoints" / ".point_encoder_last.pth.r4nd.tmp").write_bytes(b"being written by the live run")
    with open(run / "log.txt", "a") as f:
        f.write("logged by the live run after its checkpoint\n")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from util.fileio import DirLock\n"
         f"with DirLock({str(run / RUN_LOCK_NAME)!r}, 'x'): print('held', flush=True); sys.stdin.read()"],
        cwd=REPO_ROOT, env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = _files(run)
        for extra in (["--resume", str(run)], ["--resume", "auto"], []):
            with pytest.raises(SystemExit) as info:
                train_crossmodal.main([*argv, *extra])
            message = str(info.value)
            assert "\n" not in message and f"pid {holder.pid} on host {socket.gethostname()}" in message, message
            assert _files(run) == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not (run / RUN_LOCK_NAME).exists()  # released by its holder


def test_a_stale_lock_of_a_dead_process_is_taken_over_and_released(tiny_data_root, tmp_path):
    argv = _argv(tiny_data_root, tmp_path, "stale", "--stop_after", "1")
    train_crossmodal.main(argv)
    run = tmp_path / "stale"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / RUN_LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": 0}))
    train_crossmodal.main([*argv, "--resume", "auto"])
    log = (run / "log.txt").read_text()
    assert f"Took over {run / RUN_LOCK_NAME}" in log and f"pid {dead.pid}" in log and "no longer runs" in log
    assert not (run / RUN_LOCK_NAME).exists()
    # Released on an error too (a refused resume with other model settings).
    with pytest.raises(SystemExit, match="other model settings"):
        train_crossmodal.main([*argv, "--resume", "auto", "--epochs", "3", "--k", "5"])
    assert not (run / RUN_LOCK_NAME).exists()


def test_lock_of_another_host_is_refused_unless_it_is_this_slurm_job(tmp_path, monkeypatch):
    lock = tmp_path / RUN_LOCK_NAME
    lock.write_text(json.dumps({"pid": 1, "host": "node-elsewhere", "started": 0, "slurm_job_id": "41"}))
    with pytest.raises(LockHeldError, match=rf"node-elsewhere.*delete {re.escape(str(lock))}"):
        DirLock(lock, "a run").acquire()
    monkeypatch.setenv("SLURM_JOB_ID", "41")  # the same job, requeued onto another node
    taken = DirLock(lock, "a run")
    assert "earlier run of this SLURM job" in taken.acquire()
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    taken.release()
    assert not lock.exists()


# ----------------------------------------------------------------------------------------------
# The weights sidecar is never missing
# ----------------------------------------------------------------------------------------------


def test_a_kill_between_weights_and_sidecar_never_leaves_weights_without_sidecar(tiny_data_root, tmp_path,
                                                                                  monkeypatch):
    real_text, real_torch = util.checkpoint.atomic_write_text, util.checkpoint.atomic_torch_save

    def pair_started(path):
        path = Path(path)
        return path.stem == "point_encoder_best" and any(path.with_suffix(s).exists() for s in (".pth", ".json"))

    def write_text(path, text):
        if pair_started(path):
            raise KeyboardInterrupt  # the kill, after the first file of the pair was written
        real_text(path, text)

    def torch_save(obj, path):
        if pair_started(path):
            raise KeyboardInterrupt
        real_torch(obj, path)

    monkeypatch.setattr(util.checkpoint, "atomic_write_text", write_text)
    monkeypatch.setattr(util.checkpoint, "atomic_torch_save", torch_save)
    with pytest.raises(KeyboardInterrupt):
        train_crossmodal.main(_argv(tiny_data_root, tmp_path, "cut"))
    ckpt = tmp_path / "cut" / "checkpoints"
    assert (ckpt / "point_encoder_last.pth").is_file()
    for weights in ckpt.glob("*.pth"):
        assert weights.with_suffix(".json").is_file(), f"{weights.name} has no sidecar"


def test_weights_without_sidecar_use_the_runs_config_not_published_defaults(tiny_data_root, tmp_path, capsys):
    train_crossmodal.main(_argv(tiny_data_root, tmp_path, "k8", "--epochs", "1"))
    weights = tmp_path / "k8" / "checkpoints" / "point_encoder_best.pth"
    weights.with_suffix(".json").unlink()  # what a kill between the two writes of the older order left
    capsys.readouterr()
    encoder = load_point_encoder(weights, verbose=False)
    assert encoder.model_args == {"k": 8, "emb_dims": 64}
    err = capsys.readouterr().err
    assert "has no sidecar point_encoder_best.json" in err and "config.json" in err and "k=8" in err


# ----------------------------------------------------------------------------------------------
# SLURM scripts
# ----------------------------------------------------------------------------------------------

SLURM = sorted((REPO_ROOT / "scripts" / "slurm").glob("*.sbatch"))
PARSERS = {"train_crossmodal.py": train_crossmodal.build_parser, "train_partseg.py": train_partseg.build_parser,
           "train_cls.py": train_cls.build_parser}


def _training_command(text):
    """The script name and flags of the training command an sbatch script runs: continuation lines joined,
    each shell variable replaced by its default in the script, the pass-through ``"$@"`` dropped."""
    defaults = dict(re.findall(r'^(\w+)="\$\{\w+:-([^"]*)\}"', text, re.M))
    joined = re.sub(r"\\\n\s*", " ", text)
    for line in joined.splitlines():
        match = re.search(r"\b(train_\w+\.py)\s+(.*)$", line)
        if match and not line.lstrip().startswith("#"):
            args = match.group(2).replace('"$@"', "")
            for _ in range(2):
                args = re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), "x"), args)
            return match.group(1), shlex.split(args)
    raise AssertionError("no training command found")


def test_every_training_script_has_single_and_multi_node_sbatch_scripts():
    names = {p.name for p in SLURM}
    for stem in ("pretrain", "partseg", "cls"):
        assert {f"{stem}.sbatch", f"{stem}_multinode.sbatch"} <= names, names


@pytest.mark.parametrize("path", SLURM, ids=lambda p: p.name)
def test_sbatch_scripts_parse_and_run_documented_commands(path):
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    text = path.read_text()
    assert "#SBATCH --requeue" in text and "--resume auto" in text and re.search(r"#SBATCH --signal=B:TERM@\d+", text)
    assert "source scripts/slurm/requeue.sh" in text and "run_requeueable srun torchrun" in text
    helper = (REPO_ROOT / "scripts" / "slurm" / "requeue.sh").read_text()
    assert f"PREEMPTED_EXIT={PREEMPTED_EXIT}" in helper and "trap " in helper and "scontrol requeue" in helper
    if "multinode" in path.name:
        assert "--nnodes" in text and "--rdzv_backend c10d" in text and "srun" in text
    script, flags = _training_command(text)
    readme = (REPO_ROOT / "README.md").read_text() + (REPO_ROOT / "docs" / "cluster.md").read_text()
    assert f"python {script}" in readme or f"{script} " in readme
    build = PARSERS[script]
    args = build().parse_args(flags)
    assert args.resume == "auto" and args.preset == "paper" and "$" not in " ".join(flags)


def _requeue_shell(tmp_path, command):
    """``run_requeueable COMMAND`` of scripts/slurm/requeue.sh with a stand-in scontrol that logs its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "scontrol"
    fake.write_text('#!/bin/sh\necho "$@" >> "$SCONTROL_LOG"\n')
    fake.chmod(0o755)
    log = tmp_path / "scontrol.log"
    log.unlink(missing_ok=True)
    script = f"source {REPO_ROOT / 'scripts' / 'slurm' / 'requeue.sh'}\nrun_requeueable {command}\necho status $?\n"
    env = {**_env(), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "77",
           "SCONTROL_LOG": str(log)}
    proc = subprocess.Popen(["bash", "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    return proc, log


def test_requeue_script_requeues_on_status_75_and_on_sigterm_only(tmp_path):
    for status, requeued in ((PREEMPTED_EXIT, True), (0, False), (3, False)):
        proc, log = _requeue_shell(tmp_path, f"bash -c 'exit {status}'")
        out, _ = proc.communicate(timeout=60)
        assert (log.read_text() if log.exists() else "") == ("requeue 77\n" if requeued else ""), out
        assert f"status {0 if requeued else status}" in out
    # SIGTERM to the batch shell: forwarded to the step, which stops with 75; the job is requeued.
    child = (f"{sys.executable} -c \"import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: "
             f"sys.exit({PREEMPTED_EXIT})); print('ready', flush=True); time.sleep(60)\"")
    proc, log = _requeue_shell(tmp_path, child)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert "SIGTERM: stopping the training step" in out and "status 75" in out and "status 0" in out
    assert log.read_text() == "requeue 77\n"


def test_cluster_docs_are_linked_from_the_readme():
    assert "docs/cluster.md" in (REPO_ROOT / "README.md").read_text()
    doc = (REPO_ROOT / "docs" / "cluster.md").read_text()
    for topic in ("--resume auto", "SIGTERM", str(PREEMPTED_EXIT), "--max-restarts", "--nnodes", RUN_LOCK_NAME,
                  "scontrol requeue"):
        assert topic in doc, topic


def test_prepare_meshes_uses_the_shared_lock(tmp_path):
    import datasets.prepare_meshes.prepare as pm

    assert pm.DirLock is DirLock and not hasattr(pm, "_Lock")
    (tmp_path / "in" / "a").mkdir(parents=True)
    lock = tmp_path / "out" / pm.STATE_DIR / "lock"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": 0}))
        with pytest.raises(pm.PrepareError, match=f"in use by another prepare_meshes run: pid {holder.pid}"):
            pm.prepare(tmp_path / "in", tmp_path / "out", progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert json.loads(lock.read_text())["pid"] == holder.pid  # a refused run leaves the holder's lock alone
