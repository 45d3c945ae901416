"""Labelled data in, checked splits out: ``load_data`` for training, ``load_labelled`` for scoring a model.

Both read with ``emoclf.data.io``, clean and check with the same steps (the preprocessing, empty
texts dropped and counted or refused, labels as class-name strings, or tuples of them for multi-label data:
``emoclf.data.labels``), and decide here, in one place, what the pure checks of ``emoclf.data.validate`` say to
drop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from emoclf.config import DEMO_DATA, DEMO_SOURCE, HF_PREFIX, DataConfig
from emoclf.data.io import data_name, read_file, read_label_names, read_source, with_label_names
from emoclf.data.issues import apply_label_issues, changed
from emoclf.data.labels import decide_task, describe, label_sets, map_labels
from emoclf.data.split import carve_missing, subsample
from emoclf.data.validate import (
    DataReport,
    absent_classes,
    check_train_covers,
    duplicates,
    each_label,
    empty_texts,
    label_order,
    label_strings,
    refuse_empty_texts,
    refuse_label_variants,
    refuse_unknown_labels,
    shared_texts,
    text_keys,
)
from emoclf.errors import DataError
from emoclf.naming import source_name
from emoclf.preprocess import Preprocessor
from emoclf.task import MULTI, SINGLE
from emoclf.taxonomy import place_labels, read_groups

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


@dataclass
class PreparedData:
    """Train/validation/test frames (``text`` preprocessed, ``raw_text`` as read, ``label`` and ``label_id``),
    the labels in the model's order, and the task: single-label (``label`` a class name, ``label_id`` its index)
    or multi-label (``label`` a tuple of names, ``label_id`` a 0/1 tuple over the labels)."""

    splits: dict[str, pd.DataFrame]
    labels: list[str]
    report: DataReport
    task: str = SINGLE
    label_map: dict[str, list[str]] | None = None  # --label-map: the groups the labels were replaced by

    @property
    def multi_label(self) -> bool:
        return self.task == MULTI

    def y(self, split: str) -> np.ndarray:
        """A split's labels: class ids (single-label) or a texts x labels 0/1 matrix (multi-label)."""
        return np.asarray(self.splits[split]["label_id"].tolist())

    def summary(self, source: str) -> dict:
        """What a model card, a report and a run say it was trained on: the source by a name that is never a local
        absolute path (``source_name``), the Hugging Face dataset id when it is one, where each split came from (a
        file, or carved out of the training data), texts and class counts per split (texts with each label, for
        multi-label data), the task, and the label map that scoring its model maps labels by."""
        source = DEMO_SOURCE if source == DEMO_DATA else source
        hub = source[len(HF_PREFIX) :] if source.startswith(HF_PREFIX) else None
        counts = {s: each_label(df).value_counts() for s, df in self.splits.items()}
        return {
            "source": source_name(source),
            "name": data_name(source),
            "hub_id": hub if hub and not Path(hub).exists() else None,
            "task": self.task,
            "splits": {
                s: {"from": source_name(df.attrs.get("source", source)), "carved": s in self.report.split_created}
                for s, df in self.splits.items()
            },
            "texts": {s: len(df) for s, df in self.splits.items()},
            "class_counts": {s: {lab: int(c.get(lab, 0)) for lab in self.labels} for s, c in counts.items()},
            **({"label_map": self.label_map} if self.label_map else {}),
        }


@dataclass
class Labelled:
    """Raw texts (a model applies its own preprocessing) and label ids in the model's order: what is scored."""

    texts: list[str]
    y_true: np.ndarray
    source: str
    split: str

    @classmethod
    def from_split(cls, df: pd.DataFrame, split: str) -> Labelled:
        """``y_true``: class ids, or for multi-label data a texts x labels 0/1 matrix."""
        y = np.asarray(df["label_id"].tolist(), dtype=np.int64)
        return cls(df["raw_text"].tolist(), y, str(df.attrs.get("source", split)), split)


def _keep(df: pd.DataFrame, mask: pd.Series) -> pd.DataFrame:
    kept = df.loc[mask].copy()
    kept.attrs = df.attrs
    return kept


def _clean(df: pd.DataFrame, preprocessor: Preprocessor, cfg: DataConfig, report: DataReport, split: str, task: str):
    """Preprocessed ``text`` beside ``raw_text``; texts left empty dropped and counted (or refused with
    ``strict``); labels as class-name strings, or for multi-label data sorted tuples of them."""
    df = df.copy()
    df["raw_text"] = df["text"]
    df["text"] = [preprocessor(t) if isinstance(t, str) else t for t in df["text"]]
    empty = empty_texts(df)
    report.empty_texts_dropped[split] = int(empty.sum())
    if empty.any():
        if cfg.strict:
            refuse_empty_texts(df, empty)
        log.warning("%s: dropped %d empty or missing text(s)", df.attrs.get("source", split), int(empty.sum()))
        df = _keep(df, ~empty)
    df["text"] = df["text"].astype(str)
    if task == MULTI:
        names = read_label_names(cfg.label_names) if cfg.label_names else None
        df["label"] = label_sets(df, cfg.label_column, cfg.label_separator, names, cfg.allow_no_label)
    else:
        df["label"] = label_strings(df)
    return df


def _deduplicate(splits: dict[str, pd.DataFrame], cfg: DataConfig, report: DataReport) -> None:
    """Count exact duplicates and same-text-different-label conflicts everywhere; drop exact ones from train."""
    for split, df in splits.items():
        dup, conflicts, examples = duplicates(df)
        report.duplicates[split] = int(dup.sum())
        report.conflicting_duplicates[split] = conflicts
        report.conflict_examples += [{"split": split, **c} for c in examples]
        if conflicts:
            log.warning("%s: %d text(s) appear with conflicting labels", df.attrs.get("source", split), conflicts)
        if split == "train" and cfg.drop_duplicates and dup.any():
            splits["train"] = _keep(df, ~dup)
            report.duplicates_dropped = int(dup.sum())


def _drop_leakage(splits: dict[str, pd.DataFrame], cfg: DataConfig, report: DataReport) -> None:
    """Texts shared by two splits inflate scores: count them; drop them from validation (those also in test)
    and from train (those in validation or test), so test texts never steer early stopping or calibration."""
    val, test = splits["validation"], splits["test"]
    overlap = shared_texts(val, test)
    report.leakage["validation_test"] = len(overlap)
    if overlap:
        log.warning("%d validation text(s) also occur in the test split", len(overlap))
        if cfg.drop_leakage:
            keep = ~text_keys(val).isin(overlap)
            if not keep.any():
                raise DataError(
                    f"{val.attrs.get('source', 'validation split')}: every validation text also occurs in "
                    "the test split; give a validation set that is not the test set"
                )
            report.validation_leakage_dropped = int((~keep).sum())
            splits["validation"] = _keep(val, keep)
    train = splits["train"]
    for split in ("validation", "test"):
        report.leakage[split] = len(shared_texts(train, splits[split]))
    held_out = shared_texts(train, splits["validation"], splits["test"])
    if held_out:
        log.warning("%d training text(s) also occur in validation/test", len(held_out))
        if cfg.drop_leakage:
            keep = ~text_keys(train).isin(held_out)
            report.leakage_dropped = int((~keep).sum())
            splits["train"] = _keep(train, keep)


def _with_ids(df: pd.DataFrame, labels: list[str], task: str) -> pd.DataFrame:
    out = df.reset_index(drop=True)
    index = {lab: i for i, lab in enumerate(labels)}
    if task == MULTI:
        out["label_id"] = out["label"].map(lambda tags: tuple(int(lab in tags) for lab in labels))
    else:
        out["label_id"] = out["label"].map(index).astype(int)
    return out


def load_data(cfg: DataConfig, preprocessor: Preprocessor | None = None) -> PreparedData:
    """Read, clean, check and split the data named by ``cfg``; see ``DataReport`` for what was dropped."""
    preprocessor = preprocessor or Preprocessor()
    cfg = with_label_names(cfg)
    splits, names = read_source(cfg)
    for split, path in (("validation", cfg.val_data), ("test", cfg.test_data)):
        if path:
            splits[split] = read_file(path, cfg, names if cfg.label_names else None)
    task = decide_task(cfg.task, list(splits.values()), cfg.label_separator)
    report = DataReport(rows_read={k: len(v) for k, v in splits.items()})
    splits = {split: _clean(df, preprocessor, cfg, report, split, task) for split, df in splits.items()}
    refuse_label_variants(list(splits.values()))
    groups = None
    if cfg.label_map:  # before anything counts, checks or splits the labels: they are the groups from here on
        read = set().union(*(set(each_label(df)) for df in splits.values()))
        groups = place_labels(read_groups(Path(cfg.label_map), "label map"), sorted(read), "label map")
        for df in splits.values():
            df["label"] = map_labels(df["label"], groups)
    labels = label_order(set(each_label(splits["train"])), list(groups) if groups else names)
    for split in ("validation", "test"):
        if split in splits:
            refuse_unknown_labels(
                splits[split],
                set(labels),
                f"in the {split} split never occur in the training "
                "data; the model cannot learn them (fix the labels or add training examples)",
            )
    _deduplicate(splits, cfg, report)
    carve_missing(splits, cfg, report, task == MULTI)
    _drop_leakage(splits, cfg, report)
    if cfg.exclude_label_issues:
        # After the split, before any subsample: only the training rows the audit saw, all of them.
        splits["train"], report.label_issues = apply_label_issues(
            splits["train"],
            cfg.exclude_label_issues,
            cfg.label_issues_action,
            labels,
            cfg.label_issues_top,
            cfg.label_separator if task == MULTI else None,
            cfg.allow_no_label,
        )
    if cfg.max_samples:
        splits["train"] = subsample(splits["train"], cfg.max_samples, cfg.split_seed, task == MULTI)
    if cfg.max_val_samples:
        splits["validation"] = subsample(splits["validation"], cfg.max_val_samples, cfg.split_seed, task == MULTI)
    check_train_covers(splits["train"], labels)
    for split in ("validation", "test"):
        report.absent_classes[split] = absent = absent_classes(splits[split], labels)
        if absent:
            log.warning(
                "the %s split has no rows of class(es) %s: their F1 cannot be measured there, and its "
                "macro-F1 is over the other %d classes; add %s examples of them",
                split,
                ", ".join(map(repr, absent)),
                len(labels) - len(absent),
                split,
            )
    prepared = {split: _with_ids(splits[split], labels, task) for split in SPLITS}
    issues = report.label_issues
    log.info(
        "data: %s: %s texts%s%s",
        cfg.data or DEMO_SOURCE,
        ", ".join(f"{k} {len(v)}" for k, v in prepared.items()),
        f" ({changed(issues)} as label issues)" if issues else "",
        f"; {describe(prepared['train']['label'], labels)}" if task == MULTI else "",
    )
    return PreparedData(prepared, labels, report, task, groups)


def load_labelled(
    cfg: DataConfig,
    labels: list[str],
    preprocessor: Preprocessor,
    task: str = SINGLE,
    allow_no_label: bool = False,
    label_map: dict[str, list[str]] | None = None,
) -> Labelled:
    """The texts to score a model on: the test split of a folder, or every row of a file, cleaned as
    ``load_data`` cleans them with the model's own ``preprocessor``, read as the model's ``task``, labels mapped by
    ``cfg.label_map`` if given, else by the model's ``label_map`` (so a file of fine labels scores a model trained
    on their groups); labels in ``labels`` order. A ``test_data`` file is the test split, whatever ``data`` names:
    the training file of a training config must never be what a model is scored on."""
    given = {**cfg.__dict__, "allow_no_label": allow_no_label or cfg.allow_no_label}
    if cfg.test_data:
        given.update(data=cfg.test_data, test_data=None, val_data=None)
    cfg = with_label_names(DataConfig(**given))
    splits, _ = read_source(cfg)
    split = "test" if "test" in splits else "all rows"
    df = _clean(splits.get("test", splits["train"]), preprocessor, cfg, DataReport(), split, task)
    groups = read_groups(Path(cfg.label_map), "label map") if cfg.label_map else label_map
    if groups:
        df["label"] = map_labels(df["label"], groups)
    refuse_unknown_labels(df, set(labels), f"are not among the model's labels ({', '.join(labels)})")
    return Labelled.from_split(_with_ids(df, labels, task), split)


__all__ = [
    "DEMO_SOURCE",
    "Labelled",
    "PreparedData",
    "SPLITS",
    "load_data",
    "load_labelled",
    "read_file",
    "read_source",
]
