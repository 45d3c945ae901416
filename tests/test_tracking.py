"""MLflow against a real ``mlflow server`` on loopback: params, metrics, artifacts, a servable model."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from emoclf.config import Config
from emoclf.errors import ConfigError, TrackingError
from emoclf.stores import tracking_uri
from emoclf.tracking import (
    MLflowTracker,
    artifact_name,
    flatten,
    run_description,
    run_name,
    run_url,
    tracked_metrics,
)
from emoclf.training import train


def test_tracking_uri_precedence_and_local_stores_made_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri() == f"sqlite:///{tmp_path}/mlflow.db"  # the default, where it is, not "wherever you are"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert tracking_uri() == "http://127.0.0.1:1"
    assert tracking_uri("sqlite:///x.db") == f"sqlite:///{tmp_path}/x.db"
    assert tracking_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert tracking_uri("mlruns") == str(tmp_path / "mlruns")


def test_trainer_logs_are_tracked_under_grouped_names_without_bookkeeping():
    step = {"loss": 1.2, "grad_norm": 3.0, "learning_rate": 1e-4, "epoch": 0.25}
    evaluation = {
        "eval_loss": 1.1,
        "eval_macro_f1": 0.4,
        "eval_accuracy": 0.5,
        "eval_runtime": 2.0,
        "eval_samples_per_second": 23.0,
        "eval_steps_per_second": 1.0,
        "epoch": 1.0,
    }
    end = {
        "train_runtime": 10.0,
        "train_samples_per_second": 36.0,
        "train_steps_per_second": 1.2,
        "total_flos": 1e12,
        "train_loss": 1.3,
        "epoch": 1.0,
    }
    # MLflow's UI sorts its chart sections by name: the curves first (curves/train, curves/val).
    assert tracked_metrics(step) == {
        "curves/train/loss": 1.2,
        "curves/train/grad_norm": 3.0,
        "curves/train/learning_rate": 1e-4,
    }
    assert tracked_metrics(evaluation) == {
        "curves/val/loss": 1.1,
        "curves/val/macro_f1": 0.4,
        "curves/val/accuracy": 0.5,
        "system/val_seconds": 2.0,
    }
    assert tracked_metrics(end) == {}  # train_seconds is logged once, by emoclf


def test_default_run_name_and_description_say_what_ran():
    from emoclf.data import DEMO_SOURCE, load_data

    cfg = Config()
    summary = load_data(cfg.data).summary(DEMO_SOURCE)
    assert re.fullmatch(r"minilm-none-\d{8}-\d{4}", run_name("minilm", "none"))
    assert re.fullmatch(r"bert-base-uncased-focal-\d{8}-\d{4}", run_name("bert-base-uncased", "focal"))
    assert run_description(cfg, summary, "none", "ce").startswith(
        "Fine-tunes sentence-transformers/all-MiniLM-L6-v2 to classify texts as anger, fear, joy, love, sadness, "
        "surprise, on the embedded demo set (368 train, 46 validation, 46 test texts), imbalance handling none "
        "(loss ce), up to 3 epochs (at least 120 steps)."
    )
    assert "(loss ce), 200 optimizer steps." in run_description(cfg.replace(max_steps=200), summary, "none", "ce")


def test_logged_model_names_and_run_links():
    assert artifact_name("all-MiniLM-L6-v2-finetuned-emotion") == "all-MiniLM-L6-v2-finetuned-emotion"
    assert artifact_name("/Users/me/emotion runs") == "Users-me-emotion-runs"
    assert artifact_name("///") == "model"
    # MLflow 3's UI opens an experiment on its GenAI pages unless the link asks for the model-training ones.
    assert run_url("http://127.0.0.1:5000/", "3", "abc") == (
        "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    )
    assert run_url("sqlite:////tmp/mlflow.db", "3", "abc") is None


def test_the_model_requirements_install_from_an_index():
    from emoclf.mlflow_model import requirements

    reqs = requirements()
    assert not [r for r in reqs if "+" in r or r.startswith("emoclf")]
    assert {r.split("==")[0] for r in reqs} >= {"torch", "transformers", "mlflow", "pandas", "scikit-learn"}


def test_flatten_nested_config():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}


def test_a_call_mlflow_refuses_is_tried_once_never_queued_and_listed(tmp_path, caplog):
    import json

    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    from emoclf.layout import FAILURES_FILE
    from emoclf.tracking import Outbox

    tries, delivered = [], []

    def refuse(metrics):
        tries.append(metrics)
        raise MlflowException("Invalid metric name: 'test/f1_joy«'", INVALID_PARAMETER_VALUE)

    outbox = Outbox("sqlite:///x.db", attempts=3, backoff=0.01)
    assert outbox.send("log metrics", refuse, {"test/f1_joy«": 0.5}, detail={"step": None}) is None
    assert outbox.send("log params", delivered.append, "p") is None and delivered == ["p"]  # nothing waits behind it
    assert len(tries) == 1 and outbox.pending == [] and outbox.flush(final=True)  # tried once, not queued
    assert (
        "MLflow at sqlite:///x.db refused to log metrics (MlflowException: Invalid metric name: 'test/f1_joy«'); "
        "not retried, as it cannot succeed" in caplog.text
    )
    failures = json.loads(outbox.write_failures(tmp_path, "run-1").read_text())["failures"]
    assert failures == [
        {
            "call": "log metrics",
            "error": "MlflowException: Invalid metric name: 'test/f1_joy«'",
            "detail": {"step": None},
            "refused": True,
        }
    ]
    assert (tmp_path / FAILURES_FILE).is_file()


@pytest.mark.slow
def test_a_label_mlflow_cannot_name_still_gets_its_test_metrics(tmp_path, tiny_model, monkeypatch):
    import mlflow
    import pandas as pd

    from emoclf.data.io import demo_path

    monkeypatch.chdir(tmp_path)
    data = pd.read_csv(demo_path()).replace({"label": {"surprise": "surprise «wow»"}})
    data.to_csv(tmp_path / "d.csv", index=False)
    cfg = Config().replace(
        data=str(tmp_path / "d.csv"),
        model=str(tiny_model),
        output_dir=str(tmp_path / "run"),
        tracking_uri="sqlite:///mlflow.db",
        max_steps=4,
        batch_size=16,
        num_threads=1,
    )
    clash = data.replace({"label": {"joy": "surprise »wow«"}})
    clash.to_csv(tmp_path / "clash.csv", index=False)
    with pytest.raises(ConfigError, match=r"^labels 'surprise «wow»', 'surprise »wow«' would share the MLflow metric"):
        train(cfg.replace(data=str(tmp_path / "clash.csv")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clash.csv", "d.csv"]  # refused before anything
    result = train(cfg)
    assert result.tracking_failures is None
    run = mlflow.MlflowClient(tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")).get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert {"test/f1_surprise _wow_", "test/f1_joy", "test/macro_f1"} <= set(run.data.metrics)


def test_unreachable_server_fails_fast_naming_uri():
    import time

    start = time.monotonic()
    with pytest.raises(TrackingError, match=r"http://127\.0\.0\.1:9 is unreachable"):
        MLflowTracker("http://127.0.0.1:9", "x").start()
    assert time.monotonic() - start < 10


@pytest.mark.slow
def test_train_against_real_server(mlflow_server, tmp_path, tiny_model):
    import mlflow
    from mlflow.tracking import MlflowClient

    cfg = Config().replace(
        model=str(tiny_model),
        epochs=1.0,
        min_steps=0,
        output_dir=str(tmp_path / "run"),
        tracking_uri=mlflow_server,
        experiment="ci",
        register_name="emoclf-tiny",
        model_name="tiny-emotion",
    )
    result = train(cfg)
    client = MlflowClient(mlflow_server)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "1.0"
    assert run.data.params["resolved.imbalance_strategy"] == "none"
    assert "None" not in run.data.params.values() and "data.val_data" not in run.data.params  # unset: left out
    assert client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    assert run.data.metrics["test/macro_f1"] == pytest.approx(result.metrics["macro_f1"])
    assert "test/f1_surprise" in run.data.metrics
    assert len(client.get_metric_history(result.run_id, "curves/val/macro_f1")) == 1
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "report")}
    assert {
        "report/confusion_matrix.png",
        "report/metrics.json",
        "report/misclassified.csv",
        "report/training_curves.png",
        "report/data_profile.json",
    } <= artifacts
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {"train", "validation", "test"}
    # Tidy: a name and a description that say what ran, metrics grouped by prefix, no Trainer bookkeeping.
    assert re.fullmatch(rf"{tiny_model.name}-none-\d{{8}}-\d{{4}}", run.info.run_name), run.info.run_name
    base = f"{tiny_model.parent.name}/{tiny_model.name}"  # a local base model by its last two parts
    assert run.data.tags["mlflow.note.content"].startswith(f"Fine-tunes {base} to classify texts as anger, ")
    assert {key.split("/")[0] for key in run.data.metrics} == {"curves", "train", "val", "test", "system"}
    assert sorted({key.rsplit("/", 1)[0] for key in run.data.metrics if not key.startswith("system/")})[:2] == [
        "curves/train",
        "curves/val",
    ]  # the sections MLflow's UI shows first
    assert not {
        "total_flos",
        "eval_runtime",
        "train_runtime",
        "train_samples_per_second",
        "eval_steps_per_second",
        "epoch",
        "test_macro_f1",
        "eval_macro_f1",
    } & set(run.data.metrics)
    assert {
        "curves/train/loss",
        "curves/train/learning_rate",
        "curves/val/loss",
        "curves/val/accuracy",
        "val/temperature",
        "system/train_seconds",
        "test/ece_after",
        "test/recall_joy",
        "train/optimizer_steps",
        "train/examples_seen",
    } <= set(run.data.metrics)
    assert run.data.params["model.model"] == str(tiny_model)
    root = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"README.md", "train.log"} <= root and "data_profile.json" not in root  # the profile once, in report/
    card = Path(mlflow.artifacts.download_artifacts(f"runs:/{result.run_id}/README.md", tracking_uri=mlflow_server))
    assert card.read_text().startswith("\n# tiny-emotion\n") and "```yaml\n" in card.read_text()  # no front matter
    log = Path(mlflow.artifacts.download_artifacts(f"runs:/{result.run_id}/train.log", tracking_uri=mlflow_server))
    assert "training " in log.read_text() and (result.output_dir / "train.log").is_file()
    # The model has its own name and a description, and is linked to the test dataset its metrics come from.
    logged = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert [m.name for m in logged] == ["tiny-emotion"]
    assert logged[0].tags["mlflow.note.content"].startswith(f"tiny-emotion: {base} fine-tuned with emoclf")
    linked = {(m.key, m.dataset_name) for m in client.get_logged_model(logged[0].model_id).metrics}
    assert {("test/macro_f1", "test"), ("test/f1_joy", "test")} <= linked
    requirements = (
        Path(
            mlflow.artifacts.download_artifacts(
                f"runs:/{result.run_id}/tiny-emotion/requirements.txt", tracking_uri=mlflow_server
            )
        )
        .read_text()
        .split()
    )
    assert not [r for r in requirements if "+" in r or r.startswith("emoclf")]  # an index serves every line
    assert any(r.startswith("torch==") for r in requirements)

    mlflow.set_tracking_uri(mlflow_server)
    model = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/tiny-emotion")  # under the model's name
    out = model.predict(__import__("pandas").DataFrame({"text": ["i am so happy", "this is terrifying"]}))
    assert set(out["predicted_label"]) <= {"anger", "fear", "joy", "love", "sadness", "surprise"}
    assert {"prob_joy", "predicted_probability", "skipped"} <= set(out.columns)
    assert client.get_registered_model("emoclf-tiny").name == "emoclf-tiny"

    from emoclf.inference import Predictor

    labels = Predictor.load("models:/emoclf-tiny/1").labels
    assert out.filter(like="prob_").columns.str.removeprefix("prob_").tolist() == labels


@pytest.mark.slow
def test_failed_run_is_marked_failed(mlflow_server, tmp_path, tiny_model, monkeypatch):
    from mlflow.tracking import MlflowClient

    import emoclf.training as training

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(training, "save_bundle", boom)
    cfg = Config().replace(
        model=str(tiny_model), epochs=1.0, output_dir=str(tmp_path), tracking_uri=mlflow_server, experiment="fail"
    )
    with pytest.raises(RuntimeError, match="disk on fire"):
        train(cfg)
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("fail")
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_a_store_emoclf_pointed_at_is_not_taken_for_the_users_choice_later(tmp_path, monkeypatch):
    from emoclf.stores import DEFAULT_TRACKING_URI, point_mlflow_at, tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    point_mlflow_at(f"sqlite:///{tmp_path / 'first.db'}")
    # MLflow itself would have set the variable: a second training would then log to the first one's store.
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert tracking_uri() == tracking_uri(DEFAULT_TRACKING_URI)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'users.db'}")
    point_mlflow_at(f"sqlite:///{tmp_path / 'second.db'}")
    assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'users.db'}"
