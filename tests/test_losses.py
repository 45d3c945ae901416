"""Losses: focal and weighted cross-entropy against torch's own, and the num_items_in_batch reduction."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from emoclf.losses import FocalLoss, LogitAdjustedCrossEntropy, WeightedCrossEntropy, make_loss


def _batch(seed: int = 0, n: int = 16, k: int = 4):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g) * 2
    labels = torch.randint(0, k, (n,), generator=g)
    return {"logits": logits}, labels


def test_focal_gamma0_no_alpha_is_cross_entropy():
    out, y = _batch()
    assert torch.allclose(FocalLoss(gamma=0.0)(out, y), F.cross_entropy(out["logits"], y), atol=1e-6)


def test_focal_gamma0_with_alpha_is_weighted_per_item_mean():
    out, y = _batch(1)
    alpha = [0.5, 1.0, 2.0, 4.0]
    expected = (F.cross_entropy(out["logits"], y, reduction="none") * torch.tensor(alpha)[y]).mean()
    assert torch.allclose(FocalLoss(gamma=0.0, alpha=alpha)(out, y), expected, atol=1e-6)


def test_focal_matches_formula():
    out, y = _batch(2)
    gamma = 2.0
    p = F.softmax(out["logits"], dim=-1)[torch.arange(len(y)), y]
    expected = (-((1 - p) ** gamma) * torch.log(p)).mean()
    assert torch.allclose(FocalLoss(gamma=gamma)(out, y), expected, atol=1e-6)


def test_unweighted_ce_equals_torch():
    out, y = _batch(3)
    assert torch.allclose(WeightedCrossEntropy()(out, y), F.cross_entropy(out["logits"], y), atol=1e-6)


def test_weighted_ce_is_weighted_sum_over_items():
    # Documented: -w[y] log p_y averaged over *items* (sum / n), so that the num_items_in_batch form
    # (sum / num_items) agrees with it. torch's weighted 'mean' divides by sum(w[y]) instead.
    out, y = _batch(4)
    w = [0.5, 1.0, 2.0, 4.0]
    loss = WeightedCrossEntropy(w)(out, y)
    expected = F.cross_entropy(out["logits"], y, weight=torch.tensor(w), reduction="sum") / len(y)
    assert torch.allclose(loss, expected, atol=1e-6)


def test_weighted_ce_equals_torch_weighted_mean_when_weights_average_one():
    # With balanced class weights of this very batch (sum of w[y] == n), both normalisations agree.
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    counts = torch.bincount(labels).float()
    w = (len(labels) / (len(counts) * counts)).tolist()
    logits = torch.randn(len(labels), 3, generator=torch.Generator().manual_seed(5))
    loss = WeightedCrossEntropy(w)({"logits": logits}, labels)
    assert torch.allclose(loss, F.cross_entropy(logits, labels, weight=torch.tensor(w)), atol=1e-6)


@pytest.mark.parametrize("num", [7, torch.tensor(40)])
def test_num_items_in_batch_is_sum_over_num(num):
    out, y = _batch(6)
    w = [1.0, 3.0, 0.5, 2.0]
    per_item = F.cross_entropy(out["logits"], y, weight=torch.tensor(w), reduction="none")
    assert torch.allclose(WeightedCrossEntropy(w)(out, y, num_items_in_batch=num), per_item.sum() / num, atol=1e-6)
    focal = FocalLoss(gamma=1.5, alpha=w)
    per_item_focal = focal(out, y) * len(y)  # mean * n = sum
    assert torch.allclose(focal(out, y, num_items_in_batch=num), per_item_focal / num, atol=1e-5)


def test_gradient_accumulation_equivalence():
    out, y = _batch(7, n=12)
    loss_fn = WeightedCrossEntropy([1.0, 2.0, 3.0, 4.0])
    whole = loss_fn(out, y)
    halves = sum(
        loss_fn({"logits": out["logits"][s]}, y[s], num_items_in_batch=12) for s in (slice(0, 5), slice(5, 12))
    )
    assert torch.allclose(whole, halves, atol=1e-6)


def test_focal_lower_than_ce_on_confident_correct():
    labels = torch.tensor([0, 1, 2, 1])
    logits = torch.full((4, 3), -3.0)
    logits[torch.arange(4), labels] = 3.0  # p_y ~ 0.995
    out = {"logits": logits}
    ce = WeightedCrossEntropy()(out, labels)
    focal = FocalLoss(gamma=2.0)(out, labels)
    assert focal < ce / 100  # (1 - p)^2 ~ 6e-6: confident examples barely count
    assert FocalLoss(gamma=0.5)(out, labels) < ce


def test_losses_accept_half_precision_logits():
    out, y = _batch(8)
    half = {"logits": out["logits"].to(torch.bfloat16)}
    loss = FocalLoss(gamma=0.0)(half, y)
    assert loss.dtype == torch.float32
    assert torch.allclose(loss, F.cross_entropy(out["logits"].to(torch.bfloat16).float(), y), atol=1e-6)


def test_negative_gamma_raises():
    with pytest.raises(ValueError, match="^" + re.escape("focal gamma must be >= 0, got -0.5") + "$"):
        FocalLoss(gamma=-0.5)


def test_make_loss():
    w = [1.0, 2.0]
    focal = make_loss("focal", w, gamma=1.0)
    assert isinstance(focal, FocalLoss) and focal.gamma == 1.0 and focal.alpha.tolist() == w
    assert make_loss("focal", w, focal_alpha=False).alpha is None
    wce = make_loss("weighted-ce", w)
    assert isinstance(wce, WeightedCrossEntropy) and wce.weights.tolist() == w
    ce = make_loss("ce", w)
    assert isinstance(ce, WeightedCrossEntropy) and ce.weights is None


def test_label_smoothing_matches_torch_for_plain_and_weighted_cross_entropy():
    out, y = _batch(7)
    w = [0.5, 1.0, 2.0, 4.0]
    plain = F.cross_entropy(out["logits"], y, label_smoothing=0.1)
    assert torch.allclose(WeightedCrossEntropy(label_smoothing=0.1)(out, y), plain, atol=1e-6)
    weighted = F.cross_entropy(out["logits"], y, weight=torch.tensor(w), label_smoothing=0.1, reduction="sum") / len(y)
    assert torch.allclose(WeightedCrossEntropy(w, label_smoothing=0.1)(out, y), weighted, atol=1e-6)
    assert not torch.allclose(plain, F.cross_entropy(out["logits"], y), atol=1e-3)  # smoothing changed it


def test_focal_with_label_smoothing_follows_the_formula_and_is_ce_at_gamma0():
    out, y = _batch(8)
    eps, gamma, k = 0.2, 2.0, out["logits"].shape[1]
    assert torch.allclose(
        FocalLoss(gamma=0.0, label_smoothing=eps)(out, y),
        F.cross_entropy(out["logits"], y, label_smoothing=eps),
        atol=1e-6,
    )
    p = F.softmax(out["logits"], dim=-1)
    q = F.one_hot(y, k) * (1 - eps) + eps / k
    alpha = torch.tensor([0.5, 1.0, 2.0, 4.0])
    expected = (-(q * alpha * (1 - p) ** gamma * torch.log(p)).sum(dim=-1)).mean()
    assert torch.allclose(FocalLoss(gamma, alpha.tolist(), label_smoothing=eps)(out, y), expected, atol=1e-6)


def test_make_loss_passes_label_smoothing_and_refuses_out_of_range():
    assert make_loss("ce", None, label_smoothing=0.1).label_smoothing == 0.1
    assert make_loss("focal", [1.0, 2.0], 1.5, True, 0.05).label_smoothing == 0.05
    with pytest.raises(ValueError, match="label smoothing must be at least 0 and below 1, got 1.0"):
        make_loss("weighted-ce", [1.0, 2.0], label_smoothing=1.0)


def test_focal_stays_finite_when_a_wrong_class_is_certain():
    logits = torch.tensor([[200.0, 0.0, 0.0]], requires_grad=True)  # p(class 0) == 1.0 in float32
    loss = FocalLoss(gamma=0.5, label_smoothing=0.1)({"logits": logits}, torch.tensor([1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_logit_adjusted_ce_is_ce_of_logits_plus_log_prior():
    out, y = _batch(5)
    prior = torch.tensor([0.5, 0.25, 0.15, 0.10])
    weights = (1.0 / (4 * prior)).tolist()  # the "balanced" class weights of that prior
    expected = F.cross_entropy(out["logits"] + prior.log(), y)
    assert torch.allclose(LogitAdjustedCrossEntropy(weights)(out, y), expected, atol=1e-5)
    assert isinstance(make_loss("logit-adjusted", weights), LogitAdjustedCrossEntropy)


def test_logit_adjusted_ce_with_uniform_prior_is_plain_ce_and_pushes_rare_logits_up():
    out, y = _batch(6)
    assert torch.allclose(LogitAdjustedCrossEntropy([1.0] * 4)(out, y), F.cross_entropy(out["logits"], y), atol=1e-6)
    # The rare class's logit gets a larger push up for the same example than under plain CE.
    logits = torch.zeros(1, 2, requires_grad=True)
    LogitAdjustedCrossEntropy([0.55, 5.5])({"logits": logits}, torch.tensor([1])).backward()
    plain = torch.zeros(1, 2, requires_grad=True)
    F.cross_entropy(plain, torch.tensor([1])).backward()
    assert -logits.grad[0, 1] > -plain.grad[0, 1]


def test_hierarchy_wraps_the_logit_adjusted_loss_with_an_unweighted_group_term():
    from emoclf.losses import HierarchicalLoss

    out, y = _batch(7)
    weights = [0.5, 1.0, 2.0, 4.0]
    loss = make_loss("logit-adjusted", weights, group_ids=[0, 0, 1, 1], hierarchy_weight=0.5, group_weights=[1.0, 2.0])
    assert isinstance(loss, HierarchicalLoss) and isinstance(loss.fine, LogitAdjustedCrossEntropy)
    assert loss.group_weights is None  # the adjustment is not a class weighting; the group term stays plain
    assert torch.allclose(
        loss(out, y),
        LogitAdjustedCrossEntropy(weights)(out, y)
        + 0.5 * F.nll_loss(loss.group_log_probs(out["logits"]), torch.tensor([0, 0, 1, 1])[y]),
    )
