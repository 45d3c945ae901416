"""The model card: a ``README.md`` in every saved model folder, in the Hugging Face model-card format.

The metadata block is written by ``huggingface_hub``'s ``ModelCardData`` in the fields the Hub reads:
license and language (the base model's, or ``--license``/``--language``), base model, ``datasets`` (only a
real Hub dataset id), ``metrics``, ``widget`` examples, and a ``model-index`` of the held-out scores
(``accuracy``, and ``f1`` with its ``average``) naming the data they were computed on. The text says what
the model does, on which data (each split by where it came from, never by a local absolute path), how well
per class, its known weaknesses (from the confusion matrix), how long it trained on what hardware, how its
inputs are cleaned, what it is not for, and how to load it. Everything comes from the folder's
``emoclf.json``, so an export's card is written the same way. MLflow's artifact viewer renders Markdown but
not a YAML front matter, so the run gets ``for_mlflow``'s copy, with the metadata as a YAML block.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from emoclf.evaluation.context import accuracy_interval, data_origin, settings
from emoclf.evaluation.metrics import score
from emoclf.layout import CARD_FILE
from emoclf.modeling import model_name, write_meta

WEAK_MARGIN = 0.05  # a class whose precision or recall is this far below macro-F1 is named as a weakness
TOP_CONFUSIONS = 3
EXAMPLE_WORDS = (3, 25)  # widget examples: texts of this many words, short enough to read at a glance
# The metrics of the model-index: the Hub's metric ids (those of the `evaluate` library), with their arguments.
RESULTS = (
    ("accuracy", "accuracy", "Accuracy", None),  # multi-label: subset accuracy (every label of a text right)
    ("micro_f1", "f1", "F1 (micro)", {"average": "micro"}),  # multi-label only
    ("samples_f1", "f1", "F1 (samples)", {"average": "samples"}),  # multi-label only
    ("macro_f1", "f1", "F1 (macro)", {"average": "macro"}),
    ("weighted_f1", "f1", "F1 (weighted)", {"average": "weighted"}),
)


def pick_examples(texts, y_true, labels: list[str]) -> list[dict]:
    """One text per class for the card's widget and the page's examples: the first of the held-out texts of that
    class with 3 to 25 words (in data order, not chosen by the model's answer on it). Multi-label (``y_true`` a
    texts x labels 0/1 matrix): the first such text that has the label, with all of its labels."""
    y = np.asarray(y_true)
    rows = y if y.ndim == 2 else np.eye(len(labels), dtype=np.int64)[y]
    short = [i for i, text in enumerate(texts) if EXAMPLE_WORDS[0] <= len(text.split()) <= EXAMPLE_WORDS[1]]
    picked: list[int] = []
    for k in range(len(labels)):
        having = [i for i in short if rows[i, k]]
        fresh = [i for i in having if i not in picked]  # a text already shown for another label only if no other
        if having:
            picked.append((fresh or having)[0])
    return [{"text": texts[i], "label": ",".join(labels[j] for j in np.flatnonzero(rows[i]))} for i in picked]


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return "\n".join([*lines, *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)])


def held_out(meta) -> dict:
    """What the test scores were computed on: the data's Hub id (or ``unknown``: not a Hub dataset), a name
    saying which file, and the split, named as what it is (the file's stem when it came from its own file)."""
    d = meta.data or {}
    origin = d.get("splits", {}).get("test", {"from": d.get("source", "unknown"), "carved": True})
    hub = d.get("hub_id")
    if origin["carved"] or hub:
        name = origin["from"] + (", a stratified held-out share" if origin["carved"] else "")
        split = "test"
    else:
        name, split = origin["from"], Path(origin["from"]).stem
    return {"type": hub or "unknown", "name": hub or name, "split": split, "described": name}


def _card_data(meta, name: str):
    from huggingface_hub import EvalResult, ModelCardData

    m, data = meta.metrics or {}, held_out(meta)
    results = [
        EvalResult(
            task_type="text-classification",
            task_name="Text Classification",
            dataset_type=data["type"],
            dataset_name=data["name"],
            dataset_split=data["split"],
            metric_type=metric,
            metric_name="Subset accuracy" if key == "accuracy" and m.get("task") == "multi-label" else title,
            metric_args=args,
            metric_value=round(m[key], 4),
        )
        for key, metric, title, args in RESULTS
        if key in m
    ]
    hub = (meta.data or {}).get("hub_id")
    return ModelCardData(
        language=meta.language or None,
        license=meta.license,
        library_name="transformers",
        pipeline_tag="text-classification",
        base_model=meta.base_model,
        datasets=[hub] if hub else None,
        metrics=["accuracy", "f1"] if results else None,
        tags=["emoclf", "text-classification", *(["onnx"] if meta.export else [])],
        model_name=name,
        eval_results=results or None,
        widget=[{"text": e["text"], "example_title": e["label"]} for e in meta.examples] or None,
    )


def _evaluation_multilabel(meta) -> str:
    m = meta.metrics
    rows = [
        [lab, score(r["precision"]), score(r["recall"]), score(r["f1"]), r["support"], f"{r['threshold']:.2f}"]
        for lab, r in m["per_class"].items()
    ]
    return (
        f"Scored on **{held_out(meta)['described']}** ({m['n']:,} texts never used for training, choosing the "
        "checkpoint, fitting the temperature or the thresholds), from this folder as saved (the path `emoclf "
        f"predict` takes): macro-F1 **{m['macro_f1']:.4f}**, micro-F1 **{m['micro_f1']:.4f}**, samples F1 "
        f"{m['samples_f1']:.4f}, subset accuracy {m['accuracy']:.4f} (every label of a text right), Hamming loss "
        f"{m['hamming_loss']:.4f}.\n\n"
        + _table(["label", "precision", "recall", "F1", "test texts", "threshold"], rows)
        + "\n\nEach label has its own probability (a sigmoid"
        + (f", its logit divided by a temperature of {meta.temperature:.3f}" if meta.temperature != 1.0 else "")
        + "), and a text gets every label whose probability reaches that label's threshold, fitted on validation "
        "texts to maximise the label's F1"
        + ("." if meta.allow_no_label else "; a text that reaches none gets its most probable label.")
    )


def _evaluation(meta) -> str:
    m = meta.metrics or {}
    if "per_class" not in m:
        return "No test evaluation is recorded with this model."
    if m.get("task") == "multi-label":
        return _evaluation_multilabel(meta)
    rows = [
        [lab, score(r["precision"]), score(r["recall"]), score(r["f1"]), r["support"]]
        for lab, r in m["per_class"].items()
    ]
    interval = accuracy_interval(m["accuracy"], m["n"]) if m.get("n") else None
    spread = f" (±{interval:.3f} at 95% confidence on {m['n']} texts)" if interval else ""
    where = held_out(meta)["described"]
    return (
        f"Scored on **{where}** ({m['n']:,} texts never used for training, choosing the checkpoint or "
        f"fitting the temperature), from this folder as saved (the path `emoclf predict` takes): "
        f"accuracy **{m['accuracy']:.4f}**{spread}, macro-F1 **{m['macro_f1']:.4f}**, weighted F1 "
        f"**{m['weighted_f1']:.4f}**.\n\n"
        + _table(["class", "precision", "recall", "F1", "test texts"], rows)
        + "\n\n"
        + (
            f"Confidences are divided by a temperature of {meta.temperature:.3f} fitted on validation texts."
            if meta.temperature != 1.0
            else "Confidences are the model's softmax, not rescaled (no temperature was kept)."
        )
    )


def weaknesses(meta) -> list[str]:
    """Where the model is weakest, from its test scores: the classes whose precision or recall lies well below
    macro-F1 (with what they are most confused with), then the most frequent confusions."""
    m = meta.metrics or {}
    per_class, cm = m.get("per_class"), m.get("confusion_matrix")
    if per_class and "confused_pairs" in m:
        return multilabel_weaknesses(m)
    if not per_class or cm is None:
        return []
    cm, labels = np.asarray(cm), list(per_class)
    wrong = cm - np.diag(np.diag(cm))
    out = []
    for i, lab in enumerate(labels):
        r = per_class[lab]
        low = [(k, r[k]) for k in ("precision", "recall") if r[k] is not None and r[k] < m["macro_f1"] - WEAK_MARGIN]
        if not low:
            continue
        parts = []
        for k, value in low:
            other = int(wrong[:, i].argmax()) if k == "precision" else int(wrong[i].argmax())
            said = (
                f"{1 - value:.0%} of the texts it labels {lab} are another class, most often {labels[other]}"
                if k == "precision"
                else f"it misses {1 - value:.0%} of the {lab} texts, most often labelling them {labels[other]}"
            )
            parts.append(f"{k} {value:.2f} ({said})")
        out.append(f"**{lab}**: " + "; ".join(parts) + ".")
    pairs = sorted(((int(wrong[i, j]), i, j) for i in range(len(labels)) for j in range(len(labels))), reverse=True)
    top = [
        f"{labels[i]} → {labels[j]}: {n} of {int(cm[i].sum())} {labels[i]} texts ({n / max(cm[i].sum(), 1):.1%})"
        for n, i, j in pairs[:TOP_CONFUSIONS]
        if n
    ]
    if top:
        out.append("Most frequent confusions (true → predicted): " + "; ".join(top) + ".")
    return out


def multilabel_weaknesses(m: dict) -> list[str]:
    """A multi-label model's weakest labels (precision or recall well below macro-F1) and the labels it mixes up
    most: a true label missed on texts that got another one instead."""
    out = []
    for lab, r in m["per_class"].items():
        low = [(k, r[k]) for k in ("precision", "recall") if r[k] is not None and r[k] < m["macro_f1"] - WEAK_MARGIN]
        if low:
            out.append(f"**{lab}**: " + "; ".join(f"{k} {value:.2f}" for k, value in low) + ".")
    pairs = [f"{p['true']} → {p['predicted']}: {p['texts']} texts" for p in m["confused_pairs"][:TOP_CONFUSIONS]]
    if pairs:
        out.append("Labels mixed up most (a true label missed, another predicted instead): " + "; ".join(pairs) + ".")
    return out


def _weaknesses(meta) -> str:
    found = weaknesses(meta)
    if not found:
        return "No test evaluation is recorded with this model." if not meta.metrics else "None stands out on test."
    return "\n".join(f"- {line}" for line in found)


def _data(meta) -> str:
    d = meta.data or {}
    if not d:
        return "Not recorded."
    splits = list(d.get("texts", {}))
    rows = [[lab, *(d["class_counts"][s][lab] for s in splits)] for lab in meta.labels]
    rows.append(["**all**", *(d["texts"][s] for s in splits)])
    hub = f" ([{d['hub_id']}](https://huggingface.co/datasets/{d['hub_id']}))" if d.get("hub_id") else ""
    return f"{data_origin(d)}{hub}. Validation and test are never resampled.\n\n" + _table(["class", *splits], rows)


def _trained(meta) -> str:
    t = meta.training or {}
    seconds = t.get("train_seconds")
    took = f" in {seconds / 60:.1f} minutes" if seconds else ""
    on = f" on {t['hardware']}" if t.get("hardware") else ""
    precision = f", in {t['precision']}" if t.get("precision") else ""
    run = f", MLflow run `{meta.run_id}`" if meta.run_id else ""
    return f"Trained {meta.trained_at or 'at an unrecorded time'}{took}{on}{precision}{run}."


def _hierarchy(meta) -> str:
    """The groups a ``--hierarchy`` model was trained with (each prediction also names its group), and their scores."""
    if not meta.hierarchy:
        return ""
    groups = meta.hierarchy["groups"]
    found = "found from a first model's validation confusion" if meta.hierarchy.get("source") == "auto" else "given"
    scored = (meta.metrics or {}).get("groups")
    rows = [
        [g, ", ".join(m), *([score(scored["per_group"][g]["f1"]), scored["per_group"][g]["support"]] if scored else [])]
        for g, m in groups.items()
    ]
    header = ["group", "classes", *(["F1", "test texts"] if scored else [])]
    head = (
        f" On the test split: group accuracy **{scored['accuracy']:.4f}**, group macro-F1 **{scored['macro_f1']:.4f}**."
        if scored
        else ""
    )
    return (
        f"\n\n## Hierarchy\n\nTrained with a hierarchy-aware loss over groups {found}; every prediction also "
        f"names its group (the group of its label) and the group's probability.{head}\n\n" + _table(header, rows)
    )


def render(meta, name: str | None = None) -> str:
    """The card's text (front matter and Markdown) for the model described by ``meta``, titled ``name``
    (default: ``model_name(meta)``)."""
    name = name or model_name(meta)
    steps = ", ".join(f"{k} {v}" for k, v in meta.preprocess.items())
    config = "\n".join(f"- {k}: {v}" for k, v in settings(meta).items())
    export = (
        f"\n\nThis folder is an ONNX export ({meta.export.get('format')}, {meta.export.get('precision')}) of "
        f"`{meta.export.get('source')}`, run by ONNX Runtime."
        if meta.export
        else ""
    )
    multi = meta.task == "multi-label"
    sorts, into = ("gives", "any of the") if multi else ("sorts", "into one of")
    body = f"""
# {name}

A text classifier fine-tuned from `{meta.base_model}` with emoclf {meta.emoclf_version or ""}: it {sorts} a short
text {into} {len(meta.labels)} {"labels" if multi else "classes"}: {", ".join(meta.labels)}.{export}

{_trained(meta)}

## Evaluation

{_evaluation(meta)}{_hierarchy(meta)}

## Known weaknesses

{_weaknesses(meta)}

## Training data

{_data(meta)}

## Preprocessing

Applied to every input by every emoclf prediction path, as in training: {steps}. Texts are cut at
{meta.max_length} tokens: only the start of a longer text is read.

## Training settings

{config}

## Intended use and limits

For short texts like those it was trained on (language, domain, length). It only knows the classes above:
every text gets one of them, even one that fits none. Texts that preprocessing leaves empty (emoji or
punctuation only) are refused rather than guessed. Scores on other data will differ, and the figures
above carry the uncertainty of the test split's size. Do not use its output alone for decisions about people.

## How to use

```python
from emoclf import Predictor

predictor = Predictor.load("path/to/this/folder")
print(predictor.predict(["i finally got the job"])[0].label)
```

or `emoclf predict --model path/to/this/folder "a text"`, or `emoclf serve --model path/to/this/folder`.
transformers can load the weights too, but without emoclf's preprocessing and temperature its
probabilities differ from those reported here.
"""
    return f"---\n{_card_data(meta, name).to_yaml()}\n---\n{body}"


def description(meta) -> str:
    """What the model is and how well it scored, in a few lines: its logged model's description in MLflow."""
    m = meta.metrics or {}
    scored = (
        f" Test macro-F1 {m['macro_f1']:.4f}, accuracy {m['accuracy']:.4f} on {held_out(meta)['described']} "
        f"({m.get('n', '?')} texts)."
        if "macro_f1" in m
        else ""
    )
    return (
        f"{model_name(meta)}: {meta.base_model} fine-tuned with emoclf to classify short texts as "
        f"{', '.join(meta.labels)}.{scored} Model card: the run's README.md."
    )


def for_mlflow(card: str) -> str:
    """The card as MLflow's artifact viewer renders it well: the Markdown first, then the Hugging Face metadata
    as a YAML block (a front matter shows there as a jumble of bullets)."""
    match = re.match(r"---\n(.*?)\n---\n", card, re.S)
    if not match:
        return card
    return f"{card[match.end() :].rstrip()}\n\n## Hugging Face metadata\n\n```yaml\n{match.group(1)}\n```\n"


def write_model_card(folder: str | Path, meta) -> Path:
    """Write ``README.md`` into the model folder, titled ``model_name(meta)``."""
    from huggingface_hub import ModelCard

    path = Path(folder) / CARD_FILE
    ModelCard(render(meta)).save(path)
    return path


def write_meta_and_card(folder: str | Path, meta) -> Path:
    """The folder's ``emoclf.json`` and its model card, both from ``meta``, so that they never disagree."""
    write_meta(folder, meta)
    return write_model_card(folder, meta)
