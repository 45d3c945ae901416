"""The model card: a ``README.md`` in every saved model folder, in the Hugging Face model-card format.

The metadata block (base model, tags, the test results as a ``model-index``) is written by
``huggingface_hub``'s ``ModelCardData``; the text says what the model does, on which data, how well
per class on the untouched test split, how its inputs are cleaned, what it is not for, and how to
load it. Everything comes from the folder's ``emoclf.json``, so an export's card is written the same way.
"""

from __future__ import annotations

from pathlib import Path

from emoclf.evaluation.context import accuracy_interval, settings
from emoclf.evaluation.metrics import score
from emoclf.layout import CARD_FILE
from emoclf.modeling import write_meta


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return "\n".join([*lines, *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)])


def _card_data(meta, name: str):
    from huggingface_hub import EvalResult, ModelCardData

    m, source = meta.metrics or {}, (meta.data or {}).get("source", "unknown")
    results = [
        EvalResult(
            task_type="text-classification",
            dataset_type="emoclf",
            dataset_name=str(source),
            dataset_split="test",
            metric_type=key,
            metric_name=title,
            metric_value=round(m[key], 4),
        )
        for key, title in (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("weighted_f1", "weighted F1"))
        if key in m
    ]
    return ModelCardData(
        library_name="transformers",
        pipeline_tag="text-classification",
        base_model=meta.base_model,
        tags=["emoclf", "text-classification", *(["onnx"] if meta.export else [])],
        model_name=name,
        eval_results=results or None,
    )


def _evaluation(meta) -> str:
    m = meta.metrics or {}
    if "per_class" not in m:
        return "No test evaluation is recorded with this model."
    rows = [
        [lab, score(r["precision"]), score(r["recall"]), score(r["f1"]), r["support"]]
        for lab, r in m["per_class"].items()
    ]
    interval = accuracy_interval(m["accuracy"], m["n"]) if m.get("n") else None
    spread = f" (±{interval:.3f} at 95% confidence on {m['n']} texts)" if interval else ""
    return (
        f"On the untouched test split, scored from this folder as saved (the path `emoclf predict` takes): "
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


def _data(meta) -> str:
    d = meta.data or {}
    if not d:
        return "Not recorded."
    splits = list(d.get("texts", {}))
    rows = [[lab, *(d["class_counts"][s][lab] for s in splits)] for lab in meta.labels]
    rows.append(["**all**", *(d["texts"][s] for s in splits)])
    return f"{d.get('source')}; validation and test are never resampled.\n\n" + _table(["class", *splits], rows)


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


def render(meta, name: str) -> str:
    """The card's text (front matter and Markdown) for the model described by ``meta``."""
    steps = ", ".join(f"{k} {v}" for k, v in meta.preprocess.items())
    config = "\n".join(f"- {k}: {v}" for k, v in settings(meta).items())
    export = (
        f"\n\nThis folder is an ONNX export ({meta.export.get('format')}, {meta.export.get('precision')}) of "
        f"`{meta.export.get('source')}`, run by ONNX Runtime."
        if meta.export
        else ""
    )
    body = f"""
# {name}

A text classifier fine-tuned from `{meta.base_model}` with emoclf {meta.emoclf_version or ""}: it sorts a short
text into one of {len(meta.labels)} classes: {", ".join(meta.labels)}.{export}

Trained {meta.trained_at or "at an unrecorded time"}{f" in MLflow run `{meta.run_id}`" if meta.run_id else ""}.

## Training data

{_data(meta)}

## Evaluation

{_evaluation(meta)}{_hierarchy(meta)}

## Preprocessing

Applied to every input by every emoclf prediction path, as in training: {steps}. Texts are cut at
{meta.max_length} tokens.

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


def write_model_card(folder: str | Path, meta, name: str | None = None) -> Path:
    """Write ``README.md`` into the model folder; ``name`` defaults to ``<base model>-emoclf``."""
    from huggingface_hub import ModelCard

    path = Path(folder) / CARD_FILE
    ModelCard(render(meta, name or f"{meta.base_model.rstrip('/').split('/')[-1]}-emoclf")).save(path)
    return path


def write_meta_and_card(folder: str | Path, meta) -> Path:
    """The folder's ``emoclf.json`` and its model card, both from ``meta``, so that they never disagree."""
    write_meta(folder, meta)
    return write_model_card(folder, meta)
