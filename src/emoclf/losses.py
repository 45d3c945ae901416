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


class HierarchicalLoss:
    """A hierarchy-aware loss: the fine loss plus ``weight`` times the negative log-likelihood of the true group,
    ``-v[g] log P(g)`` with ``P(g) = sum_{k in g} p_k``, computed stably as ``logsumexp`` of the members' logits
    minus ``logsumexp`` of all logits; ``v`` are optional group weights (the imbalance plan's, per group).

    The model is left as it is, K fine logits: mistakes across groups cost more than mistakes within one,
    yet every prediction path (PyTorch, ONNX, MLflow, serve) returns exactly a flat model's labels and
    probabilities, and group probabilities are sums of label probabilities, so a group never disagrees
    with its label (as a separate coarse head can). ``weight=0`` is the fine loss.
    """

    def __init__(
        self, fine, group_ids: list[int], weight: float = 0.5, group_weights: list[float] | None = None
    ) -> None:
        if weight < 0:
            raise ValueError(f"hierarchy weight must be >= 0, got {weight}")
        self.fine, self.weight = fine, weight
        n_groups = max(group_ids) + 1
        # Additive mask, groups x labels: 0 for a member, -inf otherwise, so logsumexp runs over the members only.
        member = F.one_hot(torch.tensor(group_ids), n_groups).T.bool()
        self.mask = torch.zeros(member.shape).masked_fill(~member, float("-inf"))
        self.group_of = torch.tensor(group_ids)
        self.group_weights = torch.tensor(group_weights, dtype=torch.float32) if group_weights is not None else None

    def group_log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """log P(group) per row: logsumexp over each group's logits minus logsumexp over all."""
        log_p = F.log_softmax(logits.float(), dim=-1)
        return torch.logsumexp(log_p[:, None, :] + self.mask.to(logits.device), dim=-1)

    def __call__(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        fine = self.fine(outputs, labels, num_items_in_batch)
        if not self.weight:
            return fine
        log_g = self.group_log_probs(outputs["logits"])
        v = self.group_weights.to(log_g.device) if self.group_weights is not None else None
        coarse = F.nll_loss(log_g, self.group_of.to(labels.device)[labels], weight=v, reduction="none")
        return fine + self.weight * _reduce(coarse, num_items_in_batch)


def make_loss(
    kind: str,
    weights: list[float] | None,
    gamma: float = 2.0,
    focal_alpha: bool = True,
    label_smoothing: float = 0.0,
    group_ids: list[int] | None = None,
    hierarchy_weight: float = 0.5,
    group_weights: list[float] | None = None,
):
    """The loss for an imbalance plan: ``ce``, ``weighted-ce``, ``logit-adjusted`` or ``focal``, each with
    ``label_smoothing``; with ``group_ids`` (each label's group), wrapped in ``HierarchicalLoss``, whose group
    term is weighted by ``group_weights`` exactly when the fine loss is weighted by ``weights``."""
    weighted = kind == "weighted-ce" or (kind == "focal" and focal_alpha)
    if kind == "focal":
        fine = FocalLoss(gamma, weights if weighted else None, label_smoothing)
    elif kind == "logit-adjusted":
        fine = LogitAdjustedCrossEntropy(weights, label_smoothing)
    else:
        fine = WeightedCrossEntropy(weights if weighted else None, label_smoothing)
    if group_ids is None:
        return fine
    return HierarchicalLoss(fine, group_ids, hierarchy_weight, group_weights if weighted else None)
