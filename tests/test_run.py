"""The shared run lifecycle (util/run.py) on its failure paths: nothing lost, every error clear.

Each test runs a real training script on the tiny synthetic set with the cheapest settings.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import train_crossmodal
import train_partseg
from util import fileio
from util.checkpoint import atomic_torch_save
from util.fileio import DiskFullError

# IMID only (no image encoder), no probe, one step per epoch: a second or two per epoch on a CPU.
FAST = ["--preset", "tiny", "--imid_only", "--probe_dataset", "none", "--max_steps_per_epoch", "1", "--batch_size",
        "4", "--num_workers", "0", "--no_progress", "--print_freq", "1"]


def _argv(root, out, name, *extra):
    return ["--data_root", str(root), "--output_dir", str(out), "--exp_name", name, *FAST, *extra]


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------------------------
# A run directory is never overwritten by accident
# ----------------------------------------------------------------------------------------------


def test_reusing_a_run_name_is_refused_then_overwritten_on_request(tiny_data_root, tmp_path):
    train_crossmodal.main(_argv(tiny_data_root, tmp_path, "exp", "--epochs", "1"))
    run = tmp_path / "exp"
    state = run / "checkpoints" / "training_state_last.pt"
    before = state.read_bytes()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match=r"already holds a run.*--resume .*exp.*--overwrite") as info:
        train_crossmodal.main(_argv(tiny_data_root, tmp_path, "exp", "--epochs", "1"))
    assert "Nothing was changed" in str(info.value)
    assert state.read_bytes() == before and (run / "notes.txt").read_text() == "mine"
    # --resume and --overwrite together are contradictory
    with pytest.raises(SystemExit, match="pass only one"):
        train_crossmodal.main(_argv(tiny_data_root, tmp_path, "exp", "--epochs", "1", "--resume", str(run),
                                    "--overwrite"))
    train_crossmodal.main(_argv(tiny_data_root, tmp_path, "exp", "--epochs", "1", "--overwrite"))
    assert not (run / "notes.txt").exists() and state.is_file()
    # the same rule in the other training script
    with pytest.raises(SystemExit, match="already holds a run"):
        train_partseg.main(["--data_root", str(tiny_data_root), "--output_dir", str(tmp_path), "--exp_name", "exp",
                            "--preset", "tiny", "--num_workers", "0", "--no_progress"])


# ----------------------------------------------------------------------------------------------
# Flags are validated before anything is written
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags, message", [
    (["--num_points", "0"], "--num_points must be at least 1, got 0"),
    (["--num_points", "4", "--k", "8"], "--num_points 4 is smaller than --k 8"),
    (["--temperature", "0"], "--temperature must be a finite number > 0"),
    (["--temperature", "-0.1"], "--temperature must be a finite number > 0"),
    (["--lr", "nan"], "--lr must be a finite number > 0"),
])
def test_pretraining_flags_are_checked_first(tiny_data_root, tmp_path, flags, message):
    with pytest.raises(SystemExit, match=message):
        train_crossmodal.main(_argv(tiny_data_root, tmp_path, "bad", *flags))
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("flags, message", [
    (["--lr", "inf"], "--lr must be a finite number > 0"),
    (["--lr", "nan", "--optimizer", "sgd"], "--lr must be a finite number > 0"),
    (["--num_points", "0"], "--num_points must be at least 1"),
    (["--label_smoothing", "1"], r"--label_smoothing must be in \[0, 1\)"),
])
def test_partseg_flags_are_checked_first(tiny_data_root, tmp_path, flags, message):
    with pytest.raises(SystemExit, match=message):
        train_partseg.main(["--data_root", str(tiny_data_root), "--output_dir", str(tmp_path), "--exp_name", "bad",
                            "--preset", "tiny", *flags])
    assert not (tmp_path / "bad").exists()


# ----------------------------------------------------------------------------------------------
# Resume: clear errors, consistent logs, stale temporary files removed
# ----------------------------------------------------------------------------------------------


def test_resume_with_other_model_settings_names_them(tiny_data_root, tmp_path):
    train_crossmodal.main(_argv(tiny_data_root, tmp_path, "r", "--epochs", "2", "--stop_after", "1"))
    state = tmp_path / "r" / "checkpoints" / "training_state_last.pt"
    with pytest.raises(SystemExit) as info:
        train_crossmodal.main(_argv(tiny_data_root, tmp_path, "r", "--epochs", "2", "--emb_dims", "32",
                                    "--resume", str(tmp_path / "r")))
    msg = str(info.value)
    assert str(state) in msg and "emb_dims: saved 64, requested 32" in msg and "size mismatch" not in msg


def test_resume_from_a_corrupt_state_is_one_clear_line(tiny_data_root, tmp_path):
    train_crossmodal.main(_argv(tiny_data_root, tmp_path, "c", "--epochs", "2", "--stop_after", "1"))
    state = tmp_path / "c" / "checkpoints" / "training_state_last.pt"
    state.write_bytes(os.urandom(4096))
    with pytest.raises(SystemExit) as info:
        train_crossmodal.main(_argv(tiny_data_root, tmp_path, "c", "--epochs", "2", "--resume", str(tmp_path / "c")))
    msg = str(info.value)
    assert str(state) in msg and len(msg.splitlines()) == 1
    assert "weights_only=False" not in msg and "set to `False`" not in msg


def test_eval_cli_on_random_bytes_is_one_clear_line(tmp_path, repo_root, tiny_data_root):
    bad = tmp_path / "random.pth"
    bad.write_bytes(os.urandom(4096))
    proc = subprocess.run([sys.executable, "eval_svm.py", "--model_path", str(bad), "--data_root",
                           str(tiny_data_root), "--device", "cpu"], cwd=repo_root, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(bad) in lines[0] and "Traceback" not in proc.stderr
    assert "weights_only=False" not in proc.stderr and "set to `False`" not in proc.stderr


def test_logs_match_the_history_after_a_kill_and_resume(tiny_data_root, tmp_path, monkeypatch):
    """A kill after an epoch was logged but before its checkpoint: the resumed run redoes the epoch, and the
    logs hold each step and epoch record exactly once, like an uninterrupted run."""
    import util.run

    train_crossmodal.main(_argv(tiny_data_root, tmp_path, "whole", "--epochs", "3"))
    real_save = util.run.save_training_state

    def killed_during_epoch_1(path, **kwargs):
        if kwargs["epoch"] == 1:
            raise KeyboardInterrupt  # what a SIGINT / kill looks like at this point
        real_save(path, **kwargs)

    monkeypatch.setattr(util.run, "save_training_state", killed_during_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        train_crossmodal.main(_argv(tiny_data_root, tmp_path, "cut", "--epochs", "3"))
    monkeypatch.setattr(util.run, "save_training_state", real_save)
    assert "epoch 1:" in (tmp_path / "cut" / "log.txt").read_text()  # logged, but never checkpointed
    train_crossmodal.main(_argv(tiny_data_root, tmp_path, "cut", "--epochs", "3", "--resume", str(tmp_path / "cut")))

    def shape(run_dir):
        return [(r["step"], sorted(k for k in r if "per_s" not in k and "time_s" not in k))
                for r in _records(run_dir)]

    assert shape(tmp_path / "cut") == shape(tmp_path / "whole")
    epochs = [r["epoch/epoch"] for r in _records(tmp_path / "cut") if "epoch/epoch" in r]
    assert epochs == [0, 1, 2]
    log = (tmp_path / "cut" / "log.txt").read_text()
    assert [log.count(f"epoch {e}: ") for e in range(3)] == [1, 1, 1]
    assert "Removed" in log and "after its last checkpoint (epoch 0)" in log


def test_partial_tmp_files_of_a_killed_run_are_removed(tiny_data_root, tmp_path):
    train_crossmodal.main(_argv(tiny_data_root, tmp_path, "t", "--epochs", "2", "--stop_after", "1"))
    stale = tmp_path / "t" / "checkpoints" / ".training_state_last.pt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    train_crossmodal.main(_argv(tiny_data_root, tmp_path, "t", "--epochs", "2", "--resume", str(tmp_path / "t")))
    assert not stale.exists()
    assert f"Removed {stale}" in (tmp_path / "t" / "log.txt").read_text()


def test_save_every_keeps_the_original_epochs(tiny_data_root, tmp_path):
    """The original saved ckpt_epoch_{epoch}.pth when epoch % save_freq == 0 (0-based epochs)."""
    train_crossmodal.main(_argv(tiny_data_root, tmp_path, "s", "--epochs", "3", "--save_every", "2"))
    ckpt = tmp_path / "s" / "checkpoints"
    assert sorted(p.name for p in ckpt.glob("point_encoder_epoch*.pth")) == ["point_encoder_epoch0.pth",
                                                                             "point_encoder_epoch2.pth"]


# ----------------------------------------------------------------------------------------------
# A full disk
# ----------------------------------------------------------------------------------------------


class _FullDiskFile:
    """A binary file whose writes fail with ENOSPC after ``room`` bytes (like a nearly full disk)."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_atomic_save_on_a_full_disk_names_the_path_and_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "w.pth"
    atomic_torch_save({"a": torch.ones(3)}, path)
    before = path.read_bytes()
    real_fdopen = os.fdopen
    monkeypatch.setattr(fileio.os, "fdopen", lambda fd, mode: _FullDiskFile(real_fdopen(fd, mode), room=100))
    with pytest.raises(DiskFullError, match=f"no space left on the device holding {path}"):
        atomic_torch_save({"a": torch.ones(10_000)}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pth"]


def _mount_tmpfs(path, size):
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.mark.slow
def test_training_on_a_full_disk_stops_clearly_and_keeps_the_last_state(tiny_data_root, tmp_path):
    """A real small file system (tmpfs; needs root): epoch 0 is saved, then the disk is filled."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "8m"):
        pytest.skip("cannot mount a tmpfs here (needs root and mount)")
    try:
        train_crossmodal.main(_argv(tiny_data_root, disk, "full", "--epochs", "2", "--stop_after", "1"))
        ckpt = disk / "full" / "checkpoints"
        state_before = (ckpt / "training_state_last.pt").read_bytes()
        # Leave 16 kB: enough for log lines, not for a checkpoint.
        (disk / "filler").write_bytes(b"\0" * max(shutil.disk_usage(disk).free - 16 * 1024, 0))
        with pytest.raises(SystemExit) as info:
            train_crossmodal.main(_argv(tiny_data_root, disk, "full", "--epochs", "2", "--resume", str(disk / "full")))
        msg = str(info.value)
        assert "no space left on the device holding" in msg and str(ckpt) in msg
        assert "inline_container" not in msg and "is intact" in msg
        assert (ckpt / "training_state_last.pt").read_bytes() == state_before
        assert not list(ckpt.glob(".*.tmp"))
        assert torch.load(ckpt / "training_state_last.pt", weights_only=True)["epoch"] == 0
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_truncated_renderings_load_and_are_counted_in_the_epoch_log(tiny_data_root, tmp_path):
    """As the original (PIL's LOAD_TRUNCATED_IMAGES), a rendering cut short still trains; the epoch log counts it."""
    root = tmp_path / "data"
    shutil.copytree(tiny_data_root, root)
    for png in (root / "ShapeNetRendering").rglob("*.png"):
        data = png.read_bytes()
        png.write_bytes(data[: len(data) * 2 // 3])
    argv = ["--data_root", str(root), "--output_dir", str(tmp_path), "--exp_name", "trunc", "--preset", "tiny",
            "--probe_dataset", "none", "--max_steps_per_epoch", "1", "--batch_size", "4", "--num_workers", "0",
            "--no_progress", "--epochs", "1"]
    with pytest.warns(UserWarning, match="truncated"):
        summary = train_crossmodal.main(argv)
    loads = summary["history"][0]["truncated_image_loads"]
    assert loads >= 4  # every view is truncated: at least one batch of 4 objects was loaded
    assert f"{loads} load(s) of truncated renderings" in (tmp_path / "trunc" / "log.txt").read_text()


# ----------------------------------------------------------------------------------------------
# A run that fails before its first checkpoint leaves nothing behind (issue 24)
# ----------------------------------------------------------------------------------------------


def test_too_few_samples_for_a_batch_is_one_line_and_leaves_no_run_directory(tiny_data_root, tmp_path):
    out = tmp_path / "runs"
    with pytest.raises(SystemExit, match=r"has \d+ \w+, fewer than --batch_size 100000"):
        train_partseg.main(["--data_root", str(tiny_data_root), "--output_dir", str(out), "--exp_name", "big",
                            "--preset", "tiny", "--num_workers", "0", "--no_progress", "--batch_size", "100000"])
    assert not out.exists()  # the run directory and the output folder this invocation made are gone
    # A directory that existed before is never deleted, even when it held nothing.
    (out / "kept").mkdir(parents=True)
    with pytest.raises(SystemExit, match="fewer than --batch_size"):
        train_crossmodal.main(_argv(tiny_data_root, out, "kept", "--batch_size", "100000"))
    assert (out / "kept").is_dir()


def test_a_failure_before_the_first_checkpoint_removes_the_new_run_directory(tiny_data_root, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("train/loss")

    monkeypatch.setattr(train_crossmodal, "train_one_epoch", broken)
    with pytest.raises(KeyError):
        train_crossmodal.main(_argv(tiny_data_root, tmp_path, "early", "--epochs", "2"))
    assert not (tmp_path / "early").exists()
    monkeypatch.undo()
    # After its first checkpoint a failing run keeps its directory (--resume continues it).
    train_crossmodal.main(_argv(tiny_data_root, tmp_path, "late", "--epochs", "1"))
    monkeypatch.setattr(train_crossmodal, "train_one_epoch", broken)
    with pytest.raises(KeyError), pytest.warns(UserWarning, match=r"'epochs': \(1, 2\)"):
        train_crossmodal.main(_argv(tiny_data_root, tmp_path, "late", "--epochs", "2", "--resume", "auto"))
    assert (tmp_path / "late" / "checkpoints" / "training_state_last.pt").is_file()


def test_wandb_online_without_a_login_is_refused_before_the_run_directory(tiny_data_root, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
    with pytest.raises(SystemExit, match=r"--wandb online needs a wandb login .*wandb login"):
        train_crossmodal.main(_argv(tiny_data_root, tmp_path / "runs", "w", "--wandb", "online"))
    assert not (tmp_path / "runs").exists()
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "a" * 40 + "\n")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    from util.logger import wandb_login_problem

    assert wandb_login_problem("online") is None and wandb_login_problem("offline") is None


def test_extending_a_cleanly_resumed_run_cuts_nothing_from_the_logs(tiny_data_root, tmp_path):
    """A clean invocation after the last checkpoint ("Nothing to do") logs lines a later resume must keep."""
    run = tmp_path / "done"
    train_crossmodal.main(_argv(tiny_data_root, tmp_path, "done", "--epochs", "1"))
    train_crossmodal.main(_argv(tiny_data_root, tmp_path, "done", "--epochs", "1", "--resume", str(run)))
    before = (run / "log.txt").read_text()
    assert "Nothing to do" in before
    with pytest.warns(UserWarning, match=r"'epochs': \(1, 2\)"):
        train_crossmodal.main(_argv(tiny_data_root, tmp_path, "done", "--epochs", "2", "--resume", str(run)))
    log = (run / "log.txt").read_text()
    assert log.startswith(before) and "Removed" not in log
