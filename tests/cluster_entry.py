"""Entry point of the cluster tests: a training script's main with a fault injected at a chosen step.

    python tests/cluster_entry.py train_crossmodal ARGS...          (or under torchrun)

``CLUSTER_FAULT="KIND:RANK:EPOCH:STEP"`` injects, on rank RANK, in step STEP (0-based) of epoch EPOCH, after its
forward pass and before its update (when the script hands the step's loss to ``EpochMeter.update``):

- ``term``: SIGTERM to this process (what SLURM and scancel send), so the step runs with the signal noted;
- ``die``: ``os._exit(1)`` (a crashed worker), only on torchrun's first attempt (TORCHELASTIC_RESTART_COUNT
  unset or 0), so a restarted job runs clean.

Without CLUSTER_FAULT the script runs unchanged.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import util.epoch  # noqa: E402  (after the repository root is on the path)


def _inject(kind: str, rank: int, epoch: int, step: int) -> None:
    """Wrap EpochMeter.update so that the fault fires at (rank, epoch, step)."""
    if int(os.environ.get("RANK", "0")) != rank:
        return
    if kind == "die" and int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) != 0:
        return
    real = util.epoch.EpochMeter.update

    def update(self, at_step, loss, metrics, batch_size):
        if self.epoch == epoch and at_step == step:
            if kind == "term":
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                os._exit(1)
        return real(self, at_step, loss, metrics, batch_size)

    util.epoch.EpochMeter.update = update


def main() -> None:
    fault = os.environ.get("CLUSTER_FAULT")
    if fault:
        kind, rank, epoch, step = fault.split(":")
        _inject(kind, int(rank), int(epoch), int(step))
    script = importlib.import_module(sys.argv[1])
    script.main(sys.argv[2:])


if __name__ == "__main__":
    main()
