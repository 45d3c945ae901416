"""Classification metrics from scikit-learn, shaped for JSON, MLflow and reports."""

from __future__ import annotations

import re

import numpy as np

from emoclf.errors import ConfigError

# MLflow refuses a metric whose name holds anything but letters, digits, "_", "-", ".", " ", "/" (and ":" but not
# on Windows); a label's other characters become "_" in the names that carry it ("joy «x»" -> "f1_joy _x_").
_UNSAFE_IN_METRIC_NAME = re.compile(r"[^\w.\- ]")


def metric_label(label: str) -> str:
    """``label`` as it appears in MLflow metric names (reports keep it as it is)."""
    return _UNSAFE_IN_METRIC_NAME.sub("_", label)


def metric_labels(labels: list[str]) -> dict[str, str]:
    """Each label's ``metric_label``; labels that would share one are refused, or their metrics would overwrite
    each other's."""
    forms: dict[str, list[str]] = {}
    for label in labels:
        forms.setdefault(metric_label(label), []).append(label)
    shared = next(((form, same) for form, same in forms.items() if len(same) > 1), None)
    if shared:
        raise ConfigError(
            f"labels {', '.join(map(repr, shared[1]))} would share the MLflow metric names of {shared[0]!r} (MLflow "
            "admits letters, digits, '_', '-', '.' and spaces); rename them apart, or pass --no-tracking"
        )
    return {label: metric_label(label) for label in labels}


def macro_f1(y_true, y_pred) -> float:
    """Macro-F1 over the classes present in ``y_true``: a class with no rows there has no F1 to average
    (counting it as 0 would report a model as worse than it is; predicting it still costs the true class's recall)."""
    from sklearn.metrics import f1_score  # here, not above: formatting scores (model cards, pages) needs no sklearn

    y_true = np.asarray(y_true)
    # Multi-label: a texts x labels 0/1 matrix, whose present labels are the columns with a positive.
    present = np.flatnonzero(y_true.sum(axis=0)) if y_true.ndim == 2 else np.unique(y_true)
    return float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))


def classification_metrics(y_true, y_pred, labels: list[str]) -> dict:
    """Accuracy, macro and weighted F1, per-class precision/recall/F1/support and the confusion matrix.

    Classes without rows in ``y_true`` are listed in ``classes_absent``; their per-class scores are
    None (not measurable) and macro-F1 averages over the others.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    ids = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    absent = [lab for i, lab in enumerate(labels) if s[i] == 0]
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": macro_f1(y_true, y_pred),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=ids, average="weighted", zero_division=0)),
        "n": int(len(y_true)),
        "classes_absent": absent,
        "per_class": {
            lab: (
                {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                if s[i]
                else {"precision": None, "recall": None, "f1": None, "support": 0}
            )
            for i, lab in enumerate(labels)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=ids).tolist(),
    }


def group_metrics(confusion, labels: list[str], groups: dict[str, list[str]]) -> dict:
    """Scores over groups of labels (a hierarchy), from the labels' confusion matrix: a prediction counts as right
    when its label is in the true label's group. Macro-F1 averages the groups with rows, as ``macro_f1`` does."""
    member = np.array([[lab in m for m in groups.values()] for lab in labels], dtype=np.int64)  # labels x groups
    cm = member.T @ np.asarray(confusion, dtype=np.int64) @ member
    tp, support, predicted = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    f1 = 2 * tp / np.maximum(support + predicted, 1)
    return {
        "groups": {g: list(m) for g, m in groups.items()},
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "macro_f1": float(f1[support > 0].mean()),
        "per_group": {g: {"f1": float(f1[j]), "support": int(support[j])} for j, g in enumerate(groups)},
        "confusion_matrix": cm.tolist(),
    }


# Multi-label evaluations have these too (``evaluation.multilabel``).
MULTI_LABEL_HEADLINE = ("micro_f1", "samples_f1", "hamming_loss", "macro_roc_auc", "macro_average_precision")


def model_metrics(metrics: dict) -> dict:
    """What a model folder keeps of its test evaluation: the headline, each class's scores, what it mixes up (the
    model card's known weaknesses), and the groups'."""
    extra = {k: metrics[k] for k in ("task", *MULTI_LABEL_HEADLINE) if k in metrics}
    return {
        **{k: metrics[k] for k in ("accuracy", "macro_f1", "weighted_f1", "n")},
        **extra,
        "per_class": metrics["per_class"],
        # Single-label: the confusion matrix; multi-label: the label pairs mixed up most.
        **{k: metrics[k] for k in ("confusion_matrix", "confused_pairs", "groups") if k in metrics},
    }


def flat_metrics(metrics: dict, prefix: str = "test/") -> dict[str, float]:
    """Scalar metrics with per-class F1/precision/recall, as MLflow metric names (labels as ``metric_label``)."""
    out = {f"{prefix}{k}": metrics[k] for k in ("accuracy", "macro_f1", "weighted_f1")}
    out.update({f"{prefix}{k}": metrics[k] for k in MULTI_LABEL_HEADLINE if metrics.get(k) is not None})
    if "groups" in metrics:
        out.update({f"{prefix}group_{k}": metrics["groups"][k] for k in ("accuracy", "macro_f1")})
    for lab, row in metrics["per_class"].items():
        for k in ("precision", "recall", "f1", "threshold"):
            if row.get(k) is not None:  # a class absent from the split has no score to log
                out[f"{prefix}{k}_{metric_label(lab)}"] = row[k]
    return out


def headline(m: dict) -> str:
    """The scores a terminal line leads with: multi-label's accuracy is subset accuracy (every label of a text
    right), far below what "accuracy" means to a reader, so it is named so and comes after the F1 scores."""
    if m.get("task") == "multi-label":
        return (
            f"macro-F1 {m['macro_f1']:.4f}, micro-F1 {m['micro_f1']:.4f}, samples F1 {m['samples_f1']:.4f}, "
            f"subset accuracy {m['accuracy']:.4f}"
        )
    return f"accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}, weighted F1 {m['weighted_f1']:.4f}"


def score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def absent_note(metrics: dict) -> str:
    """Why macro-F1 leaves classes out, or nothing when every class has rows."""
    absent = metrics.get("classes_absent") or []
    if not absent:
        return ""
    n = len(metrics["per_class"]) - len(absent)
    return (
        f"No rows of {', '.join(absent)} in these texts: their F1 cannot be measured, and macro-F1 is the "
        f"mean over the other {n} classes."
    )


def training_note(metrics: dict) -> str:
    """How long the model trained, and whether the minimum-steps floor raised it, or nothing."""
    t = metrics.get("training")
    if not t or "optimizer_steps" not in t:
        return ""
    floor = (
        f"; {t['planned_steps']} planned steps were raised to the --min-steps floor of {t['steps']}, as "
        "small data needs"
        if t["min_steps_applied"]
        else ""
    )
    return (
        f"Trained {t['optimizer_steps']} optimizer steps ({t['steps_per_epoch']} per epoch, "
        f"{t['examples_seen']} examples seen){floor}."
    )
