"""Checks on labelled data, as pure functions: each returns a mask, a set or a list, or refuses with a
message naming file, row and column. They change nothing; ``emoclf.data.load_data`` decides what
to drop and counts it in the ``DataReport``, so nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from emoclf.errors import DataError
from emoclf.preprocess import nfc

MAX_LISTED = 5


@dataclass
class DataReport:
    """What validation found and what loading did about it, per split."""

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
    # --exclude-label-issues: the file, the action, rows listed, changed in train, and listed but not in train.
    label_issues: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def where(df: pd.DataFrame, rows: pd.Series) -> str:
    """``FILE: row(s) 3, 7 and 2 more``, for messages."""
    listed = ", ".join(str(r) for r in rows.head(MAX_LISTED))
    more = f" and {len(rows) - MAX_LISTED} more" if len(rows) > MAX_LISTED else ""
    return f"{df.attrs.get('source', '<data>')}: row(s) {listed}{more}"


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _plain(value):
    """NumPy scalars (what Parquet columns hold) as the Python values they stand for."""
    return value.item() if isinstance(value, np.generic) else value


def _is_label(value) -> bool:
    value = _plain(value)
    return (
        isinstance(value, (str, list, tuple, np.ndarray))  # a list: the labels of a multi-label text
        or _is_missing(value)
        or (isinstance(value, int) and not isinstance(value, bool))
        or (isinstance(value, float) and value.is_integer())
    )


def check_types(df: pd.DataFrame, text_column: str, label_column: str | None) -> None:
    """Texts must be strings and labels class names or integers, caught when read, not after training.

    Missing values pass (they are counted and dropped, or refused, later). A number where a text
    should be is refused rather than turned into a string: it is almost always the wrong column.
    """
    checks = [("text", text_column, "text", lambda v: isinstance(v, str) or _is_missing(_plain(v)))]
    if label_column is not None and "label" in df.columns:
        checks.append(("label", label_column, "a class name, an integer or a list of labels", _is_label))
    for column, name, expected, ok in checks:
        bad = ~df[column].map(ok)
        if bad.any():
            first = _plain(df.loc[bad, column].iloc[0])
            raise DataError(
                f"{where(df, df.loc[bad, 'row'])}, column {name!r}: expected {expected}, found "
                f"{type(first).__name__} {first!r} ({int(bad.sum())} row(s)); fix the column, or point "
                f"--{column}-column at the right one"
            )


def names_of_ids(values: pd.Series, names: list[str]) -> pd.Series:
    """Label ids as the names ``names`` gives them (id k: ``names[k]``); None where a value is not an integer in
    0..len(names)-1. Ids may be read as ints, strings ("3") or floats (3.0, beside a gap); a reader of label cells
    holding several ids ("3,17") maps each one here."""

    def name(value):
        value = _plain(value)
        if isinstance(value, str) and value.strip().isdecimal():
            value = int(value.strip())
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
            return names[value]
        return None

    return values.map(name)


def refuse_unnamed_ids(df: pd.DataFrame, named: pd.Series, names: list[str], label_column: str, given: str) -> None:
    """Rows whose label ``names_of_ids`` could not name (``named`` None where the label is not missing)."""
    bad = named.isna() & ~df["label"].map(lambda v: _is_missing(_plain(v))).astype(bool)
    if bad.any():
        first = _plain(df.loc[bad, "label"].iloc[0])
        raise DataError(
            f"{where(df, df.loc[bad, 'row'])}, column {label_column!r}: label {first!r} is not a label id of "
            f"--label-names {given} ({len(names)} names: ids 0..{len(names) - 1}; {int(bad.sum())} row(s)); "
            "fix the labels, or give the names of every id"
        )


def variant(label: str) -> str:
    """What is left of a label when case and spacing are ignored: 'Joy ', 'JOY' and 'joy' are one variant."""
    return " ".join(label.casefold().split())


def refuse_label_variants(frames: list[pd.DataFrame]) -> None:
    """Labels spelled in ways that differ only in case or spacing would train as separate classes of one
    meaning (joy, Joy, JOY: 3 classes): refused, naming each spelling where it first occurs."""
    seen: dict[str, dict[str, str]] = {}
    for df in frames:
        first = df.explode("label").dropna(subset=["label"]).drop_duplicates("label")
        for label, row in zip(first["label"], first["row"]):
            seen.setdefault(variant(label), {}).setdefault(label, f"{df.attrs.get('source', '<data>')} row {row}")
    clashes = [spellings for spellings in seen.values() if len(spellings) > 1]
    if clashes:
        listed = ", ".join(f"{label!r} ({at})" for label, at in clashes[0].items())
        more = f" (and {len(clashes) - 1} more such group(s))" if len(clashes) > 1 else ""
        raise DataError(
            f"labels {listed} differ only in case or spacing{more}: they would train as {len(clashes[0])} "
            "separate classes; spell each class one way in every file"
        )


def empty_texts(df: pd.DataFrame) -> pd.Series:
    """Rows whose text is missing or blank (after preprocessing, when ``text`` is the preprocessed text)."""
    return df["text"].isna() | (df["text"].astype(str).str.strip() == "")


def refuse_empty_texts(df: pd.DataFrame, empty: pd.Series) -> None:
    raise DataError(
        f"{where(df, df.loc[empty, 'row'])}, column 'text': empty or missing text "
        "(--strict refuses these; drop --strict to skip and count them)"
    )


def label_strings(df: pd.DataFrame) -> pd.Series:
    """The label column as class-name strings (1.0, as pandas reads integers beside a gap, becomes "1");
    a missing label is refused, naming its rows."""
    missing = df["label"].isna() | (df["label"].astype(str).str.strip() == "")
    if missing.any():
        raise DataError(f"{where(df, df.loc[missing, 'row'])}, column 'label': missing label")
    # NFC: one label typed with a combining accent or a precomposed letter is one label.
    return df["label"].map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else nfc(str(v).strip()))


def label_order(train_labels: set[str], names: list[str] | None) -> list[str]:
    """One order of the classes: the source's names (ClassLabel), else numeric, else alphabetical."""
    if names is not None:
        return [n for n in names if n in train_labels] + sorted(train_labels - set(names))
    if all(lab.lstrip("-").isdigit() for lab in train_labels):
        return sorted(train_labels, key=int)
    return sorted(train_labels)


def refuse_unknown_labels(df: pd.DataFrame, known: set[str], what: str) -> None:
    """A label that ``known`` lacks cannot be learned or scored; ``what`` says whose labels ``known`` are."""
    unknown = sorted(set(each_label(df)) - known)
    if unknown:
        raise DataError(f"{df.attrs.get('source', 'data')}: label(s) {', '.join(map(repr, unknown))} {what}")


def text_keys(df: pd.DataFrame) -> pd.Series:
    """What makes two texts the same text: the text in Unicode NFC, whether or not preprocessing normalises
    (the same words in NFC and NFD are one text to a reader, and leak as such)."""
    return df["text"].map(nfc)


def duplicates(df: pd.DataFrame) -> tuple[pd.Series, int, list[dict]]:
    """Exact duplicate rows (every copy after the first), the number of texts that appear with different labels,
    and the first ``MAX_LISTED`` of those with their labels and rows."""
    keys = text_keys(df)
    labels_per_text = df["label"].groupby(keys.to_numpy()).nunique()
    conflicts = labels_per_text.index[labels_per_text.to_numpy() > 1]
    listed = conflicts[:MAX_LISTED]
    examples = []
    if len(listed):
        rows = df.loc[keys.isin(listed)]
        for text, group in rows.groupby(keys[rows.index].to_numpy(), sort=True):
            examples.append({"text": text, "labels": sorted(set(group["label"])), "rows": group["row"].tolist()})
    dup = pd.DataFrame({"key": keys, "label": df["label"]}).duplicated()
    return dup, len(conflicts), examples


def shared_texts(df: pd.DataFrame, *others: pd.DataFrame) -> set[str]:
    """Texts (``text_keys``) of ``df`` that also occur in any of ``others``."""
    held_out = set().union(*(set(text_keys(o)) for o in others))
    return set(text_keys(df)) & held_out


def each_label(df: pd.DataFrame) -> pd.Series:
    """One row per label per text: the label column itself for single-label data, its tuples unpacked for
    multi-label data (a text without labels adds none). Counts, orders and checks of classes read this."""
    return df["label"].explode().dropna()


def absent_classes(df: pd.DataFrame, labels: list[str]) -> list[str]:
    present = set(each_label(df))
    return [lab for lab in labels if lab not in present]


def check_class_sizes(
    df: pd.DataFrame, minimum: int, purpose: str, fix: str = "add examples or remove the class"
) -> None:
    counts = each_label(df).value_counts()
    small = counts[counts < minimum]
    if len(small):
        listed = ", ".join(f"{lab!r} ({n})" for lab, n in small.items())
        raise DataError(
            f"{df.attrs.get('source', 'training data')}: class(es) with fewer than {minimum} examples: {listed}; "
            f"{purpose} needs at least {minimum} per class: {fix}"
        )


def check_train_covers(df: pd.DataFrame, labels: list[str]) -> None:
    """Dropping duplicates or leaked rows can empty a class; the model could then never predict it."""
    lost = absent_classes(df, labels)
    if lost:
        raise DataError(
            f"{df.attrs.get('source', 'training data')}: after dropping duplicates and leaked texts, class(es) "
            f"{', '.join(map(repr, lost))} have no training rows left; add training examples "
            "(or keep leaked rows with --no-drop-leakage)"
        )
