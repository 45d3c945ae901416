"""Class-imbalance detection and strategies, applied to the training split only.

``resample_indices`` returns row indices into the training frame (imbalanced-learn's random
samplers on the index), so validation and test frames are never touched by construction. Labels come as
class ids (single-label) or a texts x labels 0/1 matrix (multi-label), where a label's count is the texts that
have it; which strategies apply, and the loss each one trains with, is the task's (``emoclf.task``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from imblearn.over_sampling import RandomOverSampler
from imblearn.under_sampling import RandomUnderSampler
from sklearn.utils.class_weight import compute_class_weight

from emoclf.errors import ConfigError
from emoclf.task import SINGLE, TASKS, Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """What the trainer does about imbalance: which rows it trains on and which loss it uses."""

    strategy: str
    imbalance_ratio: float
    loss: str  # a key of make_loss: "ce", "weighted-ce", "logit-adjusted", "focal"; "bce", "weighted-bce", ...
    class_weights: list[float] | None  # per class; multi-label: each label's positive weight
    # With a hierarchy: the same inverse-frequency weights for its groups, so that the group term of the loss
    # does not undo the class weighting (None when the fine loss is unweighted or there is no hierarchy).
    group_weights: list[float] | None = None
    group_ids: list[int] | None = None  # each label's group, with a hierarchy


def label_counts(y: np.ndarray, num_labels: int) -> np.ndarray:
    """Texts per class: of class ids, or of a texts x labels 0/1 matrix (the texts that have each label)."""
    y = np.asarray(y)
    return y.sum(axis=0) if y.ndim == 2 else np.bincount(y, minlength=num_labels)


def imbalance_ratio(label_ids: np.ndarray, num_labels: int) -> float:
    """Largest over smallest class count in the training labels (inf if a class is absent)."""
    counts = label_counts(label_ids, num_labels)
    return float(counts.max() / counts.min()) if counts.min() > 0 else float("inf")


def class_weights(label_ids: np.ndarray, num_labels: int) -> list[float]:
    """Inverse-frequency ("balanced") weights from the training counts, mean 1 over samples."""
    present = np.unique(label_ids)
    weights = np.ones(num_labels)
    weights[present] = compute_class_weight("balanced", classes=present, y=label_ids)
    return weights.round(6).tolist()


def positive_weights(y: np.ndarray) -> list[float]:
    """Multi-label: each label's negatives over its positives (1 for a label without positives), the weight that
    makes a label's positives count as much as its negatives in a binary cross-entropy."""
    positives = y.sum(axis=0).astype(float)
    weights = np.where(positives > 0, (len(y) - positives) / np.maximum(positives, 1), 1.0)
    return weights.round(6).tolist()


def check_strategies(strategies, task: Task) -> None:
    """Refuse, in one line naming those that apply, strategies the task has no use for (resampling texts by one
    label, or adjusting one softmax, means nothing for multi-label data): before any training starts."""
    wrong = [s for s in strategies if s != "auto" and s not in task.losses]
    if wrong:
        raise ConfigError(
            f"imbalance {', '.join(map(repr, wrong))} {'does' if len(wrong) == 1 else 'do'} not apply to {task.name} "
            f"data; choose from auto, {', '.join(task.losses)}"
        )


def plan(
    strategy: str,
    label_ids: np.ndarray,
    num_labels: int,
    threshold: float,
    group_ids: list[int] | None = None,
    task: Task = TASKS[SINGLE],
) -> Plan:
    """Resolve ``auto`` against ``threshold`` and say which loss and weights go with the strategy (and, given
    each label's group, the groups' weights); a strategy the task has no use for is refused."""
    check_strategies([strategy], task)
    ratio = imbalance_ratio(label_ids, num_labels)
    if strategy == "auto":
        strategy = task.auto_imbalanced if ratio > threshold else "none"
        log.debug("imbalance ratio %.2f (threshold %.2f): strategy %s", ratio, threshold, strategy)
    loss = task.losses[strategy]
    weigh = positive_weights if task.multi_label else lambda y: class_weights(y, num_labels)
    weights = weigh(np.asarray(label_ids)) if loss not in ("ce", "bce", "asl") else None  # asl weighs by margin
    groups = None
    if weights is not None and group_ids is not None and not task.multi_label:
        groups = class_weights(np.asarray(group_ids)[label_ids], max(group_ids) + 1)
    return Plan(strategy, ratio, loss, weights, groups, group_ids)


def resample_indices(strategy: str, label_ids: np.ndarray, seed: int) -> np.ndarray:
    """Row indices of the training set after over- or under-sampling (identity otherwise)."""
    idx = np.arange(len(label_ids)).reshape(-1, 1)
    if strategy == "oversample":
        sampler = RandomOverSampler(random_state=seed)
    elif strategy == "undersample":
        sampler = RandomUnderSampler(random_state=seed)
    else:
        return idx.ravel()
    resampled, _ = sampler.fit_resample(idx, label_ids)
    return resampled.ravel()
