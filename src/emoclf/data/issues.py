"""The rows an ``emoclf audit`` flagged, applied to a training split: dropped, or relabelled with the suggestion.

A row of ``label_issues.csv`` names a training row by its text after preprocessing and its given label
(the audit's own ``text`` and ``given_label`` columns), which stay the same whatever order the rows
come in; for multi-label data the given label is the text's set of labels, written as the data writes them
(``joy,relief``, joined by ``--label-separator``) in any order. Only the training split is ever passed here:
validation and test rows are never changed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from emoclf.errors import DataError

log = logging.getLogger(__name__)

KEY = ["text", "given_label"]
COLUMNS = [*KEY, "suggested_label"]


class LabelIssuesMismatch(DataError):
    """An issues file none of whose rows is a training row: it was written for other data or settings."""


def changed(counts: dict) -> str:
    """``500 training rows dropped`` (or ``relabelled``), as the data line and the profile say it."""
    return f"{counts['changed']} training rows {'dropped' if counts['action'] == 'drop' else 'relabelled'}"


def label_key(value, separator: str | None) -> str:
    """A label as the file and the training split are matched on: a class name as it is (``separator`` None); a
    text's labels, a tuple or a cell as the audit wrote it (``joy,relief``), sorted and joined by ``separator``."""
    if separator is None:
        return str(value)
    parts = value if isinstance(value, tuple) else (p.strip() for p in str(value).split(separator))
    return separator.join(sorted(p for p in parts if p))


def read_label_issues(path: str | Path, top: int | None = None, separator: str | None = None) -> pd.DataFrame:
    """The ``text``, ``given_label`` and ``suggested_label`` columns of an audit's ``label_issues.csv`` (its
    first ``top`` rows: the file is ranked, most likely errors first); with a ``separator`` (multi-label), label
    sets in the one order ``label_key`` gives them."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; give the label_issues.csv written by 'emoclf audit'") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: no column(s) {', '.join(missing)}; give the label_issues.csv written by 'emoclf audit'"
        )
    df = df[COLUMNS].head(top).copy()
    for column in ("given_label", "suggested_label"):
        df[column] = df[column].map(lambda v: label_key(v, separator))
    return df.drop_duplicates(KEY)


def _suggested(issues: pd.DataFrame, path, labels: list[str], separator: str | None, allow_empty: bool) -> list:
    """Each listed row's suggested label as the training split holds labels (a tuple of names for multi-label data),
    refused when one is not a training label, or is no label where texts must have one."""
    if separator is None:
        suggested = issues["suggested_label"].tolist()
        names = set(suggested)
    else:
        suggested = [tuple(v.split(separator)) if v else () for v in issues["suggested_label"]]
        names = {lab for tags in suggested for lab in tags}
        if not allow_empty and () in suggested:
            raise DataError(
                f"{path}: {suggested.count(())} row(s) suggest no label, but every text must have one; give each a "
                "label, or pass --allow-no-label if texts may have none"
            )
    unknown = sorted(names - set(labels))
    if unknown:
        raise DataError(
            f"{path}: suggested label(s) {', '.join(map(repr, unknown))} are not among the training "
            f"labels ({', '.join(labels)}); audit this data again"
        )
    return suggested


def apply_label_issues(
    train: pd.DataFrame,
    path: str | Path,
    action: str,
    labels: list[str],
    top: int | None = None,
    separator: str | None = None,
    allow_empty: bool = False,
) -> tuple[pd.DataFrame, dict]:
    """``train`` without the listed rows (``drop``), or with their ``suggested_label`` (``relabel``), and the counts;
    ``top``: only the file's first rows. Multi-label data (its ``separator`` given) is matched and relabelled by label
    sets: ``joy,relief`` in the file is the training row's (joy, relief).

    Refuses a file none of whose rows matches a training row: applying it would silently change nothing.
    """
    issues = read_label_issues(path, top, separator)
    suggested = _suggested(issues, path, labels, separator, allow_empty) if action == "relabel" else None
    keys = list(zip(train["text"].astype(str), train["label"].map(lambda v: label_key(v, separator))))
    listed = list(zip(issues["text"], issues["given_label"]))
    in_train, in_file = set(keys), set(listed)
    hit = np.array([k in in_file for k in keys], dtype=bool)
    matched = sum(k in in_train for k in listed)
    if len(issues) and not matched:
        raise LabelIssuesMismatch(
            f"{path}: none of its {len(issues)} rows is a training row (same text after preprocessing and same given "
            "label); run 'emoclf audit' on this data with the same data, preprocessing and split settings"
        )
    counts = {"file": str(path), "action": action, "listed": len(issues), "not_in_train": len(issues) - matched}
    if counts["not_in_train"]:
        log.warning(
            "%s: %d of %d listed row(s) are not in the training split (left alone)",
            path,
            counts["not_in_train"],
            len(issues),
        )
    if action == "drop":
        kept = train.loc[~hit].copy()
        kept.attrs = train.attrs
        return kept, {**counts, "changed": int(hit.sum())}
    new = dict(zip(listed, suggested))
    out = train.copy()
    out["label"] = pd.Series([new.get(k, lab) for k, lab in zip(keys, train["label"])], index=train.index, dtype=object)
    return out, {**counts, "changed": int((out["label"] != train["label"]).sum())}
