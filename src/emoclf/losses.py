"""Losses for imbalanced classification, in the ``compute_loss_func`` form the Trainer calls.

Each returns the summed loss divided by ``num_items_in_batch`` when the Trainer passes it, so
gradient accumulation gives the same update as one large batch. Each takes a label smoothing
``epsilon``: the target distribution is ``(1 - epsilon)`` on the label plus ``epsilon / K`` on each
of the K classes (Szegedy et al., 2016), so the model is not pushed towards infinite logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _reduce(per_item: torch.Tensor, num_items_in_batch: int | torch.Tensor | None) -> torch.Tensor:
    if num_items_in_batch is None:
        return per_item.mean()
    return per_item.sum() / num_items_in_batch


def _check_smoothing(epsilon: float) -> float:
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"label smoothing must be at least 0 and below 1, got {epsilon}")
    return epsilon


class WeightedCrossEntropy:
    """Cross-entropy with per-class weights ``w``: ``-w[y] log p_y``, averaged over items; with label
    smoothing ``-sum_k w[k] q_k log p_k`` over the smoothed target ``q`` (PyTorch's ``cross_entropy``).

    With ``weights=None`` it is plain cross-entropy.
    """

    def __init__(self, weights: list[float] | None = None, label_smoothing: float = 0.0) -> None:
        self.weights = torch.tensor(weights, dtype=torch.float32) if weights is not None else None
        self.label_smoothing = _check_smoothing(label_smoothing)

    def __call__(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        logits = outputs["logits"].float()
        w = self.weights.to(logits.device) if self.weights is not None else None
        per_item = F.cross_entropy(logits, labels, weight=w, reduction="none", label_smoothing=self.label_smoothing)
        return _reduce(per_item, num_items_in_batch)


class FocalLoss:
    """Focal loss (Lin et al., 2017): ``-alpha[y] (1 - p_y)^gamma log p_y``; with label smoothing,
    ``-sum_k alpha[k] q_k (1 - p_k)^gamma log p_k`` over the smoothed target ``q`` (class weights applied
    per class, as PyTorch's ``cross_entropy`` does).

    Down-weights examples the model already gets right; ``gamma=0`` with no alpha is
    cross-entropy. ``alpha`` is an optional per-class weight list.
    """

    def __init__(self, gamma: float = 2.0, alpha: list[float] | None = None, label_smoothing: float = 0.0) -> None:
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        self.gamma = gamma
        self.alpha = torch.tensor(alpha, dtype=torch.float32) if alpha is not None else None
        self.label_smoothing = _check_smoothing(label_smoothing)

    def __call__(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        logits = outputs["logits"].float()
        log_p = F.log_softmax(logits, dim=-1)
        target = F.one_hot(labels, logits.shape[-1]).float()
        if self.label_smoothing:
            target = target * (1.0 - self.label_smoothing) + self.label_smoothing / logits.shape[-1]
        if self.alpha is not None:
            target = target * self.alpha.to(logits.device)
        # Clamped: at p == 1 a gamma below 1 has an infinite slope, and 0 * inf is NaN for the zero-target classes.
        focus = (1.0 - log_p.exp()).clamp_min(1e-6) ** self.gamma
        loss = -(target * focus * log_p).sum(dim=-1)
        return _reduce(loss, num_items_in_batch)


class LogitAdjustedCrossEntropy:
    """Logit-adjusted cross-entropy (Menon et al., 2021): cross-entropy of ``logits + log prior``.

    The model learns logits that do not carry the training prior, so its plain argmax at prediction
    approximates the balanced-error-optimal rule, without the per-class weights that make rare classes
    over-predicted. ``weights`` are the "balanced" class weights ``1 / (K prior)``: ``-log w`` is the log
    prior up to a constant, which softmax ignores.
    """

    def __init__(self, weights: list[float], label_smoothing: float = 0.0) -> None:
        self.log_prior = -torch.log(torch.tensor(weights, dtype=torch.float32))
        self.label_smoothing = _check_smoothing(label_smoothing)

    def __call__(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        logits = outputs["logits"].float() + self.log_prior.to(outputs["logits"].device)
        per_item = F.cross_entropy(logits, labels, reduction="none", label_smoothing=self.label_smoothing)
        return _reduce(per_item, num_items_in_batch)


def make_loss(kind: str, weights: list[float] | None, gamma: float = 2.0, focal_alpha: bool = True,
              label_smoothing: float = 0.0):
    """The loss for an imbalance plan: ``ce``, ``weighted-ce``, ``logit-adjusted`` or ``focal``, each with
    ``label_smoothing``."""
    if kind == "focal":
        return FocalLoss(gamma, weights if focal_alpha else None, label_smoothing)
    if kind == "logit-adjusted":
        return LogitAdjustedCrossEntropy(weights, label_smoothing)
    return WeightedCrossEntropy(weights if kind == "weighted-ce" else None, label_smoothing)
