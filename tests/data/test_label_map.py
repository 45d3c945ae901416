"""--label-map: labels replaced by their groups as the data is read (GoEmotions' 28 labels by their Ekman groups),
saved with the model, and applied alike when a model is scored on a file of the fine labels."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from emoclf.config import Config, DataConfig
from emoclf.data import load_data, load_labelled
from emoclf.errors import ConfigError
from emoclf.preprocess import Preprocessor
from emoclf.task import MULTI

GROUPS = {"positive": ["joy", "love", "surprise"], "negative": ["fear", "anger"]}  # sadness in no group
GROUP_OF = {"joy": "positive", "love": "positive", "surprise": "positive", "fear": "negative", "anger": "negative"}


def map_file(tmp_path, groups=GROUPS, name="map.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(groups))  # the format of GoEmotions' ekman_mapping.json
    return str(path)


def test_multi_label_sets_become_the_sets_of_their_groups(tmp_path, multi_csv, caplog):
    with caplog.at_level(logging.WARNING, logger="emoclf"):
        data = load_data(DataConfig(data=str(multi_csv), label_map=map_file(tmp_path)))
    assert data.task == MULTI and data.labels == ["positive", "negative", "sadness"]  # the map's order, then the rest
    assert caplog.messages.count("label map: label(s) 'sadness' in no group, each kept as a group of its own") == 1
    raw = dict(zip(*pd.read_csv(multi_csv)[["text", "label"]].T.to_numpy()))
    for split in ("train", "validation", "test"):
        for text, tags in zip(data.splits[split]["raw_text"], data.splits[split]["label"]):
            assert tags == tuple(sorted({GROUP_OF.get(t, t) for t in raw[text].split(",")}))
    assert ("positive",) in set(
        data.splits["train"].loc[data.splits["train"]["raw_text"].map(raw) == "joy,love", "label"]
    )
    assert data.summary("x")["label_map"] == {**GROUPS, "negative": ["anger", "fear"], "sadness": ["sadness"]}
    assert data.y("train").shape[1] == 3


def test_single_label_data_maps_one_to_one(tmp_path):
    from emoclf.data.io import demo_path

    path = map_file(tmp_path, {"negative": ["sadness", "anger", "fear"], "positive": ["joy", "love", "surprise"]})
    data = load_data(DataConfig(label_map=path))
    assert data.labels == ["negative", "positive"] and data.task == "single-label"
    raw = dict(zip(*pd.read_csv(demo_path())[["text", "label"]].T.to_numpy()))
    for split in ("train", "validation", "test"):
        for text, label in zip(data.splits[split]["raw_text"], data.splits[split]["label"]):
            assert label == ("negative" if raw[text] in ("sadness", "anger", "fear") else "positive")


@pytest.mark.parametrize(
    "groups, message",
    [
        (
            {"positive": ["joy", "surprize"], "negative": ["anger"]},
            "label map: unknown label 'surprize' in group 'positive'; the labels are anger, fear, joy, love, sadness, "
            "surprise",
        ),
        (
            {"positive": ["joy", "love"], "negative": ["anger", "joy"]},
            "label map: label 'joy' is in two groups ('positive' and 'negative'); put each label in one group",
        ),
        (
            {"positive": ["joy"], "fear": ["anger"]},
            "label map: label 'fear' is in no group, but a group is named 'fear'; list it in that group or rename the "
            "group",
        ),
        ({"positive": []}, "label map: group 'positive' has no labels; list its labels or remove it"),
        (
            ["joy", "love"],
            "label map: {path} must map each group name to a list of labels, e.g. 'positive: [joy, love]'",
        ),
    ],
)
def test_a_wrong_label_map_is_refused_in_one_line(tmp_path, groups, message):
    path = map_file(tmp_path, groups)
    with pytest.raises(ConfigError) as e:
        load_data(DataConfig(label_map=path))
    assert str(e.value) == message.format(path=path)


def test_a_missing_label_map_file_is_named():
    with pytest.raises(ConfigError, match="^label map: file not found: nope.json$"):
        load_data(DataConfig(label_map="nope.json"))
    assert "label_map" in Config().to_dict()["data"]  # saved with every run's and model's config


def test_a_file_of_fine_labels_is_scored_through_the_models_label_map(tmp_path, multi_csv):
    labels = ["positive", "negative", "sadness"]
    groups = {**GROUPS, "sadness": ["sadness"]}
    scored = load_labelled(DataConfig(data=str(multi_csv)), labels, Preprocessor(), MULTI, label_map=groups)
    raw = pd.read_csv(multi_csv)
    assert scored.y_true.shape == (400, 3)
    for tags, row in zip(raw["label"], scored.y_true):
        assert [lab for lab, v in zip(labels, row) if v] == [
            g for g in labels if g in {GROUP_OF.get(t, t) for t in tags.split(",")}
        ]
    # A map given to evaluate replaces the model's; without any map, fine labels are not the model's.
    other = map_file(tmp_path, {"positive": ["joy", "love", "surprise", "sadness"], "negative": ["fear", "anger"]})
    given = load_labelled(
        DataConfig(data=str(multi_csv), label_map=other), labels, Preprocessor(), MULTI, label_map=groups
    )
    assert given.y_true[:, 2].sum() == 0
    with pytest.raises(Exception, match="are not among the model's labels"):
        load_labelled(DataConfig(data=str(multi_csv)), labels, Preprocessor(), MULTI)


@pytest.mark.slow
def test_a_coarse_model_saves_its_map_and_scores_fine_labels(tmp_path, tiny_model, multi_csv, capsys):
    from emoclf.cli import main
    from emoclf.evaluation.evaluate import evaluate_model
    from emoclf.training import train

    cfg = Config().replace(
        data=str(multi_csv),
        label_map=map_file(tmp_path),
        model=str(tiny_model),
        epochs=4.0,
        learning_rate=3e-3,
        output_dir=str(tmp_path / "run"),
        tracking=False,
        batch_size=16,
        precision="fp32",
    )
    result = train(cfg)
    meta = json.loads((result.model_dir / "emoclf.json").read_text())
    assert meta["labels"] == ["positive", "negative", "sadness"] and meta["config"]["data"]["label_map"]
    assert meta["data"]["label_map"]["sadness"] == ["sadness"]
    assert set(result.metrics["per_class"]) == {"positive", "negative", "sadness"}
    (tmp_path / "map.json").unlink()  # the model keeps its map: scoring needs no file
    scored = evaluate_model(result.model_dir, multi_csv)
    assert scored.metrics["n"] == 400 and set(scored.metrics["per_class"]) == {"positive", "negative", "sadness"}
    assert main(["evaluate", str(multi_csv), "--model", str(result.model_dir), "--out", str(tmp_path / "ev")]) == 0
    assert f"macro-F1 {scored.metrics['macro_f1']:.4f}" in capsys.readouterr().out
