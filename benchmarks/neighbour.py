"""The neighbour every benchmark of work beside other work uses: a one-core busy loop this process starts and stops."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time


@contextlib.contextmanager
def busy_loop():
    """A Python process spinning on one core (``while True: pass``) for the duration of the block."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.2)  # running before the timed work starts
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()
