"""Splits carved out of the training data, stratified and seeded, with every class on every side.

Single-label data is stratified on its one class per text (scikit-learn); multi-label data on all of a text's
labels at once, by iterative stratification (Sechidis et al. 2011, the ``iterative-stratification`` package), which
keeps each label's share on both sides as far as the texts allow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

from emoclf.config import DataConfig
from emoclf.data.validate import DataReport, check_class_sizes, each_label
from emoclf.errors import DataError


def _give_every_class_a_row(source: pd.DataFrame, target: pd.DataFrame, seed: int, multi_label: bool):
    """Move one seeded row of each class that ``target`` lacks from ``source`` (which keeps at least one)."""
    counts = each_label(source).value_counts()
    present = set(each_label(target))
    missing = [lab for lab in counts.index if counts[lab] > 1 and lab not in present]
    if not missing:
        return source, target
    if not multi_label:
        moved = source[source["label"].isin(missing)].groupby("label", sort=True).sample(n=1, random_state=seed)
        return source.drop(moved.index), pd.concat([target, moved])
    chosen: list = []  # multi-label: one row per missing label; a row moved for one label may carry others
    for lab in sorted(missing):
        rows = source[source["label"].map(lambda tags, lab=lab: lab in tags)].drop(chosen, errors="ignore")
        if len(rows) > 1:
            chosen.append(rows.sample(n=1, random_state=seed).index[0])
    return source.drop(chosen), pd.concat([target, source.loc[chosen]])


def _indicator(df: pd.DataFrame) -> np.ndarray:
    labels = sorted(set(each_label(df)))
    column = {lab: j for j, lab in enumerate(labels)}
    y = np.zeros((len(df), len(labels)), dtype=np.int64)
    for i, tags in enumerate(df["label"]):
        y[i, [column[t] for t in tags]] = 1
    return y


def kfold(y: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded stratified folds, as (fitted rows, held-out rows) pairs, of labels ``y``: class ids, or a texts x labels
    0/1 matrix, folded by iterative stratification (each label's share kept in every fold as far as texts allow)."""
    if np.ndim(y) == 1:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    else:
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

        splitter = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


def _draw(df: pd.DataFrame, n_out: int, seed: int, multi_label: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    if not multi_label:
        return train_test_split(df, test_size=n_out, stratify=df["label"], random_state=seed)
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    keep, out = next(
        MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_out, random_state=seed).split(
            np.zeros(len(df)), _indicator(df)
        )
    )
    return df.iloc[keep], df.iloc[out]


def stratified(
    df: pd.DataFrame, size: float, seed: int, purpose: str, multi_label: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stratified, seeded split in which every class keeps a row on both sides.

    Stratification rounds a small class's share down to zero rows; one row of each such class is
    then moved over (seeded), so that no class is silently missing from the carved split.
    """
    n_classes = each_label(df).nunique()
    n_out = max(int(round(size * len(df))), n_classes)
    if n_out >= len(df) - n_classes + 1:
        raise DataError(
            f"{df.attrs.get('source', 'data')}: {len(df)} rows are too few for a stratified {purpose} "
            f"of {size:.0%} over {n_classes} classes"
        )
    keep, out = _draw(df, n_out, seed, multi_label)
    keep, out = _give_every_class_a_row(keep, out, seed, multi_label)
    out, keep = _give_every_class_a_row(out, keep, seed, multi_label)
    keep.attrs, out.attrs = df.attrs, df.attrs
    return keep, out


def carve_missing(
    splits: dict[str, pd.DataFrame], cfg: DataConfig, report: DataReport, multi_label: bool = False
) -> None:
    """Carve missing test, then validation, splits out of train, stratified and seeded, every class in each."""
    carve = [split for split in ("test", "validation") if split not in splits]
    if not carve:
        return
    given = {"test": "--test-data", "validation": "--val-data"}
    check_class_sizes(
        splits["train"],
        len(carve) + 1,
        f"carving {' and '.join(f'a {s} split' for s in carve)} out of the training data (one row for each split)",
        f"add examples, remove the class, or give {' and '.join(given[s] for s in carve)}",
    )
    if "test" not in splits:
        splits["train"], splits["test"] = stratified(
            splits["train"], cfg.test_size, cfg.split_seed, "test split", multi_label
        )
        report.split_created.append("test")
    if "validation" not in splits:
        # val_size is a share of all the data, so rescale it to what is left after the test split.
        share = cfg.val_size / (1.0 - (cfg.test_size if "test" in report.split_created else 0.0))
        splits["train"], splits["validation"] = stratified(
            splits["train"], share, cfg.split_seed, "validation split", multi_label
        )
        report.split_created.append("validation")


def subsample(df: pd.DataFrame, n: int, seed: int, multi_label: bool = False) -> pd.DataFrame:
    """A stratified subset of ``n`` rows (for quick runs), keeping every class."""
    if n >= len(df):
        return df
    n_classes = each_label(df).nunique()
    if n < n_classes:
        raise DataError(f"max_samples={n} is below the number of classes ({n_classes}); every class needs a row")
    check_class_sizes(df, 2, "stratified subsampling (max_samples)")
    _, small = _draw(df, n, seed, multi_label)
    small.attrs = df.attrs
    return small
