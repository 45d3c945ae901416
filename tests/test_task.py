"""The single-label / multi-label choice: probabilities, decisions and thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from emoclf.task import MIN_POSITIVES, MULTI, SINGLE, fit_thresholds, task_for

SINGLE_TASK, MULTI_TASK = task_for(SINGLE), task_for(MULTI)


def test_old_models_without_a_task_are_single_label():
    assert task_for(None).name == SINGLE and not task_for(None).multi_label


def test_single_label_probabilities_sum_to_one_and_decide_the_argmax():
    logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.1, 3.0]])
    probs = SINGLE_TASK.probabilities(logits, temperature=2.0, bias=[0.0, 1.0, 0.0])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    decided = SINGLE_TASK.decide(probs)
    assert decided.sum(axis=1).tolist() == [1, 1]
    assert SINGLE_TASK.labels_of(decided).tolist() == [0, 2]
    assert SINGLE_TASK.thresholds(probs, np.array([0, 2])) is None


def test_multi_label_probabilities_are_each_labels_own():
    logits = np.array([[2.0, 2.0, -3.0]])
    probs = MULTI_TASK.probabilities(logits)
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits)))
    np.testing.assert_allclose(MULTI_TASK.probabilities(logits, temperature=2.0), 1 / (1 + np.exp(-logits / 2)))


def test_multi_label_decisions_follow_each_labels_threshold():
    probs = np.array([[0.9, 0.4, 0.1], [0.2, 0.3, 0.25], [0.6, 0.6, 0.6]])
    decided = MULTI_TASK.decide(probs, [0.5, 0.35, 0.7])
    # Row 2: no label passes its threshold, so it gets its most probable label (label 1 at 0.3).
    assert decided.tolist() == [[True, True, False], [False, True, False], [True, True, False]]
    allowed = MULTI_TASK.decide(probs, [0.5, 0.35, 0.7], allow_empty=True)
    assert allowed[1].tolist() == [False, False, False]


def test_thresholds_maximise_each_labels_f1_and_rare_labels_share_one():
    rng = np.random.default_rng(0)
    n = 400
    y = np.zeros((n, 3), dtype=int)
    y[:200, 0] = 1  # frequent, well separated at 0.3
    y[rng.choice(n, 60, replace=False), 1] = 1
    y[: MIN_POSITIVES - 1, 2] = 1  # too rare for a threshold of its own
    probs = np.where(y == 1, 0.35, 0.25) + rng.uniform(-0.04, 0.04, size=y.shape)
    fitted = fit_thresholds(probs, y)
    assert 0.28 <= fitted.values[0] <= 0.31 and fitted.own[:2] == [True, True]
    assert fitted.own[2] is False and fitted.values[2] == fitted.shared
    assert MULTI_TASK.thresholds(probs, y, fixed=0.4).values == [0.4, 0.4, 0.4]
    assert set(fitted.to_dict(["a", "b", "c"])["per_label"]) == {"a", "b", "c"}


@pytest.mark.parametrize("task, y", [(SINGLE_TASK, [2, 0]), (MULTI_TASK, [[0, 1, 1], [1, 0, 0]])])
def test_targets_are_what_the_loss_takes(task, y):
    targets = task.targets(y, 3)
    if task.multi_label:
        assert targets == [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]
    else:
        assert targets == [2, 0]
    assert task.indicator(y, 3).tolist() == ([[0, 0, 1], [1, 0, 0]] if not task.multi_label else y)
