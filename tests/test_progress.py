"""util/progress.py: a tqdm bar on a terminal, a few plain lines (never a redraw) in a log, in every command."""

import io
import subprocess
import sys
import time

import pytest
import torch
from tqdm import tqdm

import util.progress as progress_mod
from datasets.making.parallel import Runner
from evaluation.features import extract_features
from util.progress import LineProgress, progress_bar
from epoch_loop import train_one_epoch  # tests/epoch_loop.py


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lines_come_at_the_rarer_of_the_interval_and_the_fraction(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_mod.time, "monotonic", clock)
    out = io.StringIO()
    bar = LineProgress(total=1000, desc="epoch 3", unit="step", file=out, interval_s=30, fraction=0.1)
    for _ in range(1000):  # 1 s per step: 10% (100 steps, 100 s) is rarer than 30 s
        clock.now += 1.0
        bar.update(1)
    bar.set_postfix({"loss": "0.5000"}, refresh=False)
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 11, lines
    assert lines[0] == "epoch 3: 100/1000 step (10%), 01:40 elapsed, about 15:00 left"
    assert lines[-1] == "epoch 3: 1000/1000 step (100%), 16:40 elapsed, done [loss=0.5000]"

    out = io.StringIO()
    bar = LineProgress(total=1000, file=out, interval_s=30, fraction=0.1)
    for _ in range(1000):  # 0.01 s per step: 30 s (3000 steps) never comes, and a 10 s loop prints nothing
        clock.now += 0.01
        bar.update(1)
    bar.close()
    assert out.getvalue() == ""

    out = io.StringIO()
    for _ in LineProgress(iter(range(100)), desc="read", file=out, interval_s=30):  # unknown total: time only
        clock.now += 1.0
    assert out.getvalue().splitlines() == ["read: 30 it, 00:30 elapsed", "read: 60 it, 01:00 elapsed",
                                           "read: 90 it, 01:30 elapsed", "read: 100 it, 01:40 elapsed, done"]


def test_a_terminal_gets_the_tqdm_bar_anything_else_plain_lines_or_nothing():
    terminal = Terminal()
    bar = progress_bar(range(3), desc="x", file=terminal)
    assert isinstance(bar, tqdm) and list(bar) == [0, 1, 2]
    assert "\r" in terminal.getvalue()  # today's bar, redrawn in place
    log = io.StringIO()
    bar = progress_bar(range(3), desc="x", file=log)
    assert isinstance(bar, LineProgress) and list(bar) == [0, 1, 2] and log.getvalue() == ""
    for stream in (terminal, log):  # --no_progress / --quiet: nothing anywhere
        before = stream.getvalue()
        bar = progress_bar(total=3, desc="x", enabled=False, file=stream)
        bar.update(3)
        bar.close()
        assert stream.getvalue() == before


def _train_epoch(steps: int) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    batches = [torch.randn(4, 3) for _ in range(steps)]

    def step_fn(batch):
        time.sleep(0.01)  # a step long enough for tqdm to redraw (its minimum interval is 0.1 s)
        return model(batch).pow(2).mean(), {}

    train_one_epoch(step_fn, batches, optimizer, torch.device("cpu"), epoch=0, log_every=0, progress=True)


def test_training_and_data_tools_write_no_redraws_when_stderr_is_not_a_terminal(capsys, monkeypatch):
    """pytest's captured stderr is not a terminal, like a SLURM or nohup log."""
    _train_epoch(40)
    Runner(1, True).map(abs, list(range(-30, 0)), "tasks")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(4))
    model(torch.zeros(1, 3 * 8))
    extract_features(model, [(torch.zeros(2, 8, 3), torch.zeros(2))] * 20, "cpu", progress=True, desc="features")
    assert capsys.readouterr().err == ""  # every loop here is shorter than the 30 s between lines
    monkeypatch.setattr(progress_mod, "LINE_INTERVAL_S", 0.0)  # now only the 10% rule paces the lines
    _train_epoch(40)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and 1 <= len(lines) <= 11 and all(ln.startswith("epoch 0: ") for ln in lines), lines
    assert lines[-1].startswith("epoch 0: 40/40 it (100%)")


@pytest.mark.slow
def test_a_command_logging_to_a_file_holds_no_redraws(tmp_path):
    """``python -m datasets.synthetic`` (progress on by default) with stderr in a file."""
    log = tmp_path / "stderr.log"
    with open(log, "w") as f:
        out = subprocess.run([sys.executable, "-m", "datasets.synthetic", "--root", str(tmp_path / "data"),
                              "--preset", "tiny", "--only", "modelnet40", "--workers", "1"], stderr=f,
                             stdout=subprocess.DEVNULL, timeout=300, cwd=progress_mod.__file__.rsplit("/util/", 1)[0])
    assert out.returncode == 0, log.read_text()
    text = log.read_text()
    assert "\r" not in text and "modelnet40/" not in text, text  # no bar lines (the loops are < 30 s)
