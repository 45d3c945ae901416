"""The rows an ``emoclf audit`` flagged, applied to a training split: dropped, or relabelled with the suggestion.

A row of ``label_issues.csv`` names a training row by its text after preprocessing and its given label
(the audit's own ``text`` and ``given_label`` columns), which stay the same whatever order the rows
come in. Only the training split is ever passed here: validation and test rows are never changed.
"""

from __future__ import annotations

import logging
from pathlib import Path

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


def read_label_issues(path: str | Path, top: int | None = None) -> pd.DataFrame:
    """The ``text``, ``given_label`` and ``suggested_label`` columns of an audit's ``label_issues.csv`` (its
    first ``top`` rows: the file is ranked, most likely errors first)."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; give the label_issues.csv written by 'emoclf audit'") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: no column(s) {', '.join(missing)}; give the label_issues.csv written by 'emoclf audit'"
        )
    return df[COLUMNS].head(top).drop_duplicates(KEY)


def apply_label_issues(
    train: pd.DataFrame, path: str | Path, action: str, labels: list[str], top: int | None = None
) -> tuple[pd.DataFrame, dict]:
    """``train`` without the listed rows (``drop``), or with their ``suggested_label`` (``relabel``), and the counts;
    ``top``: only the file's first rows.

    Refuses a file none of whose rows matches a training row: applying it would silently change nothing.
    """
    issues = read_label_issues(path, top)
    unknown = sorted(set(issues["suggested_label"]) - set(labels))
    if action == "relabel" and unknown:
        raise DataError(
            f"{path}: suggested label(s) {', '.join(map(repr, unknown))} are not among the training "
            f"labels ({', '.join(labels)}); audit this data again"
        )
    keys = pd.MultiIndex.from_frame(train[["text", "label"]].astype(str))
    listed = pd.MultiIndex.from_frame(issues[KEY])
    hit = keys.isin(listed)
    matched = int(listed.isin(keys).sum())
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
    suggested = issues.set_index(KEY)["suggested_label"]
    out = train.copy()
    out.loc[hit, "label"] = suggested.reindex(keys[hit]).to_numpy()
    return out, {**counts, "changed": int((out["label"] != train["label"]).sum())}
