"""Data loading, validation and profiling: ``load_data`` turns any source into checked splits."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from emoclf.config import DataConfig
from emoclf.data.io import read_file, read_source
from emoclf.data.validate import (
    DataReport,
    check_duplicates,
    check_evaluation_classes,
    check_leakage,
    check_train_covers,
    drop_empty_texts,
    normalise_labels,
    split_missing,
    subsample,
)
from emoclf.preprocess import Preprocessor

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


@dataclass
class PreparedData:
    """Train/validation/test frames (``text`` preprocessed, ``raw_text`` as read, ``label_id``) and labels."""

    splits: dict[str, pd.DataFrame]
    labels: list[str]
    report: DataReport

    @property
    def label2id(self) -> dict[str, int]:
        return {lab: i for i, lab in enumerate(self.labels)}


def load_data(cfg: DataConfig, preprocessor: Preprocessor | None = None) -> PreparedData:
    """Read, clean, check and split the data named by ``cfg``; see ``DataReport`` for what was dropped."""
    preprocessor = preprocessor or Preprocessor()
    splits, names = read_source(cfg)
    for split, path in (("validation", cfg.val_data), ("test", cfg.test_data)):
        if path:
            splits[split] = read_file(path, cfg)
    report = DataReport(rows_read={k: len(v) for k, v in splits.items()})
    for df in splits.values():
        df["raw_text"] = df["text"]
        df["text"] = [preprocessor(t) if isinstance(t, str) else t for t in df["text"]]
    drop_empty_texts(splits, cfg, report)
    labels = normalise_labels(splits, names)
    check_duplicates(splits, cfg, report)
    split_missing(splits, cfg, report)
    check_leakage(splits, cfg, report)
    if cfg.max_samples:
        splits["train"] = subsample(splits["train"], cfg.max_samples, cfg.split_seed)
    check_train_covers(splits["train"], labels)
    check_evaluation_classes(splits, labels, report)
    label2id = {lab: i for i, lab in enumerate(labels)}
    ordered = {}
    for split in SPLITS:
        df = splits[split].reset_index(drop=True)
        df["label_id"] = df["label"].map(label2id).astype(int)
        ordered[split] = df
    log.info("splits: %s", {k: len(v) for k, v in ordered.items()})
    return PreparedData(ordered, labels, report)


__all__ = ["PreparedData", "load_data", "read_file", "read_source", "SPLITS"]
