"""A multi-label model end to end on a tiny data set: training, the model folder, every prediction path of
this package's core (Python, CLI, files, evaluation) agreeing on labels and probabilities."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import MULTI_LABELS

from emoclf.cli import main
from emoclf.evaluation.evaluate import evaluate_model
from emoclf.inference import Predictor
from emoclf.layout import COOCCURRENCE_PNG, META_FILE, METRICS_JSON, MISCLASSIFIED_CSV, REPORT_HTML
from emoclf.predictions import MultiLabelPrediction, prediction_columns, predictions_frame

TEXTS = ["i feel so happy today", "i am scared and i feel angry about it", "i love you and i miss you"]


def test_the_model_folder_says_multi_label_and_keeps_a_threshold_per_label(trained_multi):
    meta = json.loads((trained_multi.model_dir / META_FILE).read_text())
    assert meta["task"] == "multi-label" and meta["labels"] == MULTI_LABELS and meta["format"] == 3
    assert len(meta["thresholds"]) == 6 and all(0 < t < 1 for t in meta["thresholds"])
    assert meta["allow_no_label"] is False
    assert meta["training"]["loss"] in ("bce", "weighted-bce") and meta["data"]["task"] == "multi-label"


def test_training_scores_the_untouched_test_split_with_multi_label_metrics(trained_multi):
    m = trained_multi.metrics
    for key in ("macro_f1", "micro_f1", "weighted_f1", "samples_f1", "accuracy", "hamming_loss"):
        assert 0.0 <= m[key] <= 1.0, key
    assert m["task"] == "multi-label" and m["n"] == len(
        pd.read_csv(trained_multi.output_dir / "report" / MISCLASSIFIED_CSV)
    ) + int(round(m["accuracy"] * m["n"]))
    assert set(m["per_class"]) == set(MULTI_LABELS)
    assert all("threshold" in row for row in m["per_class"].values())
    assert len(m["cooccurrence"]) == 6 and "per_label_ece" in m["calibration"]
    report = trained_multi.output_dir / "report"
    for name in (METRICS_JSON, REPORT_HTML, COOCCURRENCE_PNG, MISCLASSIFIED_CSV):
        assert (report / name).is_file(), name
    assert "Per-label scores" in (report / REPORT_HTML).read_text()


def test_every_label_over_its_threshold_is_predicted(trained_multi):
    predictor = Predictor.load(trained_multi.model_dir)
    probs = predictor.predict_proba(TEXTS)
    assert probs.shape == (3, 6) and ((probs > 0) & (probs < 1)).all()
    thresholds = np.asarray(predictor.meta.thresholds)
    for p, record in zip(probs, predictor.predict(TEXTS)):
        assert isinstance(record, MultiLabelPrediction)
        over = [lab for lab, q, t in zip(MULTI_LABELS, p, thresholds) if q >= t]
        expected = over or [MULTI_LABELS[int(p.argmax())]]  # never empty: at least the most probable label
        assert sorted(record.labels) == sorted(expected)
        assert record.labels == sorted(record.labels, key=lambda lab: -record.probabilities[lab])
        assert record.probabilities == pytest.approx(dict(zip(MULTI_LABELS, map(float, p))))


def test_files_get_predicted_labels_and_every_probability(trained_multi):
    predictor = Predictor.load(trained_multi.model_dir)
    frame = predictions_frame(predictor, [*TEXTS, "!!!"])
    assert list(frame.columns) == prediction_columns(MULTI_LABELS, None, predictor.task)
    assert list(frame.columns)[0] == "predicted_labels"
    records = predictor.predict(TEXTS)
    assert frame["predicted_labels"].tolist()[:3] == [",".join(r.labels) for r in records]
    assert frame.loc[3, "skipped"] == "empty after preprocessing" and frame.loc[3, "predicted_labels"] == ""


def test_cli_prints_each_label_with_its_probability(trained_multi, capsys):
    assert main(["predict", "--model", str(trained_multi.model_dir), *TEXTS[:2]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    records = Predictor.load(trained_multi.model_dir).predict(TEXTS[:2])
    assert lines == [
        ", ".join(f"{lab} {r.probabilities[lab]:.2f}" for lab in r.labels) + f"\t{text}"
        for r, text in zip(records, TEXTS[:2])
    ]


def test_evaluate_scores_a_file_as_training_scored_its_test_split(trained_multi, multi_csv, tmp_path):
    result = evaluate_model(trained_multi.model_dir, multi_csv, tmp_path / "eval")
    assert result.metrics["task"] == "multi-label" and result.metrics["n"] == 400
    assert result.probs.shape == (400, 6)
    assert (tmp_path / "eval" / REPORT_HTML).is_file()


def test_evaluate_on_the_command_line_names_subset_accuracy_after_the_f1_scores(trained_multi, multi_csv, capsys):
    """Multi-label accuracy is subset accuracy: the line names it so, after the F1 scores a reader looks for."""
    out = str(trained_multi.output_dir / "cli-eval")
    assert main(["evaluate", "--model", str(trained_multi.model_dir), str(multi_csv), "--out", out]) == 0
    m = json.loads((trained_multi.output_dir / "cli-eval" / METRICS_JSON).read_text())
    assert capsys.readouterr().out.splitlines()[0] == (
        f"{multi_csv} [all rows]: macro-F1 {m['macro_f1']:.4f}, micro-F1 {m['micro_f1']:.4f}, samples F1 "
        f"{m['samples_f1']:.4f}, subset accuracy {m['accuracy']:.4f} on 400 texts"
    )


@pytest.mark.parametrize(
    "settings, message",
    [
        (
            {"class_bias": True},
            "--class-bias applies to single-label data; this data is multi-label, and its model fits a decision "
            "threshold per label on validation instead",
        ),
        (
            {"imbalance": "oversample"},
            "imbalance 'oversample' does not apply to multi-label data; choose from auto, none, class-weight, "
            "focal, asl",
        ),
    ],
)
def test_single_label_settings_are_refused_for_multi_label_data_before_anything_is_written(
    multi_csv, tiny_model, tmp_path, settings, message
):
    from emoclf.config import Config
    from emoclf.errors import ConfigError
    from emoclf.training import train

    cfg = Config().replace(data=str(multi_csv), model=str(tiny_model), output_dir=str(tmp_path / "run"), **settings)
    with pytest.raises(ConfigError, match="^" + re.escape(message) + "$"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_a_threshold_is_refused_for_single_label_data(tiny_model, tmp_path):
    from emoclf.config import Config
    from emoclf.errors import ConfigError
    from emoclf.training import train

    cfg = Config().replace(model=str(tiny_model), output_dir=str(tmp_path / "run"), threshold=0.3)
    with pytest.raises(ConfigError, match=r"^--threshold applies to multi-label data; this data is single-label"):
        train(cfg)


def test_one_threshold_for_every_label_overrides_the_saved_ones(trained_multi, trained):
    from emoclf.errors import ConfigError

    low = Predictor.load(trained_multi.model_dir, threshold=0.01)
    assert low.meta.thresholds == [0.01] * 6
    assert all(sorted(r.labels) == sorted(MULTI_LABELS) for r in low.predict(TEXTS))
    with pytest.raises(ConfigError, match="^--threshold applies to multi-label models; .* is single-label"):
        Predictor.load(trained.model_dir, threshold=0.5)


@pytest.mark.slow
def test_a_multi_label_training_resumed_mid_way_matches_one_never_interrupted(
    multi_csv, tiny_model, tmp_path, monkeypatch
):
    from test_reliability import assert_same_weights

    from emoclf.checkpoints import latest_checkpoint
    from emoclf.config import Config
    from emoclf.trainer import EmoclfTrainer
    from emoclf.training import train

    cfg = Config().replace(
        data=str(multi_csv),
        model=str(tiny_model),
        tracking=False,
        epochs=2.0,
        max_samples=160,
        batch_size=16,
        learning_rate=3e-3,
        checkpoint_steps=4,
        num_threads=1,
        precision="fp32",
        patience=100,
        min_steps=0,
    )
    whole = train(cfg.replace(output_dir=str(tmp_path / "whole")))
    save = EmoclfTrainer._save_checkpoint

    def crash_after_step_12(self, model, trial):
        save(self, model, trial)
        if self.state.global_step == 12:  # inside the second epoch
            raise RuntimeError("power cut")

    monkeypatch.setattr(EmoclfTrainer, "_save_checkpoint", crash_after_step_12)
    with pytest.raises(RuntimeError, match="power cut"):
        train(cfg.replace(output_dir=str(tmp_path / "cut")))
    monkeypatch.setattr(EmoclfTrainer, "_save_checkpoint", save)
    resumed = train(cfg.replace(output_dir=str(tmp_path / "cut")), resume=True)
    assert_same_weights(tmp_path / "cut" / "model", tmp_path / "whole" / "model")
    assert (
        json.loads((tmp_path / "cut" / "model" / META_FILE).read_text())["thresholds"]
        == json.loads((tmp_path / "whole" / "model" / META_FILE).read_text())["thresholds"]
    )
    assert resumed.metrics["macro_f1"] == pytest.approx(whole.metrics["macro_f1"])
    assert latest_checkpoint(tmp_path / "cut" / "checkpoints") is not None


@pytest.mark.slow
def test_onnx_exports_and_the_mlflow_model_give_the_folders_labels(trained_multi, multi_csv, tmp_path):
    import mlflow

    from emoclf.config import DataConfig
    from emoclf.export import export_model

    folder = Predictor.load(trained_multi.model_dir)
    expected = folder.predict(TEXTS)
    frame = predictions_frame(folder, TEXTS)
    for precision, tolerance in (("fp32", 1e-5), ("int8", 0.05)):
        result = export_model(
            trained_multi.model_dir, tmp_path / precision, DataConfig(data=str(multi_csv)), precision, tracking=False
        )
        assert result.report["agreement"] >= (0.999 if precision == "fp32" else 0.9)
        onnx = Predictor.load(tmp_path / precision)
        assert onnx.task.multi_label and onnx.meta.thresholds == folder.meta.thresholds
        got = onnx.predict(TEXTS)
        np.testing.assert_allclose(
            [list(r.probabilities.values()) for r in got],
            [list(r.probabilities.values()) for r in expected],
            atol=tolerance,
        )
        if precision == "fp32":
            assert [r.labels for r in got] == [r.labels for r in expected]
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        with mlflow.start_run():
            from emoclf.mlflow_model import log_pyfunc

            uri = log_pyfunc(trained_multi.model_dir, TEXTS[:2]).model_uri
        pyfunc = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"text": TEXTS}))
        assert pyfunc["predicted_labels"].tolist() == frame["predicted_labels"].tolist()
        np.testing.assert_allclose(pyfunc[[f"prob_{lab}" for lab in MULTI_LABELS]], frame.iloc[:, 1:7], atol=1e-6)
        assert [r.labels for r in Predictor.load(uri).predict(TEXTS)] == [r.labels for r in expected]
    finally:
        mlflow.set_tracking_uri(previous)


def test_http_answers_every_label_over_its_threshold_and_skips_an_empty_text(trained_multi):
    from fastapi.testclient import TestClient

    from emoclf.serving import create_app

    predictor = Predictor.load(trained_multi.model_dir)
    client = TestClient(create_app(predictor))
    answer = client.post("/predict", json={"texts": [*TEXTS, "!!!"]})
    assert answer.status_code == 200
    predictions = answer.json()["predictions"]
    expected = predictor.predict(TEXTS)
    for got, record in zip(predictions, expected):
        assert set(got) == {"labels", "probabilities", "truncated"}
        assert got["labels"] == record.labels
        assert got["probabilities"] == pytest.approx(record.probabilities, abs=1e-6)
    assert set(predictions[3]) == {"skipped"}
    meta = client.get("/metadata").json()
    assert meta["task"] == "multi-label" and list(meta["thresholds"]) == MULTI_LABELS
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert "MultiLabelTextPrediction" in schema and "TextPrediction" not in schema


def test_the_model_card_reports_the_multi_label_scores_the_hub_reads(trained_multi):
    from huggingface_hub import ModelCard

    card = ModelCard.load(trained_multi.model_dir / "README.md")
    results = {(r.metric_type, (r.metric_args or {}).get("average")): r for r in card.data.eval_results}
    assert {("f1", "macro"), ("f1", "micro"), ("f1", "samples"), ("accuracy", None)} <= set(results)
    assert results[("accuracy", None)].metric_name == "Subset accuracy"
    assert results[("f1", "macro")].metric_value == pytest.approx(trained_multi.metrics["macro_f1"], abs=1e-4)
    assert "| label | precision | recall | F1 | test texts | threshold |" in card.text
    assert "gives a short\ntext any of the 6 labels" in card.text
