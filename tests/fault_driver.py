"""Runs ``emoclf`` in a child process with a fault point, for tests that kill or signal it there.

Usage: ``python fault_driver.py FAULT READY_FILE emoclf-args...``. When the child reaches the
fault point it creates READY_FILE; the test then acts (SIGKILL, SIGTERM, killing a server).

- ``none``: no fault point.
- ``hang-in-second-save``: the second checkpoint save blocks after the weights and optimizer are
  written but before the trainer state, as a slow disk would; the test SIGKILLs it there.
- ``slow-after-first-save``: after the first checkpoint, every step takes a second, so a signal
  reliably arrives mid-epoch.
- ``hang-in-second-trial``: ``emoclf tune``'s second trial blocks once its training has started
  (its MLflow run open), after the first trial finished; the test SIGKILLs it there.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from emoclf.cli import main
from emoclf.trainer import EmoclfTrainer as CheckpointingTrainer

fault, ready = sys.argv[1], Path(sys.argv[2])
calls = {"rng": 0, "saves": 0, "fits": 0}

if fault == "hang-in-second-save":
    save_rng_state = CheckpointingTrainer._save_rng_state

    def _hang_on_second(self, output_dir):
        calls["rng"] += 1
        if calls["rng"] == 2:
            ready.touch()
            time.sleep(3600)
        save_rng_state(self, output_dir)

    CheckpointingTrainer._save_rng_state = _hang_on_second
elif fault == "slow-after-first-save":
    save_checkpoint, training_step = CheckpointingTrainer._save_checkpoint, CheckpointingTrainer.training_step

    def _count_saves(self, model, trial):
        save_checkpoint(self, model, trial)
        calls["saves"] += 1

    def _slow_step(self, *args, **kwargs):
        if calls["saves"]:
            ready.touch()
            time.sleep(1.0)
        return training_step(self, *args, **kwargs)

    CheckpointingTrainer._save_checkpoint, CheckpointingTrainer.training_step = _count_saves, _slow_step
elif fault == "hang-in-second-trial":
    from emoclf import training

    fit = training._fit

    def _hang_in_second(*args, **kwargs):
        calls["fits"] += 1
        if calls["fits"] == 2:
            ready.touch()
            time.sleep(3600)
        return fit(*args, **kwargs)

    training._fit = _hang_in_second
elif fault != "none":
    raise SystemExit(f"unknown fault {fault!r}")

sys.exit(main(sys.argv[3:]))
