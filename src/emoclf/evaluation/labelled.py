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
from emoclf.preprocess import Preprocessor


@dataclass
class LabelledTexts:
    texts: list[str]
    y_true: np.ndarray
    source: str
    split: str


def read_labelled(cfg: DataConfig, labels: list[str], preprocessor: Preprocessor | None = None) -> LabelledTexts:
    """Raw texts (the model applies its own preprocessing) and label ids in ``labels`` order.

    Texts that are empty, or that ``preprocessor`` (the model's) leaves empty, cannot be scored:
    they are dropped and counted, as training's validation does.
    """
    splits, _ = read_source(cfg)
    split = "test" if "test" in splits else "all rows"
    df = splits.get("test", splits["train"])
    if preprocessor is not None:
        df["raw_text"] = df["text"]
        df["text"] = [preprocessor(t) if isinstance(t, str) else t for t in df["text"]]
    frame = {"eval": df}
    drop_empty_texts(frame, cfg, DataReport())
    df = frame["eval"]
    if preprocessor is not None:
        df["text"] = df["raw_text"]
    source = str(df.attrs.get("source", cfg.data))
    df["label"] = df["label"].astype(str).str.strip()
    unknown = sorted(set(df["label"]) - set(labels))
    if unknown:
        raise DataError(f"{source}: label(s) {', '.join(map(repr, unknown))} are not among the "
                        f"model's labels ({', '.join(labels)})")
    y_true = df["label"].map({lab: i for i, lab in enumerate(labels)}).to_numpy()
    return LabelledTexts(df["text"].tolist(), y_true, source, split)
