"""Imbalance: ratio, balanced class weights, the auto plan, and resampling by training-row index."""

from __future__ import annotations

import numpy as np
import pytest

from emoclf.imbalance import Plan, class_weights, imbalance_ratio, plan, resample_indices
from emoclf.task import MULTI, TASKS

# 8 x class 0, 4 x class 1, 2 x class 2 (ratio 4), shuffled so order matters nowhere.
LABELS = np.array([0, 1, 0, 2, 0, 1, 0, 0, 1, 2, 0, 0, 1, 0])


def test_imbalance_ratio():
    assert imbalance_ratio(LABELS, 3) == 4.0
    assert imbalance_ratio(np.array([0, 1, 2, 0, 1, 2]), 3) == 1.0
    assert imbalance_ratio(np.array([0, 0, 0, 1]), 2) == 3.0


def test_imbalance_ratio_absent_class_is_inf():
    assert imbalance_ratio(np.array([0, 0, 1]), 3) == float("inf")


def test_class_weights_balanced_inverse_frequency():
    weights = class_weights(LABELS, 3)
    n, k = len(LABELS), 3
    assert weights == pytest.approx([n / (k * 8), n / (k * 4), n / (k * 2)])
    assert weights == pytest.approx([0.583333, 1.166667, 2.333333])
    # "Mean 1 over samples": the average weight a training row gets is 1.
    assert np.mean(np.array(weights)[LABELS]) == pytest.approx(1.0, abs=1e-5)
    assert isinstance(weights, list) and all(isinstance(w, float) for w in weights)


def test_class_weights_uniform_for_balanced_data():
    assert class_weights(np.array([0, 1, 2, 2, 1, 0]), 3) == [1.0, 1.0, 1.0]


def test_class_weights_absent_class_gets_one():
    weights = class_weights(np.array([0, 0, 0, 2]), 3)
    assert weights == pytest.approx([4 / (2 * 3), 1.0, 4 / (2 * 1)])


def test_plan_auto_below_threshold_is_none():
    p = plan("auto", LABELS, 3, threshold=5.0)
    assert p == Plan("none", 4.0, "ce", None)


def test_plan_auto_at_threshold_is_none():
    assert plan("auto", LABELS, 3, threshold=4.0).strategy == "none"


def test_plan_auto_above_threshold_is_documented_choice():
    p = plan("auto", LABELS, 3, threshold=3.0)
    assert p.strategy == "class-weight" and p.imbalance_ratio == 4.0
    assert p.loss == "weighted-ce" and p.class_weights == class_weights(LABELS, 3)


def test_plan_auto_for_imbalanced_multi_label_data_is_the_asymmetric_loss():
    y = np.array([[1, 0, 0]] * 8 + [[0, 1, 0]] * 4 + [[1, 0, 1]] * 2)
    p = plan("auto", y, 3, threshold=3.0, task=TASKS[MULTI])
    assert (p.strategy, p.loss, p.class_weights, p.imbalance_ratio) == ("asl", "asl", None, 5.0)
    assert plan("auto", y, 3, threshold=5.0, task=TASKS[MULTI]).strategy == "none"


@pytest.mark.parametrize(
    ("strategy", "loss", "weighted"),
    [
        ("none", "ce", False),
        ("oversample", "ce", False),
        ("undersample", "ce", False),
        ("class-weight", "weighted-ce", True),
        ("focal", "focal", True),
        ("logit-adjust", "logit-adjusted", True),
    ],
)
def test_plan_explicit_strategies(strategy, loss, weighted):
    p = plan(strategy, LABELS, 3, threshold=100.0)
    assert (p.strategy, p.loss) == (strategy, loss)
    assert p.class_weights == (class_weights(LABELS, 3) if weighted else None)


@pytest.mark.parametrize("strategy", ["oversample", "undersample"])
def test_resample_equal_counts_and_valid_indices(strategy):
    idx = resample_indices(strategy, LABELS, seed=0)
    assert idx.ndim == 1 and idx.dtype.kind == "i"
    assert idx.min() >= 0 and idx.max() < len(LABELS)
    counts = np.bincount(LABELS[idx], minlength=3)
    assert counts.tolist() == ([8, 8, 8] if strategy == "oversample" else [2, 2, 2])
    if strategy == "oversample":
        assert set(idx.tolist()) == set(range(len(LABELS)))  # every original row is kept
    else:
        assert len(set(idx.tolist())) == len(idx)  # no row twice


@pytest.mark.parametrize("strategy", ["oversample", "undersample"])
def test_resample_seeded(strategy):
    a = resample_indices(strategy, LABELS, seed=1)
    assert np.array_equal(a, resample_indices(strategy, LABELS, seed=1))


def test_resample_seed_changes_undersample_choice():
    picks = {tuple(sorted(resample_indices("undersample", LABELS, seed=s).tolist())) for s in range(5)}
    assert len(picks) > 1


@pytest.mark.parametrize("strategy", ["none", "class-weight", "focal", "auto"])
def test_resample_identity_otherwise(strategy):
    assert resample_indices(strategy, LABELS, seed=0).tolist() == list(range(len(LABELS)))
