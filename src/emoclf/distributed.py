"""Which process this is under torchrun or ``accelerate launch``: the one place that asks.

Every rank runs the same training; rank 0 alone writes files, tracks and evaluates. The launchers set ``RANK``
before Python starts, so the question is answered without initialising a process group (which the Trainer does
later, with its own settings).
"""

from __future__ import annotations

import os


def is_main_process() -> bool:
    """Rank 0 under torchrun/accelerate, or a single process: the one that writes and logs."""
    return int(os.environ.get("RANK", "0")) == 0


def wait_for_everyone() -> None:
    """A barrier across the ranks (accelerate's, a no-op in a single process): what rank 0 wrote is there after it."""
    from accelerate import PartialState

    PartialState().wait_for_everyone()
