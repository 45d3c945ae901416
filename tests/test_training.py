"""End to end on the tiny model: files written, real labels, untouched test split, reproducibility."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from emoclf.cli import main
from emoclf.config import Config
from emoclf.errors import ConfigError, DataError
from emoclf.inference import Predictor
from emoclf.layout import META_FILE
from emoclf.modeling import load_bundle
from emoclf.trainer import resolve_precision, tokenize_split
from emoclf.training import train

LABELS = ["anger", "fear", "joy", "love", "sadness", "surprise"]


def test_train_writes_model_and_every_report(trained):
    out = trained.output_dir
    for name in (
        "config.yaml",
        "model/model.safetensors",
        "model/config.json",
        "model/emoclf.json",
        "report/metrics.json",
        "report/report.md",
        "report/confusion_matrix.png",
        "report/per_class_f1.png",
        "report/training_curves.png",
        "report/misclassified.csv",
        "report/data_profile.json",
        "report/class_distribution.png",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "report/metrics.json").read_text())
    assert set(metrics["per_class"]) == set(LABELS)
    assert metrics["n"] == 46  # the demo's carved test split: 10% of 460 rows, stratified
    assert metrics["macro_f1"] == pytest.approx(trained.metrics["macro_f1"])
    # The headline agrees with the confusion matrix written beside it.
    cm = np.array(metrics["confusion_matrix"])
    tp, predicted, actual = np.diag(cm), cm.sum(axis=0), cm.sum(axis=1)
    f1 = np.divide(2 * tp, predicted + actual, out=np.zeros(len(cm)), where=(predicted + actual) > 0)
    assert metrics["macro_f1"] == pytest.approx(f1[actual > 0].mean())
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


def test_single_label_scores_are_those_of_before_multi_label(trained):
    """Multi-label support left single-label training as it was: this fixture's run scored exactly these figures
    at commit 397850b (before multi-label) and after it, on one Sapphire Rapids CPU. The margin (one or two of the
    46 test texts) is for other CPUs' fp32 arithmetic, not for changes of emoclf."""
    m = trained.metrics
    assert m["n"] == 46 and "task" not in m
    assert m["accuracy"] == pytest.approx(0.32609, abs=0.045)
    assert m["macro_f1"] == pytest.approx(0.15934, abs=0.045)
    assert m["weighted_f1"] == pytest.approx(0.17439, abs=0.045)


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


def test_tokenize_split_tokenises_once(tiny_model):
    import pandas as pd
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    df = pd.DataFrame({"text": ["i feel happy", "i am so very sad today"], "label_id": [2, 4]})
    ds = tokenize_split(df, tok, max_length=16)
    assert ds["labels"] == [2, 4]
    assert ds["input_ids"] == tok(df["text"].tolist(), truncation=True, max_length=16)["input_ids"]
    assert len(ds["input_ids"][1]) > len(ds["input_ids"][0])


def test_precision_resolution_on_cpu():
    assert resolve_precision("fp32") == "fp32"
    if not torch.cuda.is_available():
        assert resolve_precision("auto") in ("bf16", "fp32")


@pytest.mark.parametrize("strategy", ["oversample", "focal"])
def test_strategies_train_without_touching_eval_splits(tmp_path, tiny_model, strategy):
    from emoclf.data import load_data
    from emoclf.preprocess import Preprocessor

    cfg = Config().replace(
        model=str(tiny_model), epochs=1.0, output_dir=str(tmp_path), tracking=False, imbalance=strategy
    )
    data = load_data(cfg.data, Preprocessor(cfg.preprocess))
    before = {s: data.splits[s].copy() for s in ("validation", "test")}
    result = train(cfg, data)
    for split, frame in before.items():
        assert frame.equals(data.splits[split]), split
    assert result.metrics["n"] == len(before["test"])


def test_same_seed_same_metrics(tmp_path, tiny_model):
    runs = []
    for name in ("a", "b"):
        cfg = Config().replace(
            model=str(tiny_model), epochs=1.0, output_dir=str(tmp_path / name), tracking=False, precision="fp32"
        )
        runs.append(train(cfg).metrics)
    assert runs[0]["macro_f1"] == pytest.approx(runs[1]["macro_f1"], abs=1e-6)
    assert np.array_equal(runs[0]["confusion_matrix"], runs[1]["confusion_matrix"])


def _tiny(tiny_model, out, **kw) -> Config:
    return Config().replace(
        model=str(tiny_model),
        output_dir=str(out),
        tracking=False,
        epochs=1.0,
        max_samples=64,
        batch_size=16,
        num_threads=1,
        **kw,
    )


def test_diverged_training_stops_naming_the_step_saves_nothing_and_fails_the_run(tmp_path, tiny_model, capsys):
    from mlflow.tracking import MlflowClient

    out, uri = tmp_path / "run", f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert (
        main(
            [
                "train",
                "--model",
                str(tiny_model),
                "--output-dir",
                str(out),
                "--tracking-uri",
                uri,
                "--learning-rate",
                "1e8",
                "--epochs",
                "2",
                "--max-samples",
                "64",
                "--batch-size",
                "16",
            ]
        )
        == 2
    )
    err = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("emoclf: error"))
    assert re.fullmatch(
        r"emoclf: error: training diverged: the (training loss|gradient norm|validation loss) is "
        r"(nan|inf|-inf) at step \d+; nothing was saved\. Lower --learning-rate \(now 1e\+08\), or try "
        r"--precision fp32",
        err,
    ), err
    assert not (out / "model").exists() and not (out / "checkpoints").exists()
    run_id = json.loads((out / "run_info.json").read_text())["run_id"]
    assert MlflowClient(uri).get_run(run_id).info.status == "FAILED"


def test_a_failed_evaluation_leaves_no_model_folder(tmp_path, tiny_model, monkeypatch):
    import emoclf.finishing as finishing

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation crashed")

    monkeypatch.setattr(finishing, "evaluate", broken)
    with pytest.raises(RuntimeError, match="evaluation crashed"):
        train(_tiny(tiny_model, tmp_path / "run"))
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith((".model", "model"))) == []


def test_bad_data_fails_before_any_file_is_written_or_run_opened(tmp_path, tiny_model, monkeypatch):
    import pandas as pd

    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"text": list(range(40)), "label": ["joy", "anger"] * 20}).to_parquet(bad)
    cfg = Config().replace(model=str(tiny_model), output_dir=str(tmp_path / "run"), data=str(bad))
    with pytest.raises(DataError, match=r"column 'text': expected text, found int 0 \(40 row\(s\)\)"):
        train(cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet"]  # no run folder, no mlflow.db


def test_a_finished_training_is_replaced_only_with_overwrite(tmp_path, tiny_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    cfg = _tiny(tiny_model, out).replace(tracking=True, tracking_uri="sqlite:///mlflow.db")
    first = train(cfg)
    info = json.loads((out / "run_info.json").read_text())
    # Stored absolute: runs:/ URIs resolve from any folder.
    assert info == {
        "run_id": first.run_id,
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "experiment": "emoclf",
    }
    weights = (out / "model" / "model.safetensors").read_bytes()
    with pytest.raises(
        ConfigError,
        match="^"
        + re.escape(
            f"{out} holds a finished training (model/, MLflow run {first.run_id}); pass --overwrite to replace it, "
            "or choose another --output-dir"
        )
        + "$",
    ):
        train(cfg.replace(seed=7))
    assert (out / "model" / "model.safetensors").read_bytes() == weights
    second = train(cfg.replace(seed=7, overwrite=True))
    assert second.run_id != first.run_id
    assert json.loads((out / "run_info.json").read_text())["run_id"] == second.run_id
    assert (out / "model" / "model.safetensors").read_bytes() != weights
    assert json.loads((out / "model" / "emoclf.json").read_text())["config"]["train"]["seed"] == 7


def test_small_data_trains_at_least_min_steps_and_says_so(tmp_path, tiny_model):
    cfg = _tiny(tiny_model, tmp_path / "floor").replace(min_steps=20, early_stopping=False)
    result = train(cfg)
    t = result.metrics["training"]
    rows = json.loads((tmp_path / "floor" / "report" / "data_profile.json").read_text())["rows"]["train"]
    assert t["planned_steps"] == t["steps_per_epoch"] == -(-rows // 16) < 20  # one epoch at batch 16
    assert (t["steps"], t["optimizer_steps"], t["min_steps_applied"]) == (20, 20, True)
    report = (tmp_path / "floor" / "report" / "report.md").read_text()
    assert f"{t['planned_steps']} planned steps were raised to the --min-steps floor of 20" in report
    assert json.loads((tmp_path / "floor" / "report" / "metrics.json").read_text())["training"] == t
    plain = train(cfg.replace(min_steps=0, output_dir=str(tmp_path / "plain")))
    assert plain.metrics["training"]["optimizer_steps"] == t["planned_steps"]
    assert not plain.metrics["training"]["min_steps_applied"]


def test_the_model_folder_says_where_it_comes_from(trained, tiny_model):
    meta = json.loads((trained.model_dir / META_FILE).read_text())
    # A local base model is named by its last two parts: never by an absolute path.
    assert meta["base_model"] == f"{tiny_model.parent.name}/{tiny_model.name}" and meta["emoclf_version"] == "0.1.0"
    assert meta["run_id"] is None and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", meta["trained_at"])
    assert meta["data"]["texts"] == {"train": 368, "validation": 46, "test": 46}
    assert meta["training"]["imbalance_strategy"] == "none" and meta["metrics"]["per_class"]["joy"]["support"] == 10
    assert "INFO emoclf.trainer: epoch 1.00" in (trained.output_dir / "train.log").read_text()


def test_layer_decay_gives_each_depth_its_learning_rate(tiny_model, tmp_path):
    from transformers import AutoModelForSequenceClassification, TrainingArguments

    from emoclf.trainer import EmoclfTrainer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=3)
    args = TrainingArguments(
        output_dir=str(tmp_path), learning_rate=1e-3, weight_decay=0.01, use_cpu=True, report_to=[]
    )
    rates = {}
    for group in EmoclfTrainer(model=model, args=args, layer_decay=0.5).create_optimizer().param_groups:
        for p in group["params"]:
            rates[p.data_ptr()] = (group["lr"], group["weight_decay"])
    named = dict(model.named_parameters())
    assert rates[named["bert.embeddings.word_embeddings.weight"].data_ptr()] == (1e-3 * 0.5**3, 0.01)
    assert rates[named["bert.encoder.layer.0.attention.self.query.weight"].data_ptr()] == (1e-3 * 0.5**2, 0.01)
    assert rates[named["bert.encoder.layer.1.output.LayerNorm.weight"].data_ptr()] == (1e-3 * 0.5, 0.0)
    assert rates[named["classifier.weight"].data_ptr()] == (1e-3, 0.01)
    assert len(rates) == len(named)  # every parameter in exactly one group
    # 1 is the Trainer's own optimizer: one rate for all.
    plain = EmoclfTrainer(model=model, args=args).create_optimizer()
    assert {g["lr"] for g in plain.param_groups} == {1e-3}


def test_one_training_at_a_time_in_an_output_folder_and_a_killed_holder_never_blocks(tmp_path, tiny_model):
    out = tmp_path / "run"
    hold = "import sys, time\nfrom pathlib import Path\nfrom emoclf.checkpoints import output_lock\n"
    hold += "with output_lock(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(600)\n"
    holder = subprocess.Popen([sys.executable, "-c", hold, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(
            ConfigError,
            match=rf"^{re.escape(str(out))} is in use by another training \(PID {holder.pid} on host "
            rf"{re.escape(socket.gethostname())} since \d{{4}}-\d\d-\d\dT[\d:]+\+00:00\); wait for it to end, or "
            "choose another --output-dir$",
        ):
            train(_tiny(tiny_model, out, min_steps=4))
        assert sorted(p.name for p in out.iterdir()) == [".lock", ".lock.owner"]  # nothing prepared or written
    finally:
        holder.kill()  # as kill -9 leaves it: the lock file and the owner's note stay behind
        holder.wait()
    result = train(_tiny(tiny_model, out, min_steps=4))
    assert (result.model_dir / META_FILE).is_file() and not (out / ".lock.owner").exists()


def test_an_explicit_step_count_wins_over_the_floor_and_a_length_the_model_cannot_take_is_refused(tmp_path, tiny_model):
    result = train(_tiny(tiny_model, tmp_path / "steps", max_steps=6, min_steps=120))
    t = result.metrics["training"]
    assert (t["steps"], t["optimizer_steps"], t["min_steps_applied"]) == (6, 6, False)
    cfg = _tiny(tiny_model, tmp_path / "long", max_length=100000)
    with pytest.raises(
        ConfigError,
        match="^"
        + re.escape(
            f"max_length 100000 is more than model {str(tiny_model)!r} accepts (128 tokens); pass --max-length 128 "
            "or less, or leave it out to take it from the data"
        )
        + "$",
    ):
        train(cfg)
    assert not (tmp_path / "long").exists()  # refused before anything is written
    at_limit = train(cfg.replace(max_length=128, output_dir=str(tmp_path / "at-limit"), max_steps=2))
    saved = json.loads((at_limit.model_dir / META_FILE).read_text())
    assert saved["max_length"] == saved["config"]["model"]["max_length"] == 128  # what was trained is recorded
