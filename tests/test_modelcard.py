"""The model card written into every model folder: Hugging Face's format, read back with the Hub's own card
tools, and the folder's own facts (data named as it is, weaknesses, time and hardware)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from emoclf.evaluation.metrics import classification_metrics, model_metrics, score
from emoclf.layout import CARD_FILE
from emoclf.modelcard import description, for_mlflow, pick_examples, render, weaknesses
from emoclf.modeling import BundleMeta, default_name

LABELS = ["anger", "fear", "joy", "love", "sadness", "surprise"]
# A confusion matrix shaped like the full emotion data's (2,000 test texts): love's precision 0.80, joy -> love
# the most frequent confusion, surprise often read as fear.
CONFUSION = [
    [255, 10, 4, 0, 6, 0],
    [8, 200, 2, 0, 4, 10],
    [2, 2, 650, 30, 8, 3],
    [0, 0, 16, 142, 1, 0],
    [6, 3, 8, 3, 560, 0],
    [0, 14, 2, 0, 0, 51],
]


def emotion_meta(**overrides) -> BundleMeta:
    """A model trained on emotion/train.txt (validation carved out of it) and scored on emotion/val.txt."""
    cm = np.asarray(CONFUSION)
    y_true = np.repeat(np.arange(6), cm.sum(axis=1))
    y_pred = np.concatenate([np.repeat(np.arange(6), row) for row in cm])
    counts = {lab: int(n) for lab, n in zip(LABELS, cm.sum(axis=1))}
    fields = dict(
        labels=LABELS,
        preprocess={"lowercase": True},
        max_length=64,
        base_model="sentence-transformers/all-MiniLM-L6-v2",
        temperature=1.2,
        metrics=model_metrics(classification_metrics(y_true, y_pred, LABELS)),
        trained_at="2026-12-01T10:00:00+00:00",
        emoclf_version="0.1.0",
        data={
            "source": "emotion/train.txt",
            "name": "emotion",
            "hub_id": None,
            "splits": {
                "train": {"from": "emotion/train.txt", "carved": False},
                "validation": {"from": "emotion/train.txt", "carved": True},
                "test": {"from": "emotion/val.txt", "carved": False},
            },
            "texts": {"train": 14388, "validation": 1600, "test": 2000},
            "class_counts": {"train": counts, "validation": counts, "test": counts},
        },
        training={"train_seconds": 1860.0, "hardware": "Intel Xeon (x86_64, 2 cores, AVX2)", "precision": "bf16"},
        name="all-MiniLM-L6-v2-finetuned-emotion",
        license="apache-2.0",
        language=["en"],
        examples=[{"text": "i feel so happy and grateful today", "label": "joy"}],
    )
    return BundleMeta(**{**fields, **overrides})


def hub_card(text: str, tmp_path):
    """The card as the Hub reads it: huggingface_hub's ModelCard and its model-index parser."""
    from huggingface_hub import ModelCard, metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    path = tmp_path / CARD_FILE
    path.write_text(text, encoding="utf-8")
    name, results = model_index_to_eval_results(metadata_load(path)["model-index"])
    return ModelCard.load(path), name, results


def test_the_hub_reads_the_cards_metadata_in_its_own_terms(tmp_path):
    card, name, results = hub_card(render(emotion_meta()), tmp_path)
    data = card.data
    assert (data.license, data.language, data.library_name, data.pipeline_tag) == (
        "apache-2.0",
        ["en"],
        "transformers",
        "text-classification",
    )
    assert data.base_model == "sentence-transformers/all-MiniLM-L6-v2" and data.metrics == ["accuracy", "f1"]
    assert data.datasets is None  # local files are no Hub dataset: described in the text instead
    assert data.widget == [{"text": "i feel so happy and grateful today", "example_title": "joy"}]
    assert name == "all-MiniLM-L6-v2-finetuned-emotion"
    m = emotion_meta().metrics
    assert [(r.metric_type, r.metric_args, r.metric_value) for r in results] == [
        ("accuracy", None, round(m["accuracy"], 4)),
        ("f1", {"average": "macro"}, round(m["macro_f1"], 4)),
        ("f1", {"average": "weighted"}, round(m["weighted_f1"], 4)),
    ]
    # Scored on val.txt, and said to be: the split is named as what it is, the data never by an absolute path.
    assert {(r.dataset_type, r.dataset_name, r.dataset_split, r.task_type) for r in results} == {
        ("unknown", "emotion/val.txt", "val", "text-classification")
    }
    assert not re.search(r"(^|\s|`)/\w", card.content)


def test_a_hub_dataset_is_named_by_its_id():
    meta = emotion_meta(
        data={
            **emotion_meta().data,
            "hub_id": "dair-ai/emotion",
            "splits": {s: {"from": f"hf:dair-ai/emotion [{s}]", "carved": False} for s in ("train", "test")},
        }
    )
    text = render(meta)
    assert "datasets:\n- dair-ai/emotion" in text
    assert "    dataset:\n      name: dair-ai/emotion\n      type: dair-ai/emotion\n      split: test\n" in text
    assert "(https://huggingface.co/datasets/dair-ai/emotion)" in text


def test_the_card_says_where_each_split_came_from_what_is_weak_and_how_it_was_trained():
    text = render(emotion_meta())
    assert (
        "train 14,388 and validation 1,600 (carved out) from emotion/train.txt; test 2,000 from emotion/val.txt" in text
    )
    assert "Scored on **emotion/val.txt** (2,000 texts never used for training" in text
    assert "in 31.0 minutes on Intel Xeon (x86_64, 2 cores, AVX2), in bf16." in text
    weak = text.split("## Known weaknesses")[1].split("##")[0]
    assert "**love**: precision 0.81 (19% of the texts it labels love are another class, most often joy)." in weak
    assert "recall 0.76 (it misses 24% of the surprise texts, most often labelling them fear)" in weak
    assert "joy → love: 30 of 695 joy texts (4.3%)" in weak.split("Most frequent confusions")[1].split(";")[0]
    assert "**joy**" not in weak and "**sadness**" not in weak  # strong classes are not listed
    assert weaknesses(emotion_meta(metrics={})) == []


def test_demo_and_full_models_get_different_names():
    base = "sentence-transformers/all-MiniLM-L6-v2"
    assert default_name(base, "emoclf-demo") == "all-MiniLM-L6-v2-finetuned-emoclf-demo"
    assert default_name(base, "emotion") == "all-MiniLM-L6-v2-finetuned-emotion"
    assert render(emotion_meta(name=None)).count("# all-MiniLM-L6-v2-finetuned-emotion\n") == 1  # from the data
    assert render(emotion_meta(name="my-model")).count("# my-model\n") == 1


def test_mlflow_gets_the_card_with_its_metadata_as_a_yaml_block():
    from markdown_it import MarkdownIt

    card = render(emotion_meta())
    copy = for_mlflow(card)
    assert copy.lstrip().startswith("# all-MiniLM-L6-v2-finetuned-emotion")
    assert copy.rstrip().endswith("```") and "## Hugging Face metadata\n\n```yaml\n" in copy
    html = MarkdownIt("commonmark").render(copy)
    assert "<hr" not in html and "<li>base_model" not in html  # a front matter rendered as Markdown
    assert '<code class="language-yaml">' in html
    assert "<hr" in MarkdownIt("commonmark").render(card)  # what MLflow showed before
    assert description(emotion_meta()).startswith(
        "all-MiniLM-L6-v2-finetuned-emotion: sentence-transformers/all-MiniLM-L6-v2 fine-tuned with emoclf to "
        "classify short texts as anger, fear, joy, love, sadness, surprise. Test macro-F1 0."
    )


def test_examples_are_one_held_out_text_per_class_in_data_order():
    texts = ["ok", "i am so angry at them", "this is wonderful news for us", "another angry text here", "hm"]
    assert pick_examples(texts, [0, 0, 2, 0, 1], ["anger", "fear", "joy"]) == [
        {"text": "i am so angry at them", "label": "anger"},
        {"text": "this is wonderful news for us", "label": "joy"},
    ]


def test_a_trained_model_folder_has_a_hugging_face_model_card(trained, tiny_model, tmp_path):
    from huggingface_hub import ModelCard

    card, name, results = hub_card((trained.model_dir / CARD_FILE).read_text(encoding="utf-8"), tmp_path)
    data = card.data
    assert (data.library_name, data.pipeline_tag, data.base_model) == (
        "transformers",
        "text-classification",
        f"{tiny_model.parent.name}/{tiny_model.name}",  # a local base model by its last two parts, never absolute
    )
    assert data.license is None and data.language is None  # the tiny base model has no card: nothing invented
    assert name == f"{tiny_model.name}-finetuned-emoclf-demo"
    assert "emoclf" in data.tags and len(data.widget) == 6  # one held-out example per class
    macro = next(r for r in results if r.metric_args == {"average": "macro"})
    assert (macro.metric_value, macro.dataset_split) == (round(trained.metrics["macro_f1"], 4), "test")
    assert macro.dataset_name == "the embedded demo set, a stratified held-out share"
    text = card.text
    for heading in (
        "## Evaluation",
        "## Known weaknesses",
        "## Training data",
        "## Preprocessing",
        "## Training settings",
        "## Intended use and limits",
        "## How to use",
    ):
        assert heading in text, heading
    for label, row in trained.metrics["per_class"].items():  # every class's scores on the test split
        assert (
            f"| {label} | {score(row['precision'])} | {score(row['recall'])} | {score(row['f1'])} | "
            f"{row['support']} |" in text
        )
    assert "| **all** | 368 | 46 | 46 |" in text  # texts per split
    assert "the embedded demo set" in text and "lowercase True" in text
    assert re.search(r"Trained \S+ in [\d.]+ minutes on .+ cores", text)
    assert 'Predictor.load("path/to/this/folder")' in text
    assert ModelCard.load(trained.model_dir / CARD_FILE).data.to_dict() == data.to_dict()


def test_a_card_without_a_recorded_evaluation_says_so():
    meta = BundleMeta(labels=LABELS, preprocess={"lowercase": True}, max_length=32, base_model="bert-base-uncased")
    text = render(meta, "x")
    assert "No test evaluation is recorded with this model." in text and "Not recorded." in text
    assert "base_model: bert-base-uncased" in text and "model-index" not in text and "widget" not in text


@pytest.mark.parametrize("temperature,said", [(1.0, "not rescaled"), (1.5, "divided by a temperature of 1.500")])
def test_the_card_says_whether_confidences_are_rescaled(temperature, said):
    assert said in render(emotion_meta(temperature=temperature), "x")


def test_a_hierarchical_models_card_lists_its_groups_and_their_scores():
    groups = {"anger+sadness": ["anger", "sadness"], "fear+surprise": ["fear", "surprise"], "joy+love": ["joy", "love"]}
    metrics = {
        "accuracy": 0.9,
        "macro_f1": 0.9,
        "weighted_f1": 0.9,
        "n": 60,
        "per_class": {lab: {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 10} for lab in LABELS},
        "groups": {
            "groups": groups,
            "accuracy": 0.95,
            "macro_f1": 0.94,
            "per_group": {g: {"f1": 0.94, "support": 20} for g in groups},
        },
    }
    meta = BundleMeta(
        labels=LABELS,
        preprocess={},
        max_length=32,
        base_model="m",
        metrics=metrics,
        hierarchy={"groups": groups, "source": "auto"},
    )
    text = render(meta, "x")
    assert "## Hierarchy" in text and "found from a first model's validation confusion" in text
    assert "group accuracy **0.9500**, group macro-F1 **0.9400**" in text
    assert f"| fear+surprise | fear, surprise | {score(0.94)} | 20 |" in text
    assert "## Hierarchy" not in render(BundleMeta(labels=LABELS, preprocess={}, max_length=32, base_model="m"), "x")
