"""Classification metrics from scikit-learn, shaped for JSON, MLflow and reports."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def classification_metrics(y_true, y_pred, labels: list[str]) -> dict:
    """Accuracy, macro and weighted F1, per-class precision/recall/F1/support and the confusion matrix."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    ids = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=ids, average="weighted", zero_division=0)),
        "n": int(len(y_true)),
        "per_class": {
            lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, lab in enumerate(labels)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=ids).tolist(),
    }


def flat_metrics(metrics: dict, prefix: str = "test_") -> dict[str, float]:
    """Scalar metrics with per-class F1/precision/recall, as MLflow metric names."""
    out = {f"{prefix}{k}": metrics[k] for k in ("accuracy", "macro_f1", "weighted_f1")}
    for lab, row in metrics["per_class"].items():
        for k in ("precision", "recall", "f1"):
            out[f"{prefix}{k}_{lab}"] = row[k]
    return out
