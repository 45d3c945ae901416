"""Write an evaluation to disk: metrics JSON, markdown table, plots, misclassified examples and an HTML page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

# A bare Figure draws headless with no pyplot state: a notebook user's backend is left alone.
from matplotlib.figure import Figure

from emoclf.calibration import plot_reliability
from emoclf.evaluation.html import render as render_html
from emoclf.evaluation.metrics import absent_note, score, training_note
from emoclf.layout import (
    CONFUSION_PNG,
    CONTEXT_JSON,
    CURVES_PNG,
    HISTORY_JSON,
    METRICS_JSON,
    MISCLASSIFIED_CSV,
    PER_CLASS_PNG,
    RELIABILITY_PNG,
    REPORT_HTML,
    REPORT_MD,
)


def markdown_table(metrics: dict) -> str:
    lines = [
        f"accuracy **{metrics['accuracy']:.4f}**, macro-F1 **{metrics['macro_f1']:.4f}**, "
        f"weighted F1 **{metrics['weighted_f1']:.4f}** on {metrics['n']} texts",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---:|---:|---:|---:|",
    ]
    for lab, row in metrics["per_class"].items():
        lines.append(
            f"| {lab} | {score(row['precision'])} | {score(row['recall'])} | {score(row['f1'])} | {row['support']} |"
        )
    if "groups" in metrics:
        g = metrics["groups"]
        lines += [
            "",
            f"groups: accuracy **{g['accuracy']:.4f}**, macro-F1 **{g['macro_f1']:.4f}** "
            f"(a label counts as right when it is in the true label's group)",
            "",
            "| group | labels | F1 | support |",
            "|---|---|---:|---:|",
        ]
        lines += [
            f"| {name} | {', '.join(g['groups'][name])} | {row['f1']:.4f} | {row['support']} |"
            for name, row in g["per_group"].items()
        ]
    if absent_note(metrics):
        lines += ["", absent_note(metrics)]
    if training_note(metrics):
        lines += ["", training_note(metrics)]
    return "\n".join(lines) + "\n"


def figure(width: float, height: float) -> Figure:
    """A figure drawn at the page's scale: 100 dpi, at most 10.5 inches wide (the report is 1,100 px), so a
    10-point label reads at 14 px instead of being shrunk to fit."""
    return Figure(figsize=(min(width, 10.5), height), dpi=100)


def draw_confusion(ax, cm: np.ndarray, labels: list[str], title: str, normalised: bool) -> None:
    data = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalised else cm
    ax.imshow(data, cmap="Blues", vmin=0)
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(labels, rotation=40, ha="right")
    ax.set_yticklabels(labels)
    top = data.max() or 1
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                format(data[i, j], ".2f" if normalised else "d"),
                ha="center",
                va="center",
                fontsize=11 if len(labels) <= 8 else 8,
                color="white" if data[i, j] > top / 2 else "black",
            )


def plot_confusion(cm: list[list[int]], labels: list[str], path: Path) -> Path:
    """Counts and row-normalised (recall per true class) side by side."""
    cm = np.asarray(cm)
    fig = figure(2 * (1.6 + 0.75 * len(labels)), 1.6 + 0.7 * len(labels))
    axes = fig.subplots(1, 2)
    draw_confusion(axes[0], cm, labels, "counts", normalised=False)
    draw_confusion(axes[1], cm, labels, "share of each true class", normalised=True)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")  # legends below the axes included
    return path


def draw_per_class_f1(ax, metrics: dict, title: str = "F1 per class") -> None:
    """Bars with their values written inside (above the short ones) and macro-F1 as a line named in the
    legend, so that no line runs through a number."""
    labels = list(metrics["per_class"])
    f1 = [metrics["per_class"][lab]["f1"] or 0.0 for lab in labels]  # absent classes: an empty bar, named below
    bars = ax.bar(labels, f1, color="tab:blue")
    inside = [f"{v:.3f}" if v >= 0.25 else "" for v in f1]
    above = [f"{v:.3f}" if v < 0.25 else "" for v in f1]
    ax.bar_label(bars, labels=inside, label_type="center", color="white", fontsize=10)
    ax.bar_label(bars, labels=above, padding=2, fontsize=10)
    ax.axhline(
        metrics["macro_f1"], color="tab:red", linestyle="--", linewidth=1.2, label=f"macro-F1 {metrics['macro_f1']:.3f}"
    )
    ax.set(ylim=(0, 1.0), ylabel="F1", title=title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
    ax.tick_params(axis="x", rotation=30)


def plot_per_class_f1(metrics: dict, path: Path) -> Path:
    fig = figure(2 + 1.0 * len(metrics["per_class"]), 4.2)
    draw_per_class_f1(fig.subplots(), metrics)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")  # legends below the axes included
    return path


def kept_checkpoint(history: list[dict]) -> dict | None:
    """The evaluation whose checkpoint the model is: the first best validation macro-F1 (the Trainer keeps it,
    ``load_best_model_at_end``, comparing strictly greater)."""
    evals = [h for h in history if "eval_macro_f1" in h and "epoch" in h]
    return evals[int(np.argmax([h["eval_macro_f1"] for h in evals]))] if evals else None


def score_axis(ax, step: float = 0.05, span: float = 0.1) -> None:
    """A score axis from the lines drawn on it, on round ``step`` ticks and at least ``span`` wide, so that a
    difference of noise does not fill the height of the plot."""
    values = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()] or [[0.5]])
    high = min(1.0, np.ceil((values.max() + step / 2) / step) * step)
    low = max(0.0, min(np.floor((values.min() - step / 2) / step) * step, high - span))
    ax.set_ylim(low, high)


def draw_training_curves(ax1, ax2, history: list[dict], name: str = "") -> None:
    """Loss per epoch (training and validation) on ``ax1``, validation macro-F1 on ``ax2``, with the kept
    checkpoint starred (and, for a single run, named in the legend and marked on both axes)."""
    train = [(h["epoch"], h["loss"]) for h in history if "loss" in h and "epoch" in h]
    evals = [h for h in history if "eval_loss" in h]
    prefix = f"{name} " if name else ""
    if train:
        ax1.plot(*zip(*train), label=f"{prefix}train loss", marker=".")
    if evals:
        ax1.plot(
            [h["epoch"] for h in evals], [h["eval_loss"] for h in evals], label=f"{prefix}validation loss", marker="o"
        )
        (line,) = ax2.plot(
            [h["epoch"] for h in evals], [h["eval_macro_f1"] for h in evals], marker="o", label=name or None
        )
    kept = kept_checkpoint(history)
    score_axis(ax2)  # from the scores drawn, before the marker lines that span the whole axis
    if kept and evals:
        label = None if name else f"kept checkpoint: epoch {kept['epoch']:.3g}, {kept['eval_macro_f1']:.3f}"
        ax2.plot(kept["epoch"], kept["eval_macro_f1"], marker="*", markersize=15, color=line.get_color(), label=label)
        if not name:
            for ax in (ax1, ax2):
                ax.axvline(kept["epoch"], color="grey", linestyle=":", linewidth=1)
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax2.set(xlabel="epoch", ylabel="macro-F1", title="validation macro-F1 (★ kept checkpoint)")


def plot_training_curves(history: list[dict], path: Path) -> Path | None:
    """Train and validation loss per epoch, and validation macro-F1, from the Trainer's log history."""
    if not any("loss" in h or "eval_loss" in h for h in history):
        return None
    fig = figure(10, 3.8)
    ax1, ax2 = fig.subplots(1, 2)
    draw_training_curves(ax1, ax2, history)
    ax1.legend()
    if kept_checkpoint(history):
        ax2.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")  # legends below the axes included
    return path


def misclassified(texts, y_true, y_pred, probs, labels: list[str]) -> pd.DataFrame:
    """Wrong predictions grouped by (true, predicted) pair, most frequent pair first, surest first."""
    y_true, y_pred, probs = np.asarray(y_true), np.asarray(y_pred), np.asarray(probs)
    wrong = np.flatnonzero(y_true != y_pred)
    df = pd.DataFrame(
        {
            "text": np.asarray(texts, dtype=object)[wrong],
            "true_label": [labels[i] for i in y_true[wrong]],
            "predicted_label": [labels[i] for i in y_pred[wrong]],
            "confidence": probs[wrong, y_pred[wrong]].round(4) if len(wrong) else [],
        }
    )
    df["pair_count"] = df.groupby(["true_label", "predicted_label"])["text"].transform("size")
    return df.sort_values(
        ["pair_count", "true_label", "predicted_label", "confidence"], ascending=[False, True, True, False]
    ).reset_index(drop=True)


def write_report(
    out_dir: str | Path,
    metrics: dict,
    labels: list[str],
    texts,
    y_true,
    probs,
    history: list[dict] | None = None,
    raw_probs=None,
    context: dict | None = None,
) -> dict[str, Path]:
    """Write every evaluation artefact into ``out_dir``; returns the paths by name.

    ``metrics`` may carry ``calibration`` and ``class_bias``; the HTML page shows them. With
    ``raw_probs`` (the probabilities before temperature scaling) the reliability diagram is drawn too.
    ``context`` (``evaluation.context.report_context``) heads the page and is kept as ``context.json``;
    ``history`` as ``history.json``: with ``metrics.json`` they are what ``emoclf report`` compares.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y_pred = np.asarray(probs).argmax(axis=1)
    paths = {
        "metrics": out / METRICS_JSON,
        "report": out / REPORT_MD,
        "confusion_matrix": plot_confusion(metrics["confusion_matrix"], labels, out / CONFUSION_PNG),
        "per_class_f1": plot_per_class_f1(metrics, out / PER_CLASS_PNG),
        "misclassified": out / MISCLASSIFIED_CSV,
    }
    paths["metrics"].write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    paths["report"].write_text(markdown_table(metrics), encoding="utf-8")
    wrong = misclassified(texts, y_true, y_pred, probs, labels)
    wrong.to_csv(paths["misclassified"], index=False)
    if context is not None:
        (out / CONTEXT_JSON).write_text(json.dumps(context, indent=2), encoding="utf-8")
    if history:
        (out / HISTORY_JSON).write_text(json.dumps(history, indent=2), encoding="utf-8")
        curves = plot_training_curves(history, out / CURVES_PNG)
        if curves:
            paths["training_curves"] = curves
    images = {k: paths[k] for k in ("confusion_matrix", "per_class_f1", "training_curves") if k in paths}
    if raw_probs is not None:
        paths["reliability"] = images["reliability"] = plot_reliability(raw_probs, probs, y_true, out / RELIABILITY_PNG)
    paths["html"] = out / REPORT_HTML
    paths["html"].write_text(
        render_html(metrics, labels, texts, y_true, probs, wrong, images, context, wrong_csv=MISCLASSIFIED_CSV),
        encoding="utf-8",
    )
    return paths
