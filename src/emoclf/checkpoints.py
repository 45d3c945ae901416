"""A training's folder and its checkpoints: one training at a time in it, which checkpoint to resume from, and
what a fresh start may replace.

Checkpoints appear only when complete (the trainer writes them to ``STAGING_DIR`` and renames them);
``latest_checkpoint`` skips anything else. A finished or unfinished training is replaced only on
request (``overwrite``), and a fresh start clears every file an earlier run wrote, so that no
file in the folder names another run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from transformers.trainer import OPTIMIZER_NAME, TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from emoclf.config import Config
from emoclf.errors import ConfigError
from emoclf.layout import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    ENVIRONMENT_FILE,
    FAILURES_FILE,
    LOCK_FILE,
    LOG_FILE,
    MODEL_DIR,
    OWNER_FILE,
    REPORT_DIR,
    RUN_INFO_FILE,
    STAGED_MODEL_DIR,
    STAGING_DIR,
    WEIGHTS_FILE,
)

log = logging.getLogger(__name__)


@contextlib.contextmanager
def output_lock(out: Path):
    """One training at a time in ``out``: a second one is refused, naming the folder and the process holding it.

    The kernel releases the lock when its holder ends, however it ends (``kill -9`` included), so a lock left
    by a killed training never blocks the next one.
    """
    from filelock import FileLock, Timeout

    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(out / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ConfigError(
            f"{out} is in use by another training ({lock_holder(out)}); wait for it to end, or choose another "
            "--output-dir"
        ) from None
    try:
        owner = out / OWNER_FILE
        tmp = owner.with_name(f"{OWNER_FILE}.{os.getpid()}")
        since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        tmp.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}))
        os.replace(tmp, owner)
        yield
    finally:
        (out / OWNER_FILE).unlink(missing_ok=True)
        lock.release()


def lock_holder(out: Path) -> str:
    """``PID 123 on host h since 2026-12-03T12:00:00+00:00``, as the holder of ``out``'s lock wrote it."""
    try:
        owner = json.loads((out / OWNER_FILE).read_text())
        return f"PID {owner['pid']} on host {owner['host']} since {owner['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not said which yet"


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint in ``folder``; damaged or foreign ones are skipped with a warning."""
    steps = {}
    for path in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        match = re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", path.name)
        if match and path.is_dir():
            steps[path] = int(match[1])
    for path in sorted(steps, key=steps.get, reverse=True):
        try:
            state = json.loads((path / TRAINER_STATE_NAME).read_text())
            complete = (
                state["global_step"] == steps[path]
                and (path / WEIGHTS_FILE).is_file()
                and (path / OPTIMIZER_NAME).is_file()
            )
        except (OSError, ValueError, KeyError, TypeError):
            complete = False
        if complete:
            return path
        log.warning("skipping incomplete checkpoint %s", path)
    return None


def prepare_output(out: Path, resume: bool, overwrite: bool) -> Path | None:
    """The checkpoint to resume from; a fresh start first makes sure it replaces nothing by surprise.

    A finished training (a model folder) is replaced only with ``overwrite``, and so is an
    unfinished one (checkpoints newer than any model), which ``resume`` would continue. A fresh
    start then clears every file an earlier run wrote there, so that no file names another run.
    """
    folder = out / CHECKPOINT_DIR
    shutil.rmtree(folder / STAGING_DIR, ignore_errors=True)  # a save cut short by a crash
    shutil.rmtree(out / STAGED_MODEL_DIR, ignore_errors=True)  # an evaluation cut short
    newest = latest_checkpoint(folder) if folder.is_dir() else None
    if resume:
        if newest is None:
            log.warning("no complete checkpoint in %s: training from the start", folder)
        else:
            log.info("resuming from %s", newest)
        return newest
    if not overwrite:
        weights = out / MODEL_DIR / WEIGHTS_FILE
        if newest is not None and (not weights.is_file() or weights.stat().st_mtime < newest.stat().st_mtime):
            raise ConfigError(
                f"{folder} holds checkpoints of an unfinished training (newest: {newest.name}): "
                "pass --resume to continue it, --overwrite to start afresh, or another --output-dir"
            )
        if (out / MODEL_DIR).exists():
            run = recorded_run(out)
            raise ConfigError(
                f"{out} holds a finished training ({MODEL_DIR}/{run}); pass --overwrite to replace "
                "it, or choose another --output-dir"
            )
    for name in (MODEL_DIR, REPORT_DIR, CHECKPOINT_DIR):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (RUN_INFO_FILE, FAILURES_FILE, ENVIRONMENT_FILE, CONFIG_FILE, LOG_FILE):
        (out / name).unlink(missing_ok=True)
    return None


def recorded_run(out: Path) -> str:
    try:
        return f", MLflow run {json.loads((out / RUN_INFO_FILE).read_text())['run_id']}"
    except (OSError, ValueError, KeyError):
        return ""


def resume_config(run_dir: str | Path, overrides: dict[str, Any], config_file: str | None = None) -> Config:
    """The config of the training in ``run_dir`` (its saved ``config.yaml``, unless ``config_file`` is
    given), with ``overrides`` (the flags given now) on top, and ``output_dir`` set to ``run_dir``."""
    saved = Path(run_dir) / CONFIG_FILE
    base = Config.from_yaml(config_file or saved) if config_file or saved.is_file() else Config()
    return base.replace(**{**overrides, "output_dir": str(run_dir)})
