"""What a prediction looks like, the same on every path.

A single request (CLI arguments, HTTP, ``Predictor.predict``) gets one record per text; a batch (files, the
MLflow model, Spark) gets one row per text with the same numbers as columns, and ``skipped``, which says why a row
has no prediction (its text is empty after preprocessing). Nothing is dropped or reordered.

Single-label: a ``Prediction`` (``label``, ``probability``: the label's, ``probabilities``: every class's, summing
to 1); columns ``predicted_label``, ``predicted_probability``, ``prob_<class>``. Multi-label: a
``MultiLabelPrediction`` (``labels``: every label over its threshold, most probable first, ``probabilities``:
every label's own probability); columns ``predicted_labels`` (``joy,relief``), ``prob_<label>``.

A model trained with a hierarchy (``--hierarchy``) adds groups; labels and probabilities are those of a flat
model, and a flat model's predictions have no group fields at all. Single-label: the predicted label's group and
that group's probability (the sum of its members'): ``group`` and ``group_probability``, columns
``predicted_group`` and ``group_probability``. Multi-label: every group with a predicted label, ``groups``
(column ``predicted_groups``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from emoclf.errors import DataError
from emoclf.hierarchy import Hierarchy, group_probabilities
from emoclf.task import Task

if TYPE_CHECKING:  # pandas is imported by the batch paths only: a single text predicts without its second
    import pandas as pd

log = logging.getLogger(__name__)

SKIPPED_EMPTY = "empty after preprocessing"
LABEL_SEPARATOR = ","  # between the labels of one text in ``predicted_labels``


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


@dataclass
class MultiLabelPrediction:
    """One text's labels (each over its threshold, most probable first; empty only for a model that allows no
    label) and every label's own probability (they need not sum to 1); with a hierarchy, every group one of the
    labels is in (None without one); ``truncated`` as for ``Prediction``."""

    labels: list[str]
    probabilities: dict[str, float]
    groups: list[str] | None = None
    truncated: bool = False


def prediction_columns(labels: list[str], hierarchy: Hierarchy | None = None, task: Task | None = None) -> list[str]:
    """The columns a batch prediction adds, in order."""
    probs = [f"prob_{lab}" for lab in labels]
    if task is not None and task.multi_label:
        return ["predicted_labels", *(["predicted_groups"] if hierarchy else []), *probs, "skipped"]
    groups = ["predicted_group", "group_probability"] if hierarchy else []
    return ["predicted_label", "predicted_probability", *groups, *probs, "skipped"]


def records(
    task: Task,
    probs: np.ndarray,
    decided: np.ndarray,
    labels: list[str],
    hierarchy: Hierarchy | None,
    truncated: np.ndarray | None = None,
):
    """One record per row of probabilities: ``Prediction``, or ``MultiLabelPrediction`` for a multi-label task;
    ``truncated`` marks the rows whose text was cut."""
    cut = np.zeros(len(probs), dtype=bool) if truncated is None else truncated
    if task.multi_label:
        return [
            MultiLabelPrediction(
                names := chosen_labels(p, d, labels),
                dict(zip(labels, map(float, p))),
                chosen_groups(names, hierarchy) if hierarchy else None,
                bool(c),
            )
            for p, d, c in zip(probs, decided, cut)
        ]
    groups = zip(*label_groups(probs, labels, hierarchy)) if hierarchy else ((None, None) for _ in probs)
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


def as_line(record: Prediction | MultiLabelPrediction) -> str:
    """A record as ``emoclf predict`` prints it before the text: ``joy<TAB>0.9100`` (and the group and its
    probability), or for a multi-label model ``joy 0.91, relief 0.63`` (and ``<TAB>groups: positive``)."""
    if isinstance(record, MultiLabelPrediction):
        chosen = ", ".join(f"{lab} {record.probabilities[lab]:.2f}" for lab in record.labels) or "(no label)"
        return chosen + (f"\tgroups: {', '.join(record.groups)}" if record.groups is not None else "")
    group = f"\t{record.group}\t{record.group_probability:.4f}" if record.group is not None else ""
    return f"{record.label}\t{record.probability:.4f}{group}"


def chosen_labels(probs: np.ndarray, decided: np.ndarray, labels: list[str]) -> list[str]:
    """The labels a text got, most probable first."""
    return [labels[j] for j in np.argsort(-probs, kind="stable") if decided[j]]


def chosen_groups(names: list[str], hierarchy: Hierarchy) -> list[str]:
    """Multi-label: every group (in the hierarchy's order) with a chosen label."""
    return [g for g, members in hierarchy.groups.items() if any(m in names for m in members)]


def label_groups(probs: np.ndarray, labels: list[str], hierarchy: Hierarchy) -> tuple[np.ndarray, np.ndarray]:
    """The group of each row's most probable label, and that group's probability (the sum of its members')."""
    ids = np.asarray(hierarchy.group_ids(labels), dtype=np.int64)[probs.argmax(axis=1)]
    group_probs = group_probabilities(probs, hierarchy, labels)
    return np.asarray(hierarchy.names, dtype=object)[ids], group_probs[np.arange(len(ids)), ids]


def _columns(predictor, kept: np.ndarray, keep: np.ndarray) -> dict[str, np.ndarray]:
    """The task's own prediction columns (all but ``prob_*`` and ``skipped``) for every row; ``kept`` holds the
    probabilities of the rows ``keep`` marks."""
    n, labels, hierarchy = len(keep), predictor.labels, predictor.hierarchy
    if predictor.task.multi_label:
        names = np.full(n, "", dtype=object)
        chosen = [chosen_labels(p, d, labels) for p, d in zip(kept, predictor.decide(kept))]
        names[keep] = [LABEL_SEPARATOR.join(c) for c in chosen]
        if not hierarchy:
            return {"predicted_labels": names}
        groups = np.full(n, "", dtype=object)
        groups[keep] = [LABEL_SEPARATOR.join(chosen_groups(c, hierarchy)) for c in chosen]
        return {"predicted_labels": names, "predicted_groups": groups}
    label, top = np.full(n, "", dtype=object), np.full(n, np.nan)
    top[keep], label[keep] = kept.max(axis=1), [labels[i] for i in kept.argmax(axis=1)]
    if not hierarchy:
        return {"predicted_label": label, "predicted_probability": top}
    group, group_prob = np.full(n, "", dtype=object), np.full(n, np.nan)
    group[keep], group_prob[keep] = label_groups(kept, labels, hierarchy)
    return {
        "predicted_label": label,
        "predicted_probability": top,
        "predicted_group": group,
        "group_probability": group_prob,
    }


def predictions_frame(predictor, texts: list[str], progress: bool = False) -> pd.DataFrame:
    """One row per text in input order, columns ``prediction_columns(predictor.labels, ...)``.

    A text that is empty after preprocessing keeps its row, with no label or probabilities and
    ``skipped`` saying why; ``skipped`` is empty for every predicted row.
    """
    import pandas as pd

    labels = predictor.labels
    clean = predictor.clean(texts)
    keep = np.array([bool(t) for t in clean], dtype=bool)
    probs = np.full((len(clean), len(labels)), np.nan)
    kept = np.zeros((0, len(labels)))
    if keep.any():
        kept = predictor.probabilities([t for t, k in zip(clean, keep) if k], progress)
        probs[keep] = kept
    if (~keep).any():
        log.warning(
            "%d of %d text(s) are empty after preprocessing: no prediction, 'skipped' says so",
            int((~keep).sum()),
            len(keep),
        )
    return pd.DataFrame(
        {
            **_columns(predictor, kept, keep),
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
    clash = [c for c in prediction_columns(predictor.labels, predictor.hierarchy, predictor.task) if c in df.columns]
    if clash:
        raise DataError(
            f"{source}: has column(s) {', '.join(map(repr, clash))}, which the predictions would overwrite; rename them"
        )
    texts = pd.DataFrame({"text": df[text_column].to_numpy(), "row": df.index.to_numpy()})
    texts.attrs = df.attrs
    check_types(texts, text_column, None)
    values = ["" if v is None or v != v else v for v in texts["text"]]
    return pd.concat([df.reset_index(drop=True), predictions_frame(predictor, values, progress)], axis=1)
