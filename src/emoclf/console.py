"""What a person at the terminal sees: results on stdout, emoclf's few status lines and short-lived
progress bars on stderr, and library chatter only when asked for (``-v``) or in a run's log file.

``configure`` is called once by the CLI after its flags are parsed and before any heavy library is
imported: transformers, huggingface_hub, datasets and MLflow read their verbosity and progress-bar
switches from the environment when they are imported. Library code only logs and asks
``progress``/``status`` for bars, which show on a terminal after ``DELAY`` seconds and vanish when
done, so a quick step leaves no trace; never where stderr is not a terminal (a pipe, a log file). Without
``configure`` (the Python API) bars show on a terminal too, and logging is the caller's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from pathlib import Path

QUIET, NORMAL, VERBOSE, DEBUG = 0, 1, 2, 3
DELAY = 2.0  # seconds before a bar appears: steps shorter than that show nothing
LIBRARIES = (
    "transformers",
    "datasets",
    "mlflow",
    "alembic",
    "urllib3",
    "httpx",
    "matplotlib",
    "PIL",
    "py.warnings",
    "huggingface_hub",
    "filelock",
    "accelerate",
    "torch",
)
# Switches the libraries read at import time; a value the user set already wins.
QUIET_LIBRARIES = {
    "TRANSFORMERS_VERBOSITY": "error",  # the load report of a fresh classification head, deprecation notes
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Loading weights" and "Writing model shards" bars
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Once imported, these print through a stderr handler of their own (and some stop propagation).
OWN_HANDLERS = ("transformers", "huggingface_hub", "mlflow", "alembic")
# Log with extra=FILE_ONLY what the default terminal shows otherwise (the training bar carries each epoch's
# scores): it goes to a run's log file and shows with -v.
FILE_ONLY = {"terminal": False}

_bars = True
_handler: logging.Handler | None = None
_verbosity = NORMAL


class _Console(logging.StreamHandler):
    """Writes above any progress bar on screen (tqdm.write), so a log line never breaks a bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


class _Plain(logging.Formatter):
    """``message`` for information, ``warning: message`` for warnings and errors."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"


SHOWN = ("emoclf", "uvicorn")  # uvicorn's start line and access log are what `emoclf serve` reports


class _OursOrSerious(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ours = record.name.split(".")[0] in SHOWN and getattr(record, "terminal", True)
        return ours or record.levelno >= logging.ERROR


def configure(verbosity: int = NORMAL) -> None:
    """Set what the terminal shows. QUIET: results and errors. NORMAL: also emoclf's status lines and
    bars. VERBOSE: also library warnings, bars and load reports. DEBUG: everything, timestamped."""
    global _bars, _handler, _verbosity
    _verbosity = verbosity
    if verbosity < VERBOSE:
        for name, value in QUIET_LIBRARIES.items():
            os.environ.setdefault(name, value)
    # MLflow then leaves its loggers to propagate here instead of printing through its own handler.
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    _bars = verbosity > QUIET and sys.stderr.isatty()
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = _Console(sys.stderr)
    _handler.setLevel({QUIET: logging.ERROR, NORMAL: logging.INFO, VERBOSE: logging.INFO}.get(verbosity, logging.DEBUG))
    _handler.setFormatter(logging.Formatter(FILE_FORMAT, "%H:%M:%S") if verbosity >= DEBUG else _Plain())
    if verbosity < VERBOSE:
        _handler.addFilter(_OursOrSerious())
    root.addHandler(_handler)
    root.setLevel(logging.DEBUG if verbosity >= DEBUG else logging.INFO)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity >= DEBUG else logging.WARNING)
    _adopt_libraries()
    logging.captureWarnings(True)  # warnings.warn from libraries become records of "py.warnings"


def verbosity() -> int:
    """The verbosity ``configure`` last set: what a server's worker processes configure in turn."""
    return _verbosity


def _adopt_libraries() -> list[tuple]:
    """Hand the records of the OWN_HANDLERS libraries already imported to the root logger, where the
    terminal's filter and a run's log file see them; returns what to restore."""
    saved = []
    for name in OWN_HANDLERS:
        if name in sys.modules:
            logger = logging.getLogger(name)
            saved.append((logger, list(logger.handlers), logger.propagate, logger.level))
            logger.handlers = [h for h in logger.handlers if type(h) is not logging.StreamHandler]
            logger.propagate = True
            if logger.getEffectiveLevel() > logging.WARNING:  # TRANSFORMERS_VERBOSITY=error: for the file only
                logger.setLevel(logging.WARNING)
    return saved


def bars_enabled() -> bool:
    return _bars


def progress(iterable=None, *, desc: str, total: int | None = None, unit: str = "it", enabled: bool = True, **kwargs):
    """A tqdm bar that appears after ``DELAY`` seconds and is erased when done (``leave=False``); only on a
    terminal (tqdm's ``disable=None``): a log file or a pipe never gets a bar's carriage returns."""
    from tqdm.auto import tqdm

    return tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        leave=False,
        delay=DELAY,
        dynamic_ncols=True,
        disable=None if enabled and _bars else True,
        **kwargs,
    )


@contextlib.contextmanager
def status(desc: str, enabled: bool = True):
    """``desc`` and the seconds elapsed, on one line, while a step with no countable parts (loading a
    model, importing torch) runs for more than ``DELAY`` seconds; erased when it ends."""
    bar = progress(desc=desc, enabled=enabled, bar_format="{desc} {elapsed}")
    stop = threading.Event()

    def tick() -> None:
        if stop.wait(DELAY):
            return
        while not stop.wait(0.5):
            bar.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    if not bar.disable:
        ticker.start()
    try:
        yield bar
    finally:
        stop.set()
        if ticker.is_alive():
            ticker.join()
        bar.close()


@contextlib.contextmanager
def log_file(path: str | Path):
    """Everything logged while the block runs (emoclf from INFO, libraries' warnings) appended to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    handler.setLevel(logging.INFO)
    ours = logging.getLogger("emoclf")
    previous = ours.level
    if ours.getEffectiveLevel() > logging.INFO:
        ours.setLevel(logging.INFO)
    libraries = _adopt_libraries()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()
        ours.setLevel(previous)
        for logger, handlers, propagate, level in libraries:
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)
