"""Labelled texts to score a saved model on: the test split of a folder, or every row of a file.

The labels are mapped onto the model's own classes; a label the model does not know is refused
by name rather than silently counted as an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emoclf.config import DataConfig
from emoclf.data.io import read_source
from emoclf.data.validate import DataReport, drop_empty_texts
from emoclf.errors import DataError


@dataclass
class LabelledTexts:
    texts: list[str]
    y_true: np.ndarray
    source: str
    split: str


def read_labelled(cfg: DataConfig, labels: list[str]) -> LabelledTexts:
    """Raw texts (the model applies its own preprocessing) and label ids in ``labels`` order."""
    splits, _ = read_source(cfg)
    split = "test" if "test" in splits else "train"
    frame = {"eval": splits[split]}
    drop_empty_texts(frame, cfg, DataReport())
    df = frame["eval"]
    source = str(df.attrs.get("source", cfg.data))
    df["label"] = df["label"].astype(str).str.strip()
    unknown = sorted(set(df["label"]) - set(labels))
    if unknown:
        raise DataError(f"{source}: label(s) {', '.join(map(repr, unknown))} are not among the "
                        f"model's labels ({', '.join(labels)})")
    y_true = df["label"].map({lab: i for i, lab in enumerate(labels)}).to_numpy()
    return LabelledTexts(df["text"].tolist(), y_true, source, split)
