"""Losses for imbalanced classification, in the ``compute_loss_func`` form the Trainer calls.

Each returns the summed loss divided by ``num_items_in_batch`` when the Trainer passes it, so
gradient accumulation gives the same update as one large batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _reduce(per_item: torch.Tensor, num_items_in_batch: int | torch.Tensor | None) -> torch.Tensor:
    if num_items_in_batch is None:
        return per_item.mean()
    return per_item.sum() / num_items_in_batch


class WeightedCrossEntropy:
    """Cross-entropy with per-class weights ``w``: ``-w[y] log p_y``, averaged over items.

    With ``weights=None`` it is plain cross-entropy.
    """

    def __init__(self, weights: list[float] | None = None) -> None:
        self.weights = torch.tensor(weights, dtype=torch.float32) if weights is not None else None

    def __call__(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        logits = outputs["logits"].float()
        w = self.weights.to(logits.device) if self.weights is not None else None
        return _reduce(F.cross_entropy(logits, labels, weight=w, reduction="none"), num_items_in_batch)


class FocalLoss:
    """Focal loss (Lin et al., 2017): ``-alpha[y] (1 - p_y)^gamma log p_y``.

    Down-weights examples the model already gets right; ``gamma=0`` with no alpha is
    cross-entropy. ``alpha`` is an optional per-class weight list.
    """

    def __init__(self, gamma: float = 2.0, alpha: list[float] | None = None) -> None:
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        self.gamma = gamma
        self.alpha = torch.tensor(alpha, dtype=torch.float32) if alpha is not None else None

    def __call__(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        logits = outputs["logits"].float()
        log_p = F.log_softmax(logits, dim=-1).gather(1, labels.unsqueeze(1)).squeeze(1)
        loss = -((1.0 - log_p.exp()) ** self.gamma) * log_p
        if self.alpha is not None:
            loss = loss * self.alpha.to(logits.device)[labels]
        return _reduce(loss, num_items_in_batch)


def make_loss(kind: str, weights: list[float] | None, gamma: float = 2.0, focal_alpha: bool = True):
    """The loss for an imbalance plan: ``ce``, ``weighted-ce`` or ``focal``."""
    if kind == "focal":
        return FocalLoss(gamma, weights if focal_alpha else None)
    if kind == "weighted-ce":
        return WeightedCrossEntropy(weights)
    return WeightedCrossEntropy(None)
