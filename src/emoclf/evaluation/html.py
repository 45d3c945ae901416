"""One self-contained HTML page per evaluation, for reading errors rather than only scores.

Self-contained so that it opens from disk, from an MLflow artifact download or as an e-mail
attachment: plots are embedded as base64 data URIs, the CSS is inline, nothing is fetched.
Every text from the data is HTML-escaped, since evaluation texts are arbitrary user content.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from emoclf.evaluation.context import data_origin, split_warnings
from emoclf.evaluation.metrics import absent_note, score, training_note

TOP_PAIRS = 5
EXAMPLES_PER_PAIR = 5  # shown under each pair; up to MORE_PER_PAIR more behind a click, every one in the CSV
MORE_PER_PAIR = 25
N_EXAMPLES = 10
SECTIONS = {
    "headline": "Headline metrics",
    "class-distribution": "Class distribution",
    "per-class": "Per-class scores",
    "confusion-matrix": "Confusion matrix",
    "calibration": "Calibration",
    "confusion-pairs": "Top confusion pairs",
    "low-confidence-correct": "Lowest-confidence correct predictions",
    "high-confidence-wrong": "Highest-confidence wrong predictions",
}

CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2rem; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border: 1px solid #ddd; padding: .25rem .6rem; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.text { max-width: 650px; overflow-wrap: anywhere; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .6rem 1rem; min-width: 9rem; }
.card b { display: block; font-size: 1.6rem; }
img { max-width: 100%; height: auto; }
.note { color: #666; }
header dl { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: .5rem 0; }
header dt { color: #555; } header dd { margin: 0; }
.warning { background: #fff4e5; border-left: 4px solid #e67e22; padding: .5rem 1rem; margin: .5rem 0; }
"""


def image(path: Path | bytes, alt: str) -> str:
    """A PNG (a file, or its bytes) embedded in the page as a data URI."""
    png = path if isinstance(path, bytes) else Path(path).read_bytes()
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}" alt="{escape(alt)}">'


def table(header: list[str], rows: list[list], numeric: set[int] = frozenset(), text: set[int] = frozenset()) -> str:
    """An HTML table; every cell is escaped. Columns in ``numeric`` align right, in ``text`` wrap."""

    def cls(i: int) -> str:
        return ' class="num"' if i in numeric else ' class="text"' if i in text else ""

    head = "".join(f"<th{cls(i)}>{escape(str(h))}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{escape(str(c))}</td>" for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def header(context: dict | None, metrics: dict) -> str:
    """What the figures describe (model, data, run, date, settings, version) and why to read them with care."""
    warnings = "".join(f'<p class="warning"><b>Warning:</b> {escape(w)}.</p>' for w in split_warnings(metrics, context))
    if not context:
        return f"<header>{warnings}</header>"
    trained = context.get("training_data") or {}
    seen = context.get("evaluated_on", {})
    rows = {
        "model": (
            f"{context['model_name']}, fine-tuned from {context.get('model', 'unknown')}"
            if context.get("model_name")
            else context.get("model", "unknown")
        )
        + (f" ({context['model_source']})" if context.get("model_source") else ""),
        "trained": " ".join(
            filter(
                None,
                [
                    context.get("trained_at") or "time not recorded",
                    f"with emoclf {context['trained_with']}" if context.get("trained_with") else "",
                    f"in MLflow run {context['run_id']}" if context.get("run_id") else "",
                ],
            )
        ),
        "training data (texts)": data_origin(trained) if trained.get("texts") else "not recorded",
        "scored on": f"{seen.get('source')}, {seen.get('split')}: {seen.get('texts')} texts",
        "settings": ", ".join(f"{k} {v}" for k, v in context.get("settings", {}).items()),
        "report": f"written {context.get('written_at', 'at an unrecorded time')} by emoclf "
        f"{context.get('emoclf_version', 'unknown')}",
    }
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows.items())
    return f"<header><dl>{items}</dl>{warnings}</header>"


def class_distribution(context: dict | None, metrics: dict) -> str:
    """Texts per class in each training split and in the scored texts."""
    counts = dict((context or {}).get("training_data", {}).get("class_counts", {}))
    scored = (context or {}).get("evaluated_on", {}).get("split", "scored")
    counts[f"scored ({scored})" if scored in counts else scored] = {
        lab: r["support"] for lab, r in metrics["per_class"].items()
    }
    labels = list(metrics["per_class"])
    rows = [
        [lab, *(f"{c.get(lab, 0)} ({c.get(lab, 0) / max(sum(c.values()), 1):.0%})" for c in counts.values())]
        for lab in labels
    ]
    rows.append(["all", *(sum(c.values()) for c in counts.values())])
    return table(["class", *counts], rows, numeric=set(range(1, len(counts) + 1)))


def headline(metrics: dict, images: dict[str, Path], split: str = "scored") -> str:
    cards = "".join(
        f'<div class="card">{escape(name)}<b>{metrics[key]:.4f}</b></div>'
        for name, key in (("accuracy", "accuracy"), ("macro-F1", "macro_f1"), ("weighted F1", "weighted_f1"))
    )
    cards += f'<div class="card">{escape(split)} texts<b>{metrics["n"]}</b></div>'
    curves = image(images["training_curves"], "training curves") if "training_curves" in images else ""
    note = f'<p class="note">{escape(training_note(metrics))}</p>' if training_note(metrics) else ""
    return f'<div class="cards">{cards}</div>{note}{curves}'


def per_class(metrics: dict, images: dict[str, Path]) -> str:
    rows = [
        [lab, score(r["precision"]), score(r["recall"]), score(r["f1"]), r["support"]]
        for lab, r in metrics["per_class"].items()
    ]
    chart = image(images["per_class_f1"], "F1 per class") if "per_class_f1" in images else ""
    note = f'<p class="note">{escape(absent_note(metrics))}</p>' if absent_note(metrics) else ""
    return table(["class", "precision", "recall", "F1", "support"], rows, numeric={1, 2, 3, 4}) + note + chart


def confusion(metrics: dict, labels: list[str], images: dict[str, Path]) -> str:
    rows = [[f"true {lab}", *counts] for lab, counts in zip(labels, metrics["confusion_matrix"])]
    counts = table(["", *(f"predicted {lab}" for lab in labels)], rows, numeric=set(range(1, len(labels) + 1)))
    plot = image(images["confusion_matrix"], "confusion matrix") if "confusion_matrix" in images else ""
    return counts + plot


def calibration(metrics: dict, images: dict[str, Path]) -> str:
    cal = metrics.get("calibration")
    if cal is None:
        return (
            '<p class="note">No calibration figures in this evaluation; confidences are those of the '
            "model as saved (with its own temperature, if it has one).</p>"
        )
    rows = [
        ["temperature", f"{cal['temperature']:.3f}"],
        ["ECE before temperature scaling", f"{cal['ece_before']:.4f}"],
        ["ECE after temperature scaling", f"{cal['ece_after']:.4f}"],
    ]
    if cal.get("temperature_note"):
        rows.append(
            [
                "temperature fitted on validation, not kept",
                f"{cal['fitted_temperature']:.3g}: {cal['temperature_note']}",
            ]
        )
    bias = metrics.get("class_bias")
    if bias:
        rows += [
            ["class bias (logit offsets)", ", ".join(f"{k} {v:+.2f}" for k, v in bias["bias"].items())],
            ["macro-F1 without / with class bias", f"{bias['macro_f1_without']:.4f} / {bias['macro_f1_with']:.4f}"],
        ]
    plot = image(images["reliability"], "reliability diagram") if "reliability" in images else ""
    return table(["", "value"], rows, numeric={1}) + plot


def confusion_pairs(wrong: pd.DataFrame, csv: str | None = None) -> str:
    """The most frequent (true, predicted) pairs with their surest examples; ``csv``: the file beside the page
    that lists every wrong prediction, linked."""
    if wrong.empty:
        return '<p class="note">No wrong predictions.</p>'
    pairs = wrong.groupby(["true_label", "predicted_label"], sort=False)
    listed = (
        f' Every wrong prediction, by pair and surest first: <a href="{escape(csv)}">{escape(csv)}</a> (beside this '
        "page)."
        if csv
        else ""
    )
    parts = [f'<p class="note">The {min(TOP_PAIRS, pairs.ngroups)} most frequent pairs.{listed}</p>']
    header = ["example text (surest first)", "confidence"]
    for (true, pred), group in list(pairs)[:TOP_PAIRS]:
        rows = [[t, f"{c:.3f}"] for t, c in zip(group["text"], group["confidence"])]
        shown, more = rows[:EXAMPLES_PER_PAIR], rows[EXAMPLES_PER_PAIR : EXAMPLES_PER_PAIR + MORE_PER_PAIR]
        parts.append(
            f"<h3>true {escape(true)} &rarr; predicted {escape(pred)}: {len(group)} text(s)</h3>"
            + table(header, shown, numeric={1}, text={0})
            + (
                f"<details><summary>{len(more)} more</summary>{table(header, more, numeric={1}, text={0})}</details>"
                if more
                else ""
            )
        )
    return "".join(parts)


def examples(texts, y_true: np.ndarray, probs: np.ndarray, labels: list[str], correct: bool) -> str:
    y_pred = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    rows = np.flatnonzero((y_pred == y_true) == correct)
    if not len(rows):
        return f'<p class="note">No {"correct" if correct else "wrong"} predictions.</p>'
    # Correct: least sure first (near-misses); wrong: surest first (confidently wrong is the worst kind).
    order = rows[np.argsort(conf[rows] if correct else -conf[rows], kind="stable")][:N_EXAMPLES]
    texts = np.asarray(texts, dtype=object)
    if correct:
        return table(
            ["text", "label", "confidence"],
            [[texts[i], labels[y_true[i]], f"{conf[i]:.3f}"] for i in order],
            numeric={2},
            text={0},
        )
    return table(
        ["text", "true", "predicted", "confidence"],
        [[texts[i], labels[y_true[i]], labels[y_pred[i]], f"{conf[i]:.3f}"] for i in order],
        numeric={3},
        text={0},
    )


def render(
    metrics: dict,
    labels: list[str],
    texts,
    y_true,
    probs,
    wrong: pd.DataFrame,
    images: dict[str, Path],
    context: dict | None = None,
    title: str = "emoclf evaluation report",
    wrong_csv: str | None = None,
) -> str:
    """The whole page. ``wrong`` is ``report.misclassified``'s frame (all of it in the file ``wrong_csv`` beside the
    page, linked); ``images`` maps plot names to PNG files; ``context`` (``report_context``) heads it."""
    y_true, probs = np.asarray(y_true), np.asarray(probs)
    split = (context or {}).get("evaluated_on", {}).get("split", "scored")
    bodies = {
        "headline": headline(metrics, images, split),
        "class-distribution": class_distribution(context, metrics),
        "per-class": per_class(metrics, images),
        "confusion-matrix": confusion(metrics, labels, images),
        "calibration": calibration(metrics, images),
        "confusion-pairs": confusion_pairs(wrong, wrong_csv),
        "low-confidence-correct": examples(texts, y_true, probs, labels, correct=True),
        "high-confidence-wrong": examples(texts, y_true, probs, labels, correct=False),
    }
    return page(title, header(context, metrics), bodies)


def page(title: str, head: str, bodies: dict[str, str], names: dict[str, str] = SECTIONS) -> str:
    """A self-contained page: the header, a table of contents, then one section per body."""
    nav = "".join(f'<a href="#{sid}">{escape(names[sid])}</a>' for sid in bodies)
    sections = "".join(
        f'<section id="{sid}"><h2>{escape(names[sid])}</h2>{body}</section>' for sid, body in bodies.items()
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>{head}<nav>{nav}</nav>{sections}"
        "</body></html>\n"
    )
