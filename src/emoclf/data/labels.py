"""A text's labels as files give them, read into one form: a class name per text (single-label) or a tuple of
label names per text (multi-label).

Groups of labels (a ``--hierarchy`` or ``--label-map`` file such as GoEmotions' ``ekman_mapping.json``) are read and
placed here too: ``read_groups``, ``place_labels`` and ``map_labels``, the one place a label is replaced by its group.

Multi-label data comes in the usual forms, all read here: a label cell with several labels separated by
``--label-separator`` (``joy,relief``), a JSON list (``["joy", "relief"]``, or a list in JSONL and Parquet), label
ids (``8,20``, named by ``--label-names`` or a folder's ``labels.txt``, as GoEmotions is published), or one 0/1
column per label. Whatever cannot be read is refused with the file, row and column: an id out of range, a name
``--label-names`` does not know, an empty label set where texts must have a label, a 0/1 column holding 2.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from emoclf.data.validate import MAX_LISTED, _is_missing, _plain, where
from emoclf.errors import ConfigError, DataError
from emoclf.preprocess import nfc
from emoclf.task import MULTI, SINGLE

log = logging.getLogger(__name__)

INDICATOR_VALUES = {0, 1}


def _is_list(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def _json_list(value) -> list | None:
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, list) else None
    return None


def holds_several(value, separator: str) -> bool:
    """Whether a label cell is written as a multi-label cell: a list, a JSON list or separated labels."""
    value = _plain(value)
    return _is_list(value) or _json_list(value) is not None or (isinstance(value, str) and separator in value)


def decide_task(requested: str, frames: list[pd.DataFrame], separator: str) -> str:
    """``requested``, or for ``auto`` multi-label when any label cell holds several labels (0/1 columns are read
    into such cells), else single-label."""
    if requested != "auto":
        return requested
    several = any(f["label"].map(lambda v: holds_several(v, separator)).any() for f in frames)
    return MULTI if several else SINGLE


def _items(value, separator: str) -> list:
    """The labels of one cell, each a name or an id, as written."""
    value = _plain(value)
    if _is_missing(value):
        return []
    if _is_list(value):
        return [_plain(v) for v in value]
    parsed = _json_list(value)
    if parsed is not None:
        return parsed
    if isinstance(value, str):
        return [part for part in (p.strip() for p in value.split(separator)) if part]
    return [value]


def _name(item, names: list[str] | None):
    """A label item as a name: an id named by ``names``, or the item itself; None for an id ``names`` lacks."""
    if isinstance(item, float) and item.is_integer():
        item = int(item)
    if isinstance(item, str) and names is not None and item.strip().isdigit():
        item = int(item.strip())
    if isinstance(item, int) and not isinstance(item, bool):
        if names is None:
            return str(item)
        return names[item] if 0 <= item < len(names) else None
    return nfc(str(item).strip())


def label_sets(df: pd.DataFrame, column: str, separator: str, names: list[str] | None, allow_empty: bool) -> pd.Series:
    """Every label cell of ``df`` as a sorted tuple of label names, refusing what cannot be one (file, row and
    ``column`` named)."""
    sets, bad = [], []
    for row, value in zip(df["row"], df["label"]):
        items = _items(value, separator)
        named = [_name(i, names) for i in items]
        unknown = [i for i, n in zip(items, named) if n is None or (names is not None and n not in names)]
        if unknown:
            bad.append((row, unknown[0]))
        sets.append(tuple(sorted(set(n for n in named if n))))
    if bad:
        rows = pd.Series([r for r, _ in bad])
        first = bad[0][1]
        more = ", ..." if names and len(names) > MAX_LISTED else ""
        known = f"ids 0..{len(names) - 1} and the names {', '.join(names[:MAX_LISTED])}{more}" if names else ""
        raise DataError(
            f"{where(df, rows)}, column {column!r}: label {first!r} is not a label of --label-names ({known}; "
            f"{len(bad)} row(s)); fix the labels, or give the names of every label"
        )
    out = pd.Series(sets, index=df.index, dtype=object)
    empty = out.map(len) == 0
    if empty.any() and not allow_empty:
        raise DataError(
            f"{where(df, df.loc[empty, 'row'])}, column {column!r}: no label ({int(empty.sum())} row(s)); give every "
            "text at least one label, or pass --allow-no-label if texts may have none"
        )
    return out


def indicator_columns(df: pd.DataFrame, text_column: str) -> list[str]:
    """Columns that are one 0/1 column per label: integer columns holding 0 and 1 (and, in error, other integers)."""
    found = []
    for column in df.columns:
        if column == text_column:
            continue
        values = pd.to_numeric(df[column], errors="coerce")
        if values.isna().any() or not (values == values.round()).all():
            continue
        if INDICATOR_VALUES <= set(values.astype(int)):
            found.append(column)
    return found


def from_indicators(df: pd.DataFrame, columns: list[str], source: str) -> pd.Series:
    """Tuples of the names of the columns that hold 1, one per row; a value other than 0 or 1 is refused."""
    values = df[columns].apply(pd.to_numeric).astype(int)
    wrong = ~values.isin(INDICATOR_VALUES)
    if wrong.to_numpy().any():
        column = wrong.any().idxmax()
        rows = df.index[wrong[column].to_numpy()]
        raise DataError(
            f"{source}: row(s) {', '.join(map(str, rows[:MAX_LISTED]))}, column {column!r}: holds "
            f"{values.loc[rows[0], column]}; a label column holds 1 (the text has the label) or 0"
        )
    names = np.asarray([nfc(str(c)) for c in columns], dtype=object)
    return pd.Series([tuple(sorted(names[r.astype(bool)])) for r in values.to_numpy()], index=df.index, dtype=object)


def describe(sets: pd.Series, labels: list[str]) -> str:
    """``multi-label: 28 labels, 1.18 labels per text, 16% of texts with more than one``."""
    sizes = sets.map(len)
    empty = f", {(sizes == 0).mean():.0%} with none" if (sizes == 0).any() else ""
    return (
        f"multi-label: {len(labels)} labels, {sizes.mean():.2f} labels per text, {(sizes > 1).mean():.0%} of texts "
        f"with more than one{empty}"
    )


def map_labels(labels: pd.Series, groups: dict[str, list[str]]) -> pd.Series:
    """Every label replaced by its group (``--label-map``): a class name by its group's name, a text's tuple of
    labels by the sorted tuple of their groups (GoEmotions' ``anger,annoyance`` becomes ``anger``); a label in no
    group keeps its name."""
    group_of: dict[str, str] = {}
    for g, members in groups.items():
        for lab in members:
            if group_of.setdefault(lab, g) != g:
                raise ConfigError(
                    f"label map: label {lab!r} is in two groups ({group_of[lab]!r} and {g!r}); put each label in one "
                    "group"
                )

    def one(value):
        if isinstance(value, tuple):
            return tuple(sorted({group_of.get(lab, lab) for lab in value}))
        return group_of.get(value, value)

    return labels.map(one)
