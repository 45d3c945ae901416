"""Splits carved out of the training data, stratified and seeded, with every class on every side."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from emoclf.config import DataConfig
from emoclf.data.validate import DataReport, check_class_sizes
from emoclf.errors import DataError


def _give_every_class_a_row(source: pd.DataFrame, target: pd.DataFrame, seed: int):
    """Move one seeded row of each class that ``target`` lacks from ``source`` (which keeps at least one)."""
    counts, present = source["label"].value_counts(), set(target["label"])
    missing = [lab for lab in counts.index if counts[lab] > 1 and lab not in present]
    if not missing:
        return source, target
    moved = source[source["label"].isin(missing)].groupby("label", sort=True).sample(n=1, random_state=seed)
    return source.drop(moved.index), pd.concat([target, moved])


def stratified(df: pd.DataFrame, size: float, seed: int, purpose: str) -> tuple[pd.DataFrame, pd.DataFrame]:
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


def carve_missing(splits: dict[str, pd.DataFrame], cfg: DataConfig, report: DataReport) -> None:
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
        splits["train"], splits["test"] = stratified(splits["train"], cfg.test_size, cfg.split_seed, "test split")
        report.split_created.append("test")
    if "validation" not in splits:
        # val_size is a share of all the data, so rescale it to what is left after the test split.
        share = cfg.val_size / (1.0 - (cfg.test_size if "test" in report.split_created else 0.0))
        splits["train"], splits["validation"] = stratified(splits["train"], share, cfg.split_seed, "validation split")
        report.split_created.append("validation")


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
