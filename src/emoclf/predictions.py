"""What a prediction looks like, the same on every path.

A single request (CLI arguments, HTTP, ``Predictor.predict``) gets one ``Prediction`` per text:
``label``, ``probability`` (the label's), ``probabilities`` (every class's). A batch (files, the
MLflow model, Spark) gets one row per text with the same numbers in ``prediction_columns``:
``predicted_label``, ``predicted_probability``, ``prob_<class>``, and ``skipped``, which says why a
row has no prediction (its text is empty after preprocessing). Nothing is dropped or reordered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from emoclf.data.io import missing_columns_error
from emoclf.data.validate import check_types
from emoclf.errors import DataError

log = logging.getLogger(__name__)

SKIPPED_EMPTY = "empty after preprocessing"


@dataclass
class Prediction:
    """One text's label, its probability, and every class's probability (they sum to 1)."""

    label: str
    probability: float
    probabilities: dict[str, float]


def prediction_columns(labels: list[str]) -> list[str]:
    """The columns a batch prediction adds, in order."""
    return ["predicted_label", "predicted_probability", *(f"prob_{lab}" for lab in labels), "skipped"]


def predictions_frame(predictor, texts: list[str], progress: bool = False) -> pd.DataFrame:
    """One row per text in input order, columns ``prediction_columns(predictor.labels)``.

    A text that is empty after preprocessing keeps its row, with no label or probabilities and
    ``skipped`` saying why; ``skipped`` is empty for every predicted row.
    """
    labels = predictor.labels
    clean = predictor.clean(texts)
    keep = np.array([bool(t) for t in clean], dtype=bool)
    probs = np.full((len(clean), len(labels)), np.nan)
    label = np.full(len(clean), "", dtype=object)
    top = np.full(len(clean), np.nan)
    if keep.any():
        kept = predictor.probabilities([t for t, k in zip(clean, keep) if k], progress)
        probs[keep], top[keep] = kept, kept.max(axis=1)
        label[keep] = [labels[i] for i in kept.argmax(axis=1)]
    if (~keep).any():
        log.warning("%d of %d text(s) are empty after preprocessing: no prediction, 'skipped' says so",
                    int((~keep).sum()), len(keep))
    return pd.DataFrame({"predicted_label": label, "predicted_probability": top,
                         **{f"prob_{lab}": probs[:, j] for j, lab in enumerate(labels)},
                         "skipped": np.where(keep, "", SKIPPED_EMPTY)})


def predict_table(predictor, df: pd.DataFrame, text_column: str = "text", progress: bool = False) -> pd.DataFrame:
    """``df`` with the prediction columns added after its own, every row kept in order.

    The text column is checked as training checks it (strings, file and row named); a missing
    text is an empty one (no prediction, marked ``skipped``); an input column that a prediction
    column would overwrite is refused.
    """
    source = df.attrs.get("source", "input")
    error = missing_columns_error(source, df, {text_column: "--text-column"})
    if error:
        raise error
    clash = [c for c in prediction_columns(predictor.labels) if c in df.columns]
    if clash:
        raise DataError(f"{source}: has column(s) {', '.join(map(repr, clash))}, which the predictions would "
                        "overwrite; rename them")
    texts = pd.DataFrame({"text": df[text_column].to_numpy(), "row": df.index.to_numpy()})
    texts.attrs = df.attrs
    check_types(texts, text_column, None)
    values = ["" if v is None or v != v else v for v in texts["text"]]
    return pd.concat([df.reset_index(drop=True), predictions_frame(predictor, values, progress)], axis=1)
