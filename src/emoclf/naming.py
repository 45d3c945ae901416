"""How a report, a model card, an MLflow run or a page names a data file or a model folder: relatively or
symbolically, never by a local absolute path. A leaf (it imports only ``config``), so that ``emoclf serve``
names its model without importing the data modules.
"""

from __future__ import annotations

import os
from pathlib import Path

from emoclf.config import DEMO_SOURCE, HF_PREFIX, MLFLOW_SCHEMES


def source_name(source: str | Path) -> str:
    """How a model card, a report or a page names a data file or a model folder: Hugging Face ids, MLflow URIs
    and relative paths as given; an absolute path relative to the working folder when it lies below, else by
    its last two parts (``emotion/train.txt``): an absolute path says where a file lay on one machine, not what
    it is."""
    text = str(source)
    if text.startswith(HF_PREFIX):
        return HF_PREFIX + source_name(text[len(HF_PREFIX) :])
    path = Path(text)
    if text.startswith(MLFLOW_SCHEMES) or text == DEMO_SOURCE or not (path.is_absolute() or ".." in path.parts):
        return text
    path = Path(os.path.abspath(text))
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(Path(path.parent.name, path.name))
