"""What a prediction looks like, the same on every path.

A single request (CLI arguments, HTTP, ``Predictor.predict``) gets one ``Prediction`` per text:
``label``, ``probability`` (the label's), ``probabilities`` (every class's). A batch (files, the
MLflow model, Spark) gets one row per text with the same numbers in ``prediction_columns``:
``predicted_label``, ``predicted_probability``, ``prob_<class>``, and ``skipped``, which says why a
row has no prediction (its text is empty after preprocessing). Nothing is dropped or reordered.

A model trained with a hierarchy (``--hierarchy``) adds the predicted label's group and that group's
probability (the sum of its members' probabilities): ``group`` and ``group_probability`` for a single
request, ``predicted_group`` and ``group_probability`` columns for a batch. Labels and probabilities are
those of a flat model; a flat model's predictions have no group fields at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from emoclf.errors import DataError
from emoclf.hierarchy import Hierarchy, group_probabilities

if TYPE_CHECKING:  # pandas is imported by the batch paths only: a single text predicts without its second
    import pandas as pd

log = logging.getLogger(__name__)

SKIPPED_EMPTY = "empty after preprocessing"


@dataclass
class Prediction:
    """One text's label, its probability, and every class's probability (they sum to 1); with a hierarchy, the
    label's group and the group's probability (None without one); ``truncated``: the text is longer than the
    model reads (its ``max_length`` tokens), and only its start was classified."""

    label: str
    probability: float
    probabilities: dict[str, float]
    group: str | None = None
    group_probability: float | None = None
    truncated: bool = False


def prediction_columns(labels: list[str], hierarchy: Hierarchy | None = None) -> list[str]:
    """The columns a batch prediction adds, in order."""
    groups = ["predicted_group", "group_probability"] if hierarchy else []
    return ["predicted_label", "predicted_probability", *groups, *(f"prob_{lab}" for lab in labels), "skipped"]


def single_predictions(
    probs: np.ndarray, labels: list[str], hierarchy: Hierarchy | None, truncated: np.ndarray | None = None
) -> list[Prediction]:
    """One ``Prediction`` per row of probabilities; ``truncated`` marks the rows whose text was cut."""
    groups = zip(*label_groups(probs, labels, hierarchy)) if hierarchy else ((None, None) for _ in probs)
    cut = np.zeros(len(probs), dtype=bool) if truncated is None else truncated
    return [
        Prediction(
            labels[int(p.argmax())],
            float(p.max()),
            dict(zip(labels, map(float, p))),
            g,
            None if gp is None else float(gp),
            bool(c),
        )
        for p, (g, gp), c in zip(probs, groups, cut)
    ]


def label_groups(probs: np.ndarray, labels: list[str], hierarchy: Hierarchy) -> tuple[np.ndarray, np.ndarray]:
    """The group of each row's most probable label, and that group's probability (the sum of its members')."""
    ids = np.asarray(hierarchy.group_ids(labels), dtype=np.int64)[probs.argmax(axis=1)]
    group_probs = group_probabilities(probs, hierarchy, labels)
    return np.asarray(hierarchy.names, dtype=object)[ids], group_probs[np.arange(len(ids)), ids]


def predictions_frame(predictor, texts: list[str], progress: bool = False) -> pd.DataFrame:
    """One row per text in input order, columns ``prediction_columns(predictor.labels)``.

    A text that is empty after preprocessing keeps its row, with no label or probabilities and
    ``skipped`` saying why; ``skipped`` is empty for every predicted row.
    """
    import pandas as pd

    labels, hierarchy = predictor.labels, predictor.hierarchy
    clean = predictor.clean(texts)
    keep = np.array([bool(t) for t in clean], dtype=bool)
    probs = np.full((len(clean), len(labels)), np.nan)
    label = np.full(len(clean), "", dtype=object)
    top = np.full(len(clean), np.nan)
    group, group_prob = np.full(len(clean), "", dtype=object), np.full(len(clean), np.nan)
    if keep.any():
        kept = predictor.probabilities([t for t, k in zip(clean, keep) if k], progress)
        probs[keep], top[keep] = kept, kept.max(axis=1)
        label[keep] = [labels[i] for i in kept.argmax(axis=1)]
        if hierarchy:
            group[keep], group_prob[keep] = label_groups(kept, labels, hierarchy)
    if (~keep).any():
        log.warning(
            "%d of %d text(s) are empty after preprocessing: no prediction, 'skipped' says so",
            int((~keep).sum()),
            len(keep),
        )
    groups = {"predicted_group": group, "group_probability": group_prob} if hierarchy else {}
    return pd.DataFrame(
        {
            "predicted_label": label,
            "predicted_probability": top,
            **groups,
            **{f"prob_{lab}": probs[:, j] for j, lab in enumerate(labels)},
            "skipped": np.where(keep, "", SKIPPED_EMPTY),
        }
    )


def predict_table(predictor, df: pd.DataFrame, text_column: str = "text", progress: bool = False) -> pd.DataFrame:
    """``df`` with the prediction columns added after its own, every row kept in order.

    The text column is checked as training checks it (strings, file and row named); a missing
    text is an empty one (no prediction, marked ``skipped``); an input column that a prediction
    column would overwrite is refused.
    """
    import pandas as pd

    from emoclf.data.io import missing_columns_error
    from emoclf.data.validate import check_types

    source = df.attrs.get("source", "input")
    error = missing_columns_error(source, df, {text_column: "--text-column"})
    if error:
        raise error
    clash = [c for c in prediction_columns(predictor.labels, predictor.hierarchy) if c in df.columns]
    if clash:
        raise DataError(
            f"{source}: has column(s) {', '.join(map(repr, clash))}, which the predictions would overwrite; rename them"
        )
    texts = pd.DataFrame({"text": df[text_column].to_numpy(), "row": df.index.to_numpy()})
    texts.attrs = df.attrs
    check_types(texts, text_column, None)
    values = ["" if v is None or v != v else v for v in texts["text"]]
    return pd.concat([df.reset_index(drop=True), predictions_frame(predictor, values, progress)], axis=1)
