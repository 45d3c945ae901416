"""Single-label or multi-label: the one choice that the loss, the decision rule, the metrics and the prediction
records ask.

A single-label model gives each text one class: softmax probabilities that sum to 1, and the most probable class
is the label. A multi-label model gives each text every label whose probability passes that label's threshold:
one sigmoid probability per label, each independent of the others (a comment can be grateful *and* relieved).
The choice is made once, from the data (``--task auto``) or by the user, saved with the model as its name, and
every module asks ``task_for(name)`` for what differs instead of testing the task itself.

Labels of one text are always given as an indicator row of the K labels (0/1) where both tasks meet (metrics,
decisions); a single-label row has exactly one 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

SINGLE = "single-label"
MULTI = "multi-label"
TaskName = Literal["single-label", "multi-label"]

# A label needs this many positive validation texts for a threshold of its own: with fewer, the F1-optimal
# threshold is decided by one or two texts, so the label gets the shared threshold that maximises macro-F1 over
# all labels instead.
MIN_POSITIVES = 10
THRESHOLD_GRID = np.round(np.arange(0.02, 0.981, 0.01), 2)


# NumPy rather than SciPy: prediction imports this module, and SciPy adds a second to every start-up.
def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))  # never overflows, whatever the logit


@dataclass(frozen=True)
class Thresholds:
    """Per-label decision thresholds fitted on validation, and how each was chosen."""

    values: list[float]
    shared: float  # the one threshold that maximises validation macro-F1 over every label
    own: list[bool]  # whether a label has a threshold of its own (enough positives) or the shared one

    def to_dict(self, labels: list[str]) -> dict:
        return {
            "shared": self.shared,
            "min_positives": MIN_POSITIVES,
            "per_label": {lab: {"threshold": t, "own": o} for lab, t, o in zip(labels, self.values, self.own)},
        }


def _f1_by_threshold(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """F1 of every label (rows) at every threshold of the grid (columns)."""
    y = y.astype(bool)
    out = np.zeros((probs.shape[1], len(THRESHOLD_GRID)))
    for j, t in enumerate(THRESHOLD_GRID):
        pred = probs >= t
        tp = (pred & y).sum(axis=0)
        out[:, j] = 2 * tp / np.maximum(pred.sum(axis=0) + y.sum(axis=0), 1)
    return out


def fit_thresholds(probs: np.ndarray, y: np.ndarray) -> Thresholds:
    """Per label, the threshold of the grid maximising that label's F1 on (validation) ``probs``; labels with fewer
    than ``MIN_POSITIVES`` positives get the shared threshold (ties go to the threshold nearest the shared one)."""
    f1 = _f1_by_threshold(probs, y)
    positives = y.sum(axis=0)
    present = positives > 0
    shared = float(THRESHOLD_GRID[np.argmax(f1[present].mean(axis=0))]) if present.any() else 0.5
    values, own = [], []
    for k in range(probs.shape[1]):
        if positives[k] < MIN_POSITIVES:
            values.append(shared)
            own.append(False)
            continue
        best = np.flatnonzero(np.isclose(f1[k], f1[k].max()))
        values.append(float(THRESHOLD_GRID[best[np.argmin(np.abs(THRESHOLD_GRID[best] - shared))]]))
        own.append(True)
    return Thresholds(values, shared, own)


class Task:
    """Single-label classification: softmax over the classes, the most probable class is the label."""

    name: TaskName = SINGLE
    problem_type = "single_label_classification"  # transformers' config.problem_type
    multi_label = False
    # What each imbalance strategy trains with: (loss, training rows resampled by the strategy).
    losses = {
        "none": "ce",
        "oversample": "ce",
        "undersample": "ce",
        "class-weight": "weighted-ce",
        "focal": "focal",
        "logit-adjust": "logit-adjusted",
    }
    # Chosen by ``--imbalance auto`` on imbalanced data: class-weighted cross-entropy keeps every training row once
    # (no duplicated minority rows, no majority rows thrown away, no extra steps). Given the same optimizer steps it
    # ties with over-sampling and focal loss on the emotion data (0.858 vs 0.857 and 0.855, 3 seeds), and
    # over-sampling would make every epoch 2.2x longer (docs/experiments.md, matched optimizer steps).
    auto_imbalanced = "class-weight"

    def probabilities(self, logits: np.ndarray, temperature: float = 1.0, bias: list[float] | None = None):
        """What every prediction path returns: ``softmax((logits + bias) / T)``, rows summing to 1."""
        if bias is not None:
            logits = logits + np.asarray(bias, dtype=logits.dtype)
        return softmax(logits / temperature)

    def decide(self, probs: np.ndarray, thresholds: list[float] | None = None, allow_empty: bool = False):
        """The labels each text gets, as an indicator matrix: the most probable class."""
        out = np.zeros(probs.shape, dtype=bool)
        out[np.arange(len(probs)), probs.argmax(axis=1)] = True
        return out

    def thresholds(self, probs: np.ndarray, y: np.ndarray, fixed: float | None = None) -> Thresholds | None:
        """The decision thresholds fitted on (validation) ``probs`` and labels ``y``: none, the label is the
        most probable class."""
        return None

    def labels_of(self, decided: np.ndarray) -> np.ndarray:
        """Decisions (an indicator matrix) in the form labels are given: class ids."""
        return decided.argmax(axis=1)

    def indicator(self, label_ids, num_labels: int) -> np.ndarray:
        """Label ids (one int per text) as 0/1 rows."""
        out = np.zeros((len(label_ids), num_labels), dtype=np.int64)
        out[np.arange(len(label_ids)), np.asarray(label_ids, dtype=np.int64)] = 1
        return out

    def targets(self, label_ids, num_labels: int) -> list:
        """The training labels as the Trainer's ``labels`` column holds them: class ids."""
        return [int(i) for i in label_ids]

    def nll(self, scaled_logits, targets):
        """The negative log-likelihood that temperature scaling minimises (torch tensors)."""
        import torch.nn.functional as F

        return F.cross_entropy(scaled_logits, targets.long())

    def reliability_pairs(self, probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(confidence, correct) per prediction, for calibration: each text's top probability and whether its
        class is right."""
        return probs.max(axis=1), probs.argmax(axis=1) == np.asarray(y)


class MultiLabelTask(Task):
    """Multi-label classification: one sigmoid probability per label; a text gets every label whose probability
    reaches that label's threshold (fitted on validation), and, unless texts may have no label, its most probable
    label when none does."""

    name: TaskName = MULTI
    problem_type = "multi_label_classification"
    multi_label = True
    # Resampling texts by their one label has no meaning for texts with several: those strategies are refused.
    losses = {"none": "bce", "class-weight": "weighted-bce", "focal": "focal-bce", "asl": "asl"}
    # Every label is rare next to its negatives: on GoEmotions plain binary cross-entropy reached dev macro-F1 0.34
    # in 3 epochs, the asymmetric loss 0.51 (docs/experiments.md, GoEmotions).
    auto_imbalanced = "asl"

    def probabilities(self, logits: np.ndarray, temperature: float = 1.0, bias: list[float] | None = None):
        """``sigmoid(logits / T)``: each label's probability on its own."""
        return sigmoid(logits / temperature)

    def decide(self, probs: np.ndarray, thresholds=None, allow_empty: bool = False):
        """Every label whose probability reaches its threshold (0.5 without; a list or ``Thresholds``); with
        ``allow_empty`` off, a text none reaches gets its most probable label."""
        values = thresholds.values if isinstance(thresholds, Thresholds) else thresholds
        limits = np.full(probs.shape[1], 0.5) if values is None else np.asarray(values)
        out = probs >= limits
        if not allow_empty:
            none = ~out.any(axis=1)
            out[np.flatnonzero(none), probs[none].argmax(axis=1)] = True
        return out

    def thresholds(self, probs: np.ndarray, y: np.ndarray, fixed: float | None = None) -> Thresholds:
        """``fixed`` for every label, or per label the threshold maximising its F1 on (validation) ``probs``."""
        if fixed is not None:
            return Thresholds([fixed] * probs.shape[1], fixed, [False] * probs.shape[1])
        return fit_thresholds(probs, np.asarray(y))

    def labels_of(self, decided: np.ndarray) -> np.ndarray:
        return decided.astype(np.int64)

    def indicator(self, label_ids, num_labels: int) -> np.ndarray:
        """0/1 rows over the labels (what multi-label labels already are)."""
        return np.asarray(label_ids, dtype=np.int64).reshape(len(label_ids), num_labels)

    def targets(self, label_ids, num_labels: int) -> list:
        """The training labels as 0/1 floats, one per label (what a binary cross-entropy takes)."""
        return self.indicator(label_ids, num_labels).astype(np.float32).tolist()

    def nll(self, scaled_logits, targets):
        import torch.nn.functional as F

        return F.binary_cross_entropy_with_logits(scaled_logits, targets.to(scaled_logits.dtype))

    def reliability_pairs(self, probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(confidence, correct) per text and label: each label's probability and whether the text has it."""
        return probs.ravel(), np.asarray(y).astype(bool).ravel()


TASKS: dict[str, Task] = {SINGLE: Task(), MULTI: MultiLabelTask()}


def task_for(name: str | None) -> Task:
    """The task saved under ``name`` (models saved before multi-label existed have none: single-label)."""
    return TASKS[name or SINGLE]
