"""Scores and report of a multi-label evaluation: several labels per text, each decided by its own threshold.

The headline is macro-F1 over the labels (each label's F1 counts the same, however rare), beside micro-F1 (every
decision counts the same), weighted and samples F1, subset accuracy (every label of a text right) and Hamming loss
(the share of wrong label decisions). Per label: precision, recall, F1, support, the threshold, and ROC-AUC and
average precision of the probabilities (how well the label is ranked, whatever the threshold). The report adds
which labels occur together and which ones the model mixes up: a true label missed on texts where another was
predicted instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    hamming_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

from emoclf.calibration import plot_reliability
from emoclf.evaluation.html import calibration, class_distribution, header, image, page, table
from emoclf.evaluation.metrics import absent_note, macro_f1, score, training_note
from emoclf.evaluation.report import figure, plot_per_class_f1, plot_training_curves
from emoclf.layout import (
    CONTEXT_JSON,
    COOCCURRENCE_PNG,
    CURVES_PNG,
    HISTORY_JSON,
    METRICS_JSON,
    MISCLASSIFIED_CSV,
    PER_CLASS_PNG,
    RELIABILITY_PNG,
    REPORT_HTML,
    REPORT_MD,
)

TOP_PAIRS = 10
EXAMPLES_PER_PAIR = 3
N_EXAMPLES = 10
SECTIONS = {
    "headline": "Headline metrics",
    "class-distribution": "Texts per label",
    "per-class": "Per-label scores",
    "cooccurrence": "Labels that occur together",
    "confusion-pairs": "Labels mixed up",
    "calibration": "Calibration",
    "wrong": "Texts with the most wrong labels",
}


def _ranked(y: np.ndarray, probs: np.ndarray, metric) -> float | None:
    """A ranking score of one label's probabilities, or None when its texts are all positive or all negative."""
    return float(metric(y, probs)) if 0 < y.sum() < len(y) else None


def confused_pairs(y: np.ndarray, decided: np.ndarray, labels: list[str], top: int = TOP_PAIRS) -> list[dict]:
    """The most frequent (missed true label, wrongly predicted label) pairs: texts that have the first label and
    got the second instead."""
    missed, extra = (y & ~decided).astype(np.int64), (decided & ~y).astype(np.int64)
    counts = missed.T @ extra
    order = np.dstack(np.unravel_index(np.argsort(-counts, axis=None, kind="stable"), counts.shape))[0]
    return [
        {"true": labels[a], "predicted": labels[b], "texts": int(counts[a, b])} for a, b in order[:top] if counts[a, b]
    ]


def multilabel_metrics(
    y_true: np.ndarray, decided: np.ndarray, probs: np.ndarray, labels: list[str], thresholds: list[float] | None
) -> dict:
    """Every score of a multi-label evaluation (see the module's docstring), JSON-ready. Labels without texts
    in ``y_true`` are listed in ``classes_absent`` with no per-label scores, and macro-F1 averages the others."""
    y, d = np.asarray(y_true).astype(bool), np.asarray(decided).astype(bool)
    p, r, f, s = precision_recall_fscore_support(y, d, zero_division=0)
    limits = thresholds or [0.5] * len(labels)
    auc = [_ranked(y[:, k], probs[:, k], roc_auc_score) for k in range(len(labels))]
    ap = [_ranked(y[:, k], probs[:, k], average_precision_score) for k in range(len(labels))]
    ranked = [a for a in auc if a is not None]
    precisions = [a for a in ap if a is not None]
    return {
        "task": "multi-label",
        "accuracy": float(accuracy_score(y, d)),  # subset accuracy: every label of a text right
        "macro_f1": macro_f1(y.astype(int), d.astype(int)),
        "micro_f1": float(f1_score(y, d, average="micro", zero_division=0)),
        "weighted_f1": float(f1_score(y, d, average="weighted", zero_division=0)),
        "samples_f1": float(f1_score(y, d, average="samples", zero_division=0)),
        "hamming_loss": float(hamming_loss(y, d)),
        "macro_roc_auc": float(np.mean(ranked)) if ranked else None,
        "macro_average_precision": float(np.mean(precisions)) if precisions else None,
        "labels_per_text": {"true": float(y.sum(axis=1).mean()), "predicted": float(d.sum(axis=1).mean())},
        "n": int(len(y)),
        "classes_absent": [lab for k, lab in enumerate(labels) if s[k] == 0],
        "per_class": {
            lab: (
                {
                    "precision": float(p[k]),
                    "recall": float(r[k]),
                    "f1": float(f[k]),
                    "support": int(s[k]),
                    "threshold": float(limits[k]),
                    "roc_auc": auc[k],
                    "average_precision": ap[k],
                }
                if s[k]
                else {"precision": None, "recall": None, "f1": None, "support": 0, "threshold": float(limits[k])}
            )
            for k, lab in enumerate(labels)
        },
        "cooccurrence": (y.astype(np.int64).T @ y.astype(np.int64)).tolist(),
        "confused_pairs": confused_pairs(y, d, labels),
    }


def group_metrics(y_true: np.ndarray, decided: np.ndarray, labels: list[str], groups: dict[str, list[str]]) -> dict:
    """Scores over groups of labels (a hierarchy or a taxonomy such as GoEmotions' Ekman groups): a text has a
    group when it has any of its labels, and is predicted the group when any of its labels is predicted."""
    member = np.array([[lab in m for m in groups.values()] for lab in labels], dtype=np.int64)  # labels x groups
    y = (np.asarray(y_true).astype(np.int64) @ member) > 0
    d = (np.asarray(decided).astype(np.int64) @ member) > 0
    p, r, f, s = precision_recall_fscore_support(y, d, zero_division=0)
    return {
        "groups": {g: list(m) for g, m in groups.items()},
        "accuracy": float(accuracy_score(y, d)),
        "macro_f1": macro_f1(y.astype(int), d.astype(int)),
        "micro_f1": float(f1_score(y, d, average="micro", zero_division=0)),
        "per_group": {
            g: {"precision": float(p[j]), "recall": float(r[j]), "f1": float(f[j]), "support": int(s[j])}
            for j, g in enumerate(groups)
        },
    }


def wrong_texts(texts, y: np.ndarray, decided: np.ndarray, probs: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """Texts whose labels are not all right, with what was missed and what was added, most wrong labels first."""
    y, d = np.asarray(y).astype(bool), np.asarray(decided).astype(bool)
    names = np.asarray(labels, dtype=object)

    def joined(mask: np.ndarray) -> str:
        return ",".join(names[mask])

    wrong = np.flatnonzero((y != d).any(axis=1))
    df = pd.DataFrame(
        {
            "text": np.asarray(texts, dtype=object)[wrong],
            "true_labels": [joined(y[i]) for i in wrong],
            "predicted_labels": [joined(d[i]) for i in wrong],
            "missed": [joined(y[i] & ~d[i]) for i in wrong],
            "added": [joined(d[i] & ~y[i]) for i in wrong],
            "wrong_labels": (y[wrong] != d[wrong]).sum(axis=1),
            "probabilities": [
                ", ".join(f"{names[k]} {probs[i, k]:.2f}" for k in np.argsort(-probs[i])[:4]) for i in wrong
            ],
        }
    )
    return df.sort_values(["wrong_labels", "missed"], ascending=[False, True], kind="stable").reset_index(drop=True)


def markdown_table(metrics: dict) -> str:
    m = metrics
    lines = [
        f"macro-F1 **{m['macro_f1']:.4f}**, micro-F1 **{m['micro_f1']:.4f}**, weighted F1 {m['weighted_f1']:.4f}, "
        f"samples F1 {m['samples_f1']:.4f}, subset accuracy {m['accuracy']:.4f}, Hamming loss {m['hamming_loss']:.4f} "
        f"on {m['n']} texts",
        "",
        "| label | precision | recall | F1 | support | threshold | ROC-AUC | avg. precision |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lab, row in m["per_class"].items():
        lines.append(
            f"| {lab} | {score(row['precision'])} | {score(row['recall'])} | {score(row['f1'])} | {row['support']} | "
            f"{row['threshold']:.2f} | {score(row.get('roc_auc'))} | {score(row.get('average_precision'))} |"
        )
    if "groups" in m:
        g = m["groups"]
        lines += [
            "",
            f"groups: macro-F1 **{g['macro_f1']:.4f}**, micro-F1 {g['micro_f1']:.4f}, subset accuracy "
            f"{g['accuracy']:.4f} (a text has a group when it has one of its labels)",
            "",
            "| group | labels | F1 | support |",
            "|---|---|---:|---:|",
        ]
        lines += [
            f"| {name} | {', '.join(g['groups'][name])} | {row['f1']:.4f} | {row['support']} |"
            for name, row in g["per_group"].items()
        ]
    for note in (absent_note(m), training_note(m)):
        if note:
            lines += ["", note]
    return "\n".join(lines) + "\n"


def plot_cooccurrence(cooccurrence: list[list[int]], labels: list[str], path: Path) -> Path:
    """Of the texts with the row's label, the share that also have the column's label."""
    c = np.asarray(cooccurrence, dtype=float)
    share = c / np.maximum(np.diag(c)[:, None], 1)
    np.fill_diagonal(share, np.nan)
    size = 2.5 + 0.32 * len(labels)
    fig = figure(size + 1.5, size)
    ax = fig.subplots()
    shown = ax.imshow(share, cmap="Blues", vmin=0)
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xlabel="also has", ylabel="texts with")
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_title("labels that occur together (share of the row's texts)")
    fig.colorbar(shown, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    return path


def _headline(metrics: dict, images: dict, split: str) -> str:
    keys = (
        ("macro-F1", "macro_f1"),
        ("micro-F1", "micro_f1"),
        ("samples F1", "samples_f1"),
        ("subset accuracy", "accuracy"),
        ("Hamming loss", "hamming_loss"),
    )
    cards = "".join(f'<div class="card">{name}<b>{metrics[key]:.4f}</b></div>' for name, key in keys)
    cards += f'<div class="card">{split} texts<b>{metrics["n"]}</b></div>'
    per_text = metrics["labels_per_text"]
    note = (
        f'<p class="note">Labels per text: {per_text["true"]:.2f} given, {per_text["predicted"]:.2f} predicted. '
        f"{training_note(metrics)}</p>"
    )
    curves = image(images["training_curves"], "training curves") if "training_curves" in images else ""
    return f'<div class="cards">{cards}</div>{note}{curves}'


def _per_label(metrics: dict, images: dict) -> str:
    rows = [
        [lab, score(r["precision"]), score(r["recall"]), score(r["f1"]), r["support"], f"{r['threshold']:.2f}"]
        + [score(r.get("roc_auc")), score(r.get("average_precision"))]
        for lab, r in metrics["per_class"].items()
    ]
    header = ["label", "precision", "recall", "F1", "support", "threshold", "ROC-AUC", "avg. precision"]
    chart = image(images["per_class_f1"], "F1 per label") if "per_class_f1" in images else ""
    note = absent_note(metrics)
    return table(header, rows, numeric=set(range(1, 8))) + (f'<p class="note">{note}</p>' if note else "") + chart


def _pairs(metrics: dict, wrong: pd.DataFrame) -> str:
    pairs = metrics["confused_pairs"]
    if not pairs:
        return '<p class="note">No text missed one label while getting another instead.</p>'
    rows = []
    for pair in pairs:
        hit = wrong[
            wrong["missed"].str.split(",").map(lambda m, p=pair: p["true"] in m)
            & wrong["added"].str.split(",").map(lambda a, p=pair: p["predicted"] in a)
        ]
        rows.append([pair["true"], pair["predicted"], pair["texts"], " | ".join(hit["text"].head(EXAMPLES_PER_PAIR))])
    return table(["true label missed", "predicted instead", "texts", "examples"], rows, numeric={2}, text={3})


def _wrong(wrong: pd.DataFrame) -> str:
    head = wrong.head(N_EXAMPLES)
    rows = head[["text", "true_labels", "predicted_labels", "probabilities"]].values.tolist()
    note = f'<p class="note">All {len(wrong)} texts with a wrong label are in {MISCLASSIFIED_CSV}.</p>'
    return table(["text", "true labels", "predicted labels", "top probabilities"], rows, text={0}) + note


def write_report(
    out_dir: str | Path,
    metrics: dict,
    labels: list[str],
    texts,
    y_true,
    probs,
    decided,
    history: list[dict] | None = None,
    raw_probs=None,
    context: dict | None = None,
    task=None,
) -> dict[str, Path]:
    """Every file of a multi-label evaluation in ``out_dir`` (as ``report.write_report`` for single-label: the
    same names where the content corresponds); returns the paths by name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wrong = wrong_texts(texts, y_true, decided, probs, labels)
    paths = {
        "metrics": out / METRICS_JSON,
        "report": out / REPORT_MD,
        "per_class_f1": plot_per_class_f1(metrics, out / PER_CLASS_PNG),
        "cooccurrence": plot_cooccurrence(metrics["cooccurrence"], labels, out / COOCCURRENCE_PNG),
        "misclassified": out / MISCLASSIFIED_CSV,
    }
    paths["metrics"].write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    paths["report"].write_text(markdown_table(metrics), encoding="utf-8")
    wrong.to_csv(paths["misclassified"], index=False)
    if context is not None:
        (out / CONTEXT_JSON).write_text(json.dumps(context, indent=2), encoding="utf-8")
    images = {k: paths[k] for k in ("per_class_f1", "cooccurrence")}
    if history:
        (out / HISTORY_JSON).write_text(json.dumps(history, indent=2), encoding="utf-8")
        curves = plot_training_curves(history, out / CURVES_PNG)
        if curves:
            paths["training_curves"] = images["training_curves"] = curves
    if raw_probs is not None:
        paths["reliability"] = images["reliability"] = plot_reliability(
            raw_probs, probs, y_true, out / RELIABILITY_PNG, task=task
        )
    split = (context or {}).get("evaluated_on", {}).get("split", "scored")
    bodies = {
        "headline": _headline(metrics, images, split),
        "class-distribution": class_distribution(context, metrics),
        "per-class": _per_label(metrics, images),
        "cooccurrence": image(images["cooccurrence"], "label co-occurrence"),
        "confusion-pairs": _pairs(metrics, wrong),
        "calibration": calibration(metrics, images),
        "wrong": _wrong(wrong),
    }
    paths["html"] = out / REPORT_HTML
    paths["html"].write_text(
        page("emoclf evaluation report (multi-label)", header(context, metrics), bodies, SECTIONS), encoding="utf-8"
    )
    return paths
