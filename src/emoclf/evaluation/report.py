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

METRICS_JSON = "metrics.json"
REPORT_MD = "report.md"
CONFUSION_PNG = "confusion_matrix.png"
PER_CLASS_PNG = "per_class_f1.png"
CURVES_PNG = "training_curves.png"
MISCLASSIFIED_CSV = "misclassified.csv"
REPORT_HTML = "report.html"
RELIABILITY_PNG = "reliability.png"


def markdown_table(metrics: dict) -> str:
    lines = [
        f"accuracy **{metrics['accuracy']:.4f}**, macro-F1 **{metrics['macro_f1']:.4f}**, "
        f"weighted F1 **{metrics['weighted_f1']:.4f}** on {metrics['n']} texts",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---:|---:|---:|---:|",
    ]
    for lab, row in metrics["per_class"].items():
        lines.append(f"| {lab} | {score(row['precision'])} | {score(row['recall'])} | {score(row['f1'])} | "
                     f"{row['support']} |")
    if absent_note(metrics):
        lines += ["", absent_note(metrics)]
    if training_note(metrics):
        lines += ["", training_note(metrics)]
    return "\n".join(lines) + "\n"


def plot_confusion(cm: list[list[int]], labels: list[str], path: Path) -> Path:
    """Counts and row-normalised (recall per true class) side by side."""
    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(4 + 1.6 * len(labels), 1.2 + 0.8 * len(labels)))
    axes = fig.subplots(1, 2)
    for ax, data, title, fmt in ((axes[0], cm, "counts", "d"), (axes[1], norm, "normalised by true class", ".2f")):
        ax.imshow(data, cmap="Blues")
        ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted", ylabel="true", title=title)
        ax.set_xticklabels(labels, rotation=45, ha="right")
        ax.set_yticklabels(labels)
        top = data.max() or 1
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, format(data[i, j], fmt), ha="center", va="center",
                        color="white" if data[i, j] > top / 2 else "black", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_per_class_f1(metrics: dict, path: Path) -> Path:
    labels = list(metrics["per_class"])
    f1 = [metrics["per_class"][lab]["f1"] or 0.0 for lab in labels]  # absent classes: an empty bar, named below
    fig = Figure(figsize=(1.2 + 0.9 * len(labels), 3.5))
    ax = fig.subplots()
    bars = ax.bar(labels, f1, color="tab:blue")
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.axhline(metrics["macro_f1"], color="tab:red", linestyle="--", label=f"macro-F1 {metrics['macro_f1']:.3f}")
    ax.set(ylim=(0, 1.05), ylabel="F1", title="F1 per class")
    ax.legend(loc="lower right")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_training_curves(history: list[dict], path: Path) -> Path | None:
    """Train and validation loss per epoch, and validation macro-F1, from the Trainer's log history."""
    train = [(h["epoch"], h["loss"]) for h in history if "loss" in h and "epoch" in h]
    evals = [h for h in history if "eval_loss" in h]
    if not train and not evals:
        return None
    fig = Figure(figsize=(9, 3.5))
    ax1, ax2 = fig.subplots(1, 2)
    if train:
        ax1.plot(*zip(*train), label="train loss", marker=".")
    if evals:
        ax1.plot([h["epoch"] for h in evals], [h["eval_loss"] for h in evals], label="validation loss", marker="o")
        ax2.plot([h["epoch"] for h in evals], [h["eval_macro_f1"] for h in evals], color="tab:green", marker="o")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax1.legend()
    ax2.set(xlabel="epoch", ylabel="macro-F1", title="validation macro-F1")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def misclassified(texts, y_true, y_pred, probs, labels: list[str]) -> pd.DataFrame:
    """Wrong predictions grouped by (true, predicted) pair, most frequent pair first, surest first."""
    y_true, y_pred, probs = np.asarray(y_true), np.asarray(y_pred), np.asarray(probs)
    wrong = np.flatnonzero(y_true != y_pred)
    df = pd.DataFrame({
        "text": np.asarray(texts, dtype=object)[wrong],
        "true_label": [labels[i] for i in y_true[wrong]],
        "predicted_label": [labels[i] for i in y_pred[wrong]],
        "confidence": probs[wrong, y_pred[wrong]].round(4) if len(wrong) else [],
    })
    df["pair_count"] = df.groupby(["true_label", "predicted_label"])["text"].transform("size")
    return df.sort_values(["pair_count", "true_label", "predicted_label", "confidence"],
                          ascending=[False, True, True, False]).reset_index(drop=True)


def write_report(out_dir: str | Path, metrics: dict, labels: list[str], texts, y_true, probs,
                 history: list[dict] | None = None, raw_probs=None) -> dict[str, Path]:
    """Write every evaluation artefact into ``out_dir``; returns the paths by name.

    ``metrics`` may carry ``calibration`` and ``class_bias``; the HTML page shows them. With
    ``raw_probs`` (the probabilities before temperature scaling) the reliability diagram is drawn too.
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
    if history:
        curves = plot_training_curves(history, out / CURVES_PNG)
        if curves:
            paths["training_curves"] = curves
    images = {k: paths[k] for k in ("confusion_matrix", "per_class_f1", "training_curves") if k in paths}
    if raw_probs is not None:
        paths["reliability"] = images["reliability"] = plot_reliability(raw_probs, probs, y_true, out / RELIABILITY_PNG)
    paths["html"] = out / REPORT_HTML
    paths["html"].write_text(render_html(metrics, labels, texts, y_true, probs, wrong, images), encoding="utf-8")
    return paths
