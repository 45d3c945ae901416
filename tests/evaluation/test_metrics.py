"""Metrics: a class without rows in the evaluated texts is named, not scored as 0."""

from __future__ import annotations

import pytest
from sklearn.metrics import f1_score

from emoclf.evaluation.metrics import classification_metrics, flat_metrics, macro_f1
from emoclf.evaluation.report import markdown_table

LABELS = ["anger", "joy", "surprise"]


def test_macro_f1_is_over_the_classes_present_and_says_so():
    y_true = [0, 0, 1, 1, 1]  # no surprise
    y_pred = [0, 1, 1, 1, 2]  # one text wrongly called surprise
    m = classification_metrics(y_true, y_pred, LABELS)
    present = f1_score(y_true, y_pred, labels=[0, 1], average="macro")
    assert m["macro_f1"] == pytest.approx(present) == pytest.approx(macro_f1(y_true, y_pred))
    # Scoring the absent class as F1 0 would have reported two thirds of that.
    assert f1_score(y_true, y_pred, labels=[0, 1, 2], average="macro", zero_division=0) == pytest.approx(
        present * 2 / 3
    )
    assert m["classes_absent"] == ["surprise"]
    assert m["per_class"]["surprise"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    assert "test/f1_surprise" not in flat_metrics(m) and "test/f1_joy" in flat_metrics(m)
    table = markdown_table(m)
    assert "| surprise | n/a | n/a | n/a | 0 |" in table
    assert table.rstrip().endswith(
        "No rows of surprise in these texts: their F1 cannot be measured, and macro-F1 "
        "is the mean over the other 2 classes."
    )


def test_every_class_present_is_the_usual_macro_f1():
    y_true, y_pred = [0, 1, 2, 2], [0, 1, 2, 1]
    m = classification_metrics(y_true, y_pred, LABELS)
    assert m["classes_absent"] == [] and "No rows" not in markdown_table(m)
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))


def test_labels_become_metric_names_mlflow_admits_and_a_shared_one_is_refused():
    from mlflow.utils.validation import _validate_metric_name

    from emoclf.errors import ConfigError
    from emoclf.evaluation.metrics import metric_labels

    labels = ["joy «x»", "café", "a/b", "anger"]
    m = classification_metrics([0, 1, 2, 3], [0, 1, 2, 3], labels)
    names = flat_metrics(m)
    assert {"test/f1_joy _x_", "test/f1_café", "test/f1_a_b", "test/f1_anger"} <= set(names)
    for name in names:
        _validate_metric_name(name)  # MLflow's own check: every name passes
    assert metric_labels(labels) == {"joy «x»": "joy _x_", "café": "café", "a/b": "a_b", "anger": "anger"}
    with pytest.raises(
        ConfigError,
        match=r"^labels 'joy«', 'joy»' would share the MLflow metric names of 'joy_' \(MLflow admits letters, "
        r"digits, '_', '-', '\.' and spaces\); rename them apart, or pass --no-tracking$",
    ):
        metric_labels(["joy«", "joy»", "anger"])
