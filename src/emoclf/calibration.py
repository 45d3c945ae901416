"""Post-hoc calibration fitted on the validation split: temperature scaling and per-class logit bias.

Temperature scaling (Guo et al., 2017) divides logits by one scalar ``T`` fitted to minimise the
validation negative log-likelihood; it changes confidences, never the predicted class. The
optional class bias adds per-class offsets to the logits, fitted to maximise validation
macro-F1; it does change predictions, so its effect on test is reported, helpful or not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from emoclf.task import SINGLE, TASKS, Task

log = logging.getLogger(__name__)

N_BINS = 15
T_MIN, T_MAX = 0.05, 20.0


@dataclass
class TemperatureChoice:
    """The temperature kept, the one fitted, and why they differ when they do."""

    temperature: float
    fitted: float
    validation_ece_before: float
    validation_ece_fitted: float
    reason: str | None  # None when the fitted temperature is kept

    def report(self) -> dict:
        return {
            "fitted_temperature": self.fitted,
            "temperature_kept": self.reason is None,
            "validation_ece_before": self.validation_ece_before,
            "validation_ece_fitted": self.validation_ece_fitted,
            "temperature_note": self.reason,
        }


def choose_temperature(logits: np.ndarray, labels: np.ndarray, task: Task = TASKS[SINGLE]) -> TemperatureChoice:
    """The fitted temperature, or 1 when the fit cannot be trusted: it ran towards a bound (a small or
    separable validation set drives T towards 0, making every later confidence ~1), or it does not
    lower the validation ECE."""
    fitted = fit_temperature(logits, labels, task=task)
    before = expected_calibration_error(task.probabilities(logits), labels, task=task)
    after = expected_calibration_error(task.probabilities(logits, fitted), labels, task=task)
    reason = None
    if not 2 * T_MIN < fitted < T_MAX / 2:
        reason = f"the fit ran towards its bound (T = {fitted:.3g}), as a small or separable validation set makes it do"
    elif not after < before:
        reason = f"it did not lower the validation ECE ({before:.4f} -> {after:.4f})"
    if reason:
        log.warning("temperature scaling not applied (T = 1): %s, with %d validation texts", reason, len(labels))
    return TemperatureChoice(fitted if reason is None else 1.0, fitted, before, after, reason)


def calibrated_probs(logits: np.ndarray, temperature: float = 1.0, class_bias: list[float] | None = None) -> np.ndarray:
    """Probabilities as every prediction path computes them: ``softmax((logits + bias) / T)``."""
    if class_bias is not None:
        logits = logits + np.asarray(class_bias, dtype=logits.dtype)
    # scipy.special.softmax's arithmetic, without importing scipy on the prediction path (start-up).
    shifted = np.exp(logits / temperature - (logits / temperature).max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 200, task: Task = TASKS[SINGLE]) -> float:
    """The temperature minimising the task's NLL on (validation) logits (cross-entropy of the softmax, or binary
    cross-entropy of each label's sigmoid); optimised in log space so it stays positive."""
    x = torch.tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.tensor(np.asarray(labels))
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = task.nll(x / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(T_MIN, T_MAX))


def reliability_bins(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS, task: Task = TASKS[SINGLE]
) -> list[dict]:
    """Each non-empty equal-width confidence bin: its range, its predictions, their mean confidence and accuracy.
    A prediction is a text's top class (single-label) or one label of one text (multi-label: each label's
    probability against whether the text has it)."""
    conf, correct = task.reliability_pairs(probs, labels)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    return [
        {
            "lower": b / n_bins,
            "upper": (b + 1) / n_bins,
            "count": int(mask.sum()),
            "confidence": float(conf[mask].mean()),
            "accuracy": float(correct[mask].mean()),
        }
        for b in range(n_bins)
        if (mask := bins == b).any()
    ]


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS, task: Task = TASKS[SINGLE]
) -> float:
    """Weighted mean gap between confidence and accuracy over equal-width confidence bins."""
    return float(ece_of_bins(reliability_bins(probs, labels, n_bins, task)))


def fit_class_bias(
    logits: np.ndarray, labels: np.ndarray, rounds: int = 3, grid: np.ndarray | None = None
) -> list[float]:
    """Per-class logit offsets maximising macro-F1, by coordinate ascent over a grid (class 0 fixed at 0)."""
    from sklearn.metrics import f1_score  # imported here: scikit-learn takes seconds, prediction never fits

    grid = np.linspace(-2.0, 2.0, 41) if grid is None else grid
    n = logits.shape[1]
    bias = np.zeros(n)

    def score(b: np.ndarray) -> float:
        return f1_score(labels, (logits + b).argmax(axis=1), average="macro", labels=list(range(n)), zero_division=0)

    best = score(bias)
    for _ in range(rounds):
        improved = False
        for c in range(1, n):
            for value in grid:
                trial = bias.copy()
                trial[c] = value
                s = score(trial)
                if s > best + 1e-9:
                    best, bias, improved = s, trial, True
        if not improved:
            break
    return bias.round(4).tolist()


def ece_of_bins(bins: list[dict]) -> float:
    return sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins) / max(sum(b["count"] for b in bins), 1)


def draw_reliability(
    ax, before: list[dict], after: list[dict], title: str = "reliability (test)", legend: bool = True
) -> None:
    """Accuracy per confidence bin as bars (after temperature scaling; before as an outline), the texts in
    each bin written on its bar, and the diagonal a calibrated model would follow. Without ``legend`` the
    title carries the ECEs and the caller adds one legend for several panels."""
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="calibrated")
    for bins, name, style in (
        (before, "before scaling", {"fill": False, "edgecolor": "tab:orange", "linewidth": 1.5}),
        (after, "after scaling", {"color": "tab:blue", "alpha": 0.75}),
    ):
        if not bins:
            continue
        bars = ax.bar(
            [b["lower"] for b in bins],
            [b["accuracy"] for b in bins],
            width=[b["upper"] - b["lower"] for b in bins],
            align="edge",
            label=f"{name} (ECE {ece_of_bins(bins):.3f})" if legend else name,
            **style,
        )
        if bins is after:
            ax.bar_label(bars, labels=[str(b["count"]) for b in bins], fontsize=9 if legend else 7, padding=2)
    if not legend:
        title = f"{title}\nECE {ece_of_bins(before):.3f} -> {ece_of_bins(after):.3f}"
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.12), title=title)
    if legend:  # below the axes: inside, it covered bars
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=9, frameon=False)


def plot_reliability(
    probs_before: np.ndarray,
    probs_after: np.ndarray,
    labels: np.ndarray,
    path: Path,
    n_bins: int = N_BINS,
    task: Task = TASKS[SINGLE],
) -> Path:
    """The reliability diagram of ``draw_reliability`` as a PNG; numbers on the bars count predictions."""
    from matplotlib.figure import Figure  # imported here: prediction paths import this module and never plot

    fig = Figure(figsize=(6, 4.6), dpi=100)
    bins = [reliability_bins(p, labels, n_bins, task) for p in (probs_before, probs_after)]
    draw_reliability(fig.subplots(), *bins)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")  # legends below the axes included
    return path
