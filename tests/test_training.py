"""End to end on the tiny model: files written, real labels, untouched test split, reproducibility."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emoclf.config import Config
from emoclf.inference import Predictor
from emoclf.modeling import META_FILE, load_bundle
from emoclf.training import resolve_precision, tokenize_split, train

LABELS = ["anger", "fear", "joy", "love", "sadness", "surprise"]


def test_train_writes_model_and_every_report(trained):
    out = trained.output_dir
    for name in ("config.yaml", "model/model.safetensors", "model/config.json", "model/emoclf.json",
                 "report/metrics.json", "report/report.md", "report/confusion_matrix.png", "report/per_class_f1.png",
                 "report/training_curves.png", "report/misclassified.csv", "report/data_profile.json",
                 "report/class_distribution.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "report/metrics.json").read_text())
    assert set(metrics["per_class"]) == set(LABELS)
    assert metrics["n"] == 46  # the demo's carved test split: 10% of 460 rows, stratified
    assert 0.0 <= metrics["macro_f1"] <= 1.0
    assert "| surprise |" in (out / "report/report.md").read_text()


def test_training_changes_weights_and_learns(trained, tiny_model):
    from safetensors.torch import load_file

    before = load_file(tiny_model / "model.safetensors")
    after = load_file(trained.model_dir / "model.safetensors")
    key = next(k for k in before if k.endswith("word_embeddings.weight"))
    assert not torch.equal(before[key], after["bert." + key if "bert." + key in after else key])
    evals = [h["eval_loss"] for h in trained.history if "eval_loss" in h]
    assert len(evals) >= 4  # one per epoch until early stopping (patience 4)
    # chance on 6 classes is 1/6; a learning tiny model must beat it on validation
    assert max(h["eval_macro_f1"] for h in trained.history if "eval_macro_f1" in h) > 0.2


def test_saved_model_has_real_label_names(trained):
    model, _, meta = load_bundle(trained.model_dir)
    assert model.config.id2label == dict(enumerate(LABELS))
    assert meta.labels == LABELS
    assert meta.metrics["macro_f1"] == pytest.approx(trained.metrics["macro_f1"])
    assert meta.preprocess["lowercase"] is True
    predictions = Predictor.load(trained.model_dir).predict(["i am so happy today", "why would you do that to me"])
    assert all(p.label in LABELS for p in predictions)
    assert all(abs(sum(p.probabilities.values()) - 1) < 1e-5 for p in predictions)


def test_meta_carries_config_and_max_length(trained):
    meta = json.loads((trained.model_dir / META_FILE).read_text())
    assert meta["config"]["train"]["epochs"] == 8.0
    assert meta["max_length"] % 8 == 0 and meta["max_length"] <= 128


def test_tokenize_split_tokenises_once_with_lengths(tiny_model):
    import pandas as pd
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    df = pd.DataFrame({"text": ["i feel happy", "i am so very sad today"], "label_id": [2, 4]})
    ds = tokenize_split(df, tok, max_length=16)
    assert ds["labels"] == [2, 4]
    assert ds["length"] == [len(x) for x in ds["input_ids"]]
    assert ds["length"][1] > ds["length"][0]


def test_precision_resolution_on_cpu():
    assert resolve_precision("fp32") == "fp32"
    if not torch.cuda.is_available():
        assert resolve_precision("auto") in ("bf16", "fp32")


@pytest.mark.parametrize("strategy,loss", [("oversample", "ce"), ("focal", "focal")])
def test_strategies_train_without_touching_eval_splits(tmp_path, tiny_model, strategy, loss):
    from emoclf.data import load_data
    from emoclf.preprocess import Preprocessor

    cfg = Config().replace(model=str(tiny_model), epochs=1.0, output_dir=str(tmp_path), tracking=False,
                           imbalance=strategy)
    data = load_data(cfg.data, Preprocessor(cfg.preprocess))
    before = {s: data.splits[s].copy() for s in ("validation", "test")}
    result = train(cfg, data)
    for split, frame in before.items():
        assert frame.equals(data.splits[split]), split
    assert result.metrics["n"] == len(before["test"])


def test_same_seed_same_metrics(tmp_path, tiny_model):
    runs = []
    for name in ("a", "b"):
        cfg = Config().replace(model=str(tiny_model), epochs=1.0, output_dir=str(tmp_path / name), tracking=False,
                               precision="fp32")
        runs.append(train(cfg).metrics)
    assert runs[0]["macro_f1"] == pytest.approx(runs[1]["macro_f1"], abs=1e-6)
    assert np.array_equal(runs[0]["confusion_matrix"], runs[1]["confusion_matrix"])
