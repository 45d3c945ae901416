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


def _per_text(num_items_in_batch, labels: torch.Tensor):
    """The Trainer counts a multi-label batch's items as its label cells (texts x labels); the losses average
    over texts, as they average each text's labels."""
    return None if num_items_in_batch is None else num_items_in_batch / labels.shape[-1]


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


def _smoothed(labels: torch.Tensor, epsilon: float) -> torch.Tensor:
    """0/1 targets moved ``epsilon / 2`` towards 1/2: each label's two outcomes get ``epsilon`` spread evenly."""
    y = labels.float()
    return y * (1.0 - epsilon) + epsilon / 2 if epsilon else y


class BinaryCrossEntropy:
    """Multi-label: binary cross-entropy of each label's sigmoid output, averaged over the labels;
    ``pos_weight[k]`` multiplies label k's positive term (the class-weight analogue: a rare label's few positives
    count as much as its many negatives at ``pos_weight = negatives / positives``)."""

    def __init__(self, pos_weight: list[float] | None = None, label_smoothing: float = 0.0) -> None:
        self.pos_weight = torch.tensor(pos_weight, dtype=torch.float32) if pos_weight is not None else None
        self.label_smoothing = _check_smoothing(label_smoothing)

    def __call__(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        logits = outputs["logits"].float()
        w = self.pos_weight.to(logits.device) if self.pos_weight is not None else None
        y = _smoothed(labels, self.label_smoothing)
        per_item = F.binary_cross_entropy_with_logits(logits, y, pos_weight=w, reduction="none").mean(dim=-1)
        return _reduce(per_item, _per_text(num_items_in_batch, labels))


class BinaryFocalLoss:
    """Multi-label focal loss (Lin et al., 2017) per label: ``-(1 - p_t)^gamma log p_t`` with ``p_t`` the
    probability of the label's true outcome, averaged over the labels; ``pos_weight`` as in ``BinaryCrossEntropy``."""

    def __init__(self, gamma: float = 2.0, pos_weight: list[float] | None = None, label_smoothing: float = 0.0):
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        self.gamma = gamma
        self.pos_weight = torch.tensor(pos_weight, dtype=torch.float32) if pos_weight is not None else None
        self.label_smoothing = _check_smoothing(label_smoothing)

    def __call__(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        logits = outputs["logits"].float()
        y = _smoothed(labels, self.label_smoothing)
        w = self.pos_weight.to(logits.device) if self.pos_weight is not None else None
        bce = F.binary_cross_entropy_with_logits(logits, y, pos_weight=w, reduction="none")
        p = torch.sigmoid(logits)
        p_true = p * y + (1.0 - p) * (1.0 - y)
        per_item = ((1.0 - p_true).clamp_min(1e-6) ** self.gamma * bce).mean(dim=-1)
        return _reduce(per_item, _per_text(num_items_in_batch, labels))


class AsymmetricLoss:
    """Asymmetric loss for multi-label classification (Ridnik et al., ICCV 2021), averaged over the labels:
    ``-y (1 - p)^gamma_pos log p - (1 - y) p_m^gamma_neg log(1 - p_m)`` with ``p_m = max(p - clip, 0)``.

    Texts have few labels and many absent ones: the negatives' focusing (``gamma_neg`` > ``gamma_pos``) and the
    margin ``clip`` (an easy negative below it costs nothing, and a mislabelled negative with a high probability
    is not pushed down as hard) keep the many easy negatives from drowning the rare positives.
    """

    def __init__(
        self, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05, label_smoothing: float = 0.0
    ) -> None:
        if gamma_neg < 0 or gamma_pos < 0 or not 0.0 <= clip < 1.0:
            raise ValueError(
                f"asymmetric loss needs gammas >= 0 and 0 <= clip < 1, got {gamma_neg}, {gamma_pos}, {clip}"
            )
        self.gamma_neg, self.gamma_pos, self.clip = gamma_neg, gamma_pos, clip
        self.label_smoothing = _check_smoothing(label_smoothing)

    def __call__(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        logits = outputs["logits"].float()
        y = _smoothed(labels, self.label_smoothing)
        p = torch.sigmoid(logits)
        p_neg = (p - self.clip).clamp_min(0.0) if self.clip else p
        positive = (1.0 - p).clamp_min(1e-6) ** self.gamma_pos * F.logsigmoid(logits)
        # log(1 - p_m) = log(min(1 - p + clip, 1)); 1 - p = sigmoid(-x), kept in log space while unshifted.
        log_not = torch.log((torch.sigmoid(-logits) + self.clip).clamp(max=1.0)) if self.clip else F.logsigmoid(-logits)
        negative = p_neg.clamp_min(1e-6) ** self.gamma_neg * log_not
        per_item = -(y * positive + (1.0 - y) * negative).mean(dim=-1)
        return _reduce(per_item, _per_text(num_items_in_batch, labels))


class MultiLabelHierarchicalLoss:
    """Multi-label with groups of labels: the fine loss plus ``weight`` times the binary cross-entropy of each
    group, present when any of its labels is, with the group's logit the log-sum-exp of its members' logits (a
    smooth maximum: the group is as present as its most present label). Rare labels share what their group's
    frequent labels teach; the model and every prediction path stay those of the flat model."""

    def __init__(self, fine, group_ids: list[int], weight: float = 0.5) -> None:
        if weight < 0:
            raise ValueError(f"hierarchy weight must be >= 0, got {weight}")
        self.fine, self.weight = fine, weight
        member = F.one_hot(torch.tensor(group_ids), max(group_ids) + 1).T.bool()  # groups x labels
        self.mask = torch.zeros(member.shape).masked_fill(~member, float("-inf"))
        self.member = member.float()

    def __call__(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        fine = self.fine(outputs, labels, num_items_in_batch)
        if not self.weight:
            return fine
        logits = outputs["logits"].float()
        group_logits = torch.logsumexp(logits[:, None, :] + self.mask.to(logits.device), dim=-1)
        present = (labels.float() @ self.member.T.to(logits.device)).clamp(max=1.0)
        coarse = F.binary_cross_entropy_with_logits(group_logits, present, reduction="none").mean(dim=-1)
        return fine + self.weight * _reduce(coarse, _per_text(num_items_in_batch, labels))


def make_loss(
    kind: str,
    weights: list[float] | None,
    gamma: float = 2.0,
    focal_alpha: bool = True,
    label_smoothing: float = 0.0,
    group_ids: list[int] | None = None,
    hierarchy_weight: float = 0.5,
    group_weights: list[float] | None = None,
    asl_gamma_neg: float = 4.0,
    asl_clip: float = 0.05,
):
    """The loss for an imbalance plan: single-label ``ce``, ``weighted-ce``, ``logit-adjusted`` or ``focal``;
    multi-label ``bce``, ``weighted-bce`` (per-label positive weights), ``focal-bce`` or ``asl``; each with
    ``label_smoothing``. With ``group_ids`` (each label's group), wrapped in the hierarchy-aware loss of its task,
    whose group term (single-label) is weighted by ``group_weights`` exactly when the fine loss is weighted."""
    if kind in ("bce", "weighted-bce", "focal-bce", "asl"):
        pos_weight = weights if kind == "weighted-bce" or (kind == "focal-bce" and focal_alpha) else None
        if kind == "asl":
            fine = AsymmetricLoss(asl_gamma_neg, 0.0, asl_clip, label_smoothing)
        elif kind == "focal-bce":
            fine = BinaryFocalLoss(gamma, pos_weight, label_smoothing)
        else:
            fine = BinaryCrossEntropy(pos_weight, label_smoothing)
        return fine if group_ids is None else MultiLabelHierarchicalLoss(fine, group_ids, hierarchy_weight)
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
