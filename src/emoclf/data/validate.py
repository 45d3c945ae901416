"""Checks on labelled splits: every problem is counted, reported with file and row, or refused.

Nothing is dropped silently: each dropped row is counted in the ``DataReport`` that is printed,
saved with the run and logged to MLflow.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from emoclf.config import DataConfig
from emoclf.errors import DataError

log = logging.getLogger(__name__)

MAX_LISTED = 5


@dataclass
class DataReport:
    """What validation found and did, per split."""

    rows_read: dict[str, int] = field(default_factory=dict)
    empty_texts_dropped: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    duplicates_dropped: int = 0
    conflicting_duplicates: dict[str, int] = field(default_factory=dict)
    conflict_examples: list[dict] = field(default_factory=list)
    leakage: dict[str, int] = field(default_factory=dict)  # per split; validation_test: shared by those two
    leakage_dropped: int = 0
    validation_leakage_dropped: int = 0
    absent_classes: dict[str, list[str]] = field(default_factory=dict)
    split_created: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _where(df: pd.DataFrame, rows: pd.Series) -> str:
    listed = ", ".join(str(r) for r in rows.head(MAX_LISTED))
    more = f" and {len(rows) - MAX_LISTED} more" if len(rows) > MAX_LISTED else ""
    return f"{df.attrs.get('source', '<data>')}: row(s) {listed}{more}"


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _plain(value):
    """NumPy scalars (what Parquet columns hold) as the Python values they stand for."""
    return value.item() if isinstance(value, np.generic) else value


def check_types(df: pd.DataFrame, text_column: str, label_column: str | None) -> None:
    """Texts must be strings and labels class names or integers, caught when read, not after training.

    Missing values pass (they are counted and dropped, or refused, later). A number where a text
    should be is refused rather than turned into a string: it is almost always the wrong column.
    """
    def refuse(mask: pd.Series, column: str, expected: str) -> None:
        bad = df.loc[mask, "row"]
        first = _plain(df.loc[mask, "text" if column == text_column else "label"].iloc[0])
        raise DataError(f"{_where(df, bad)}, column {column!r}: expected {expected}, found "
                        f"{type(first).__name__} {first!r} ({int(mask.sum())} row(s)); fix the column, or point "
                        f"--{'text' if column == text_column else 'label'}-column at the right one")

    texts = df["text"]
    bad = ~texts.map(lambda v: isinstance(v, str) or _is_missing(_plain(v)))
    if bad.any():
        refuse(bad, text_column, "text")
    if label_column is not None and "label" in df.columns:
        def label_ok(v) -> bool:
            v = _plain(v)
            return (isinstance(v, str) or _is_missing(v) or (isinstance(v, int) and not isinstance(v, bool))
                    or (isinstance(v, float) and v.is_integer()))

        bad = ~df["label"].map(label_ok)
        if bad.any():
            refuse(bad, label_column, "a class name or an integer")


def normalise_labels(splits: dict[str, pd.DataFrame], names: list[str] | None) -> list[str]:
    """Turn labels into strings and fix one label order: given names, else numeric or alphabetical."""
    for split, df in splits.items():
        missing = df["label"].isna() | (df["label"].astype(str).str.strip() == "")
        if missing.any():
            raise DataError(f"{_where(df, df.loc[missing, 'row'])}, column 'label': missing label")
        df["label"] = df["label"].map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v).strip())
    train_labels = set(splits["train"]["label"])
    for split, df in splits.items():
        unseen = sorted(set(df["label"]) - train_labels)
        if split != "train" and unseen:
            raise DataError(
                f"{df.attrs.get('source', split)}: label(s) {', '.join(map(repr, unseen))} in the {split} split never "
                "occur in the training data; the model cannot learn them (fix the labels or add training examples)"
            )
    if names is not None:
        return [n for n in names if n in train_labels] + sorted(train_labels - set(names))
    if all(lab.lstrip("-").isdigit() for lab in train_labels):
        return sorted(train_labels, key=int)
    return sorted(train_labels)


def drop_empty_texts(splits: dict[str, pd.DataFrame], cfg: DataConfig, report: DataReport) -> None:
    for split, df in splits.items():
        empty = df["text"].isna() | (df["text"].astype(str).str.strip() == "")
        report.empty_texts_dropped[split] = int(empty.sum())
        if empty.any():
            if cfg.strict:
                raise DataError(
                    f"{_where(df, df.loc[empty, 'row'])}, column 'text': empty or missing text "
                    "(--strict refuses these; drop --strict to skip and count them)"
                )
            log.warning("%s: dropped %d empty or missing text(s)", df.attrs.get("source", split), int(empty.sum()))
            splits[split] = df.loc[~empty].copy()
            splits[split].attrs = df.attrs
        splits[split]["text"] = splits[split]["text"].astype(str)


def check_duplicates(splits: dict[str, pd.DataFrame], cfg: DataConfig, report: DataReport) -> None:
    """Count exact duplicates and same-text-different-label conflicts; drop exact ones from train only."""
    for split, df in splits.items():
        report.duplicates[split] = int(df.duplicated(["text", "label"]).sum())
        labels_per_text = df.groupby("text")["label"].nunique()
        conflicts = labels_per_text[labels_per_text > 1]
        report.conflicting_duplicates[split] = len(conflicts)
        for text in conflicts.index[:MAX_LISTED]:
            rows = df.loc[df["text"] == text]
            report.conflict_examples.append(
                {"split": split, "text": text, "labels": sorted(set(rows["label"])), "rows": rows["row"].tolist()}
            )
        if len(conflicts):
            log.warning("%s: %d text(s) appear with conflicting labels", df.attrs.get("source", split), len(conflicts))
    train = splits["train"]
    if cfg.drop_duplicates and report.duplicates["train"]:
        splits["train"] = train.drop_duplicates(["text", "label"]).copy()
        splits["train"].attrs = train.attrs
        report.duplicates_dropped = report.duplicates["train"]


def check_leakage(splits: dict[str, pd.DataFrame], cfg: DataConfig, report: DataReport) -> None:
    """Texts shared by two splits inflate scores: count them; drop them from validation (those also in test)
    and from train (those in validation or test), so test texts never steer early stopping or calibration."""
    val, test = splits["validation"], splits["test"]
    overlap = set(val["text"]) & set(test["text"])
    report.leakage["validation_test"] = len(overlap)
    if overlap:
        log.warning("%d validation text(s) also occur in the test split", len(overlap))
        if cfg.drop_leakage:
            keep = ~val["text"].isin(overlap)
            report.validation_leakage_dropped = int((~keep).sum())
            if not keep.any():
                raise DataError(f"{val.attrs.get('source', 'validation split')}: every validation text also occurs in "
                                "the test split; give a validation set that is not the test set")
            splits["validation"] = val.loc[keep].copy()
            splits["validation"].attrs = val.attrs
    train = splits["train"]
    held_out: set[str] = set()
    for split in ("validation", "test"):
        shared = set(splits[split]["text"]) & set(train["text"])
        report.leakage[split] = len(shared)
        held_out |= shared
    if held_out:
        log.warning("%d training text(s) also occur in validation/test", len(held_out))
        if cfg.drop_leakage:
            keep = ~train["text"].isin(held_out)
            report.leakage_dropped = int((~keep).sum())
            splits["train"] = train.loc[keep].copy()
            splits["train"].attrs = train.attrs


def check_class_sizes(df: pd.DataFrame, minimum: int, purpose: str, fix: str = "add examples or remove the class") -> None:
    counts = df["label"].value_counts()
    small = counts[counts < minimum]
    if len(small):
        listed = ", ".join(f"{lab!r} ({n})" for lab, n in small.items())
        raise DataError(
            f"{df.attrs.get('source', 'training data')}: class(es) with fewer than {minimum} examples: {listed}; "
            f"{purpose} needs at least {minimum} per class: {fix}"
        )


def _stratified(df: pd.DataFrame, size: float, seed: int, purpose: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stratified, seeded split in which every class keeps a row on both sides.

    Stratification rounds a small class's share down to zero rows; one row of each such class is
    then moved over (seeded), so that no class is silently missing from the carved split.
    """
    n_classes = df["label"].nunique()
    n_out = max(int(round(size * len(df))), n_classes)
    if n_out >= len(df) - n_classes + 1:
        raise DataError(
            f"{df.attrs.get('source', 'data')}: {len(df)} rows are too few for a stratified {purpose} "
            f"of {size:.0%} over {n_classes} classes"
        )
    keep, out = train_test_split(df, test_size=n_out, stratify=df["label"], random_state=seed)
    keep, out = _give_every_class_a_row(keep, out, seed)
    out, keep = _give_every_class_a_row(out, keep, seed)
    keep.attrs, out.attrs = df.attrs, df.attrs
    return keep, out


def _give_every_class_a_row(source: pd.DataFrame, target: pd.DataFrame, seed: int):
    """Move one seeded row of each class that ``target`` lacks from ``source`` (which keeps at least one)."""
    counts = source["label"].value_counts()
    missing = [lab for lab in counts.index if counts[lab] > 1 and lab not in set(target["label"])]
    if not missing:
        return source, target
    moved = source[source["label"].isin(missing)].groupby("label", sort=True).sample(n=1, random_state=seed)
    return source.drop(moved.index), pd.concat([target, moved])


def split_missing(splits: dict[str, pd.DataFrame], cfg: DataConfig, report: DataReport) -> None:
    """Carve missing test, then validation, splits out of train, stratified and seeded, every class in each."""
    carve = [split for split in ("test", "validation") if split not in splits]
    if carve:
        given = {"test": "--test-data", "validation": "--val-data"}
        check_class_sizes(
            splits["train"], len(carve) + 1,
            f"carving {' and '.join(f'a {s} split' for s in carve)} out of the training data (one row for each split)",
            f"add examples, remove the class, or give {' and '.join(given[s] for s in carve)}")
    if "test" not in splits:
        splits["train"], splits["test"] = _stratified(splits["train"], cfg.test_size, cfg.split_seed, "test split")
        report.split_created.append("test")
    if "validation" not in splits:
        # val_size is a share of all the data, so rescale it to what is left after the test split.
        share = cfg.val_size / (1.0 - (cfg.test_size if "test" in report.split_created else 0.0))
        splits["train"], splits["validation"] = _stratified(
            splits["train"], share, cfg.split_seed, "validation split"
        )
        report.split_created.append("validation")


def check_evaluation_classes(splits: dict[str, pd.DataFrame], labels: list[str], report: DataReport) -> None:
    """A class absent from validation or test cannot be measured there; say so, by name, once."""
    for split in ("validation", "test"):
        absent = [lab for lab in labels if lab not in set(splits[split]["label"])]
        report.absent_classes[split] = absent
        if absent:
            log.warning("the %s split has no rows of class(es) %s: their F1 cannot be measured there, and its "
                        "macro-F1 is over the other %d classes; add %s examples of them", split,
                        ", ".join(map(repr, absent)), len(labels) - len(absent), split)


def check_train_covers(df: pd.DataFrame, labels: list[str]) -> None:
    """Dropping duplicates or leaked rows can empty a class; the model could then never predict it."""
    lost = [lab for lab in labels if lab not in set(df["label"])]
    if lost:
        raise DataError(
            f"{df.attrs.get('source', 'training data')}: after dropping duplicates and leaked texts, class(es) "
            f"{', '.join(map(repr, lost))} have no training rows left; add training examples "
            "(or keep leaked rows with --no-drop-leakage)"
        )


def subsample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """A stratified subset of ``n`` rows (for quick runs), keeping every class."""
    if n >= len(df):
        return df
    n_classes = df["label"].nunique()
    if n < n_classes:
        raise DataError(f"max_samples={n} is below the number of classes ({n_classes}); every class needs a row")
    check_class_sizes(df, 2, "stratified subsampling (max_samples)")
    _, small = train_test_split(df, test_size=n, stratify=df["label"], random_state=seed)
    small.attrs = df.attrs
    return small
