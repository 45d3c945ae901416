"""The model card written into every model folder: Hugging Face's format, the folder's own facts."""

from __future__ import annotations

import pytest

from emoclf.evaluation.metrics import score
from emoclf.layout import CARD_FILE
from emoclf.modelcard import render
from emoclf.modeling import BundleMeta

LABELS = ["anger", "fear", "joy", "love", "sadness", "surprise"]


def test_a_trained_model_folder_has_a_hugging_face_model_card(trained, tiny_model):
    from huggingface_hub import ModelCard

    card = ModelCard.load(trained.model_dir / CARD_FILE)
    data = card.data
    assert (data.library_name, data.pipeline_tag, data.base_model) == (
        "transformers",
        "text-classification",
        str(tiny_model),
    )
    assert "emoclf" in data.tags
    results = {r.metric_type: (r.metric_value, r.dataset_split) for r in data.eval_results}
    assert results["macro_f1"] == (round(trained.metrics["macro_f1"], 4), "test")
    assert results["accuracy"] == (round(trained.metrics["accuracy"], 4), "test")
    text = card.text
    for heading in (
        "## Training data",
        "## Evaluation",
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
    assert 'Predictor.load("path/to/this/folder")' in text


def test_a_card_without_a_recorded_evaluation_says_so():
    meta = BundleMeta(labels=LABELS, preprocess={"lowercase": True}, max_length=32, base_model="bert-base-uncased")
    text = render(meta, "x")
    assert "No test evaluation is recorded with this model." in text and "Not recorded." in text
    assert "base_model: bert-base-uncased" in text and "model-index" not in text


@pytest.mark.parametrize("temperature,said", [(1.0, "not rescaled"), (1.5, "divided by a temperature of 1.500")])
def test_the_card_says_whether_confidences_are_rescaled(temperature, said):
    meta = BundleMeta(
        labels=LABELS,
        preprocess={},
        max_length=32,
        base_model="m",
        temperature=temperature,
        metrics={
            "accuracy": 0.5,
            "macro_f1": 0.5,
            "weighted_f1": 0.5,
            "n": 100,
            "per_class": {lab: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 10} for lab in LABELS},
        },
    )
    assert said in render(meta, "x")


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
