"""emoclf tune: a study on the tiny model, its files and MLflow runs, pruning, the test split never seen
during the search, best.yaml reproducing the best trial, and resuming after SIGKILL and Ctrl-C."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import yaml
from conftest import free_port
from optuna.trial import TrialState

from emoclf import finishing, training
from emoclf import tune as tune_module
from emoclf.cli import main
from emoclf.config import Config, DataConfig, TuneOptions
from emoclf.data import load_data
from emoclf.errors import ConfigError, TrainingInterrupted
from emoclf.inference import Predictor
from emoclf.tune import best_validation_f1

DRIVER = Path(__file__).with_name("fault_driver.py")
# Ranges in which the tiny random model learns the demo set in a few seconds per trial.
SPACE = """\
learning_rate: {type: float, low: 2.0e-3, high: 8.0e-3, log: true}
epochs: {type: int, low: 5, high: 7}
imbalance: {type: categorical, choices: [none, class-weight]}
label_smoothing: {type: float, low: 0.0, high: 0.1}
"""
PLOTS = ("optimization_history.png", "param_importances.png", "parallel_coordinate.png", "slice.png")


def tune_flags(tiny_model: Path, root: Path, *extra: str) -> list[str]:
    space = root / "space.yaml"
    space.write_text(SPACE)
    return [
        "tune",
        "--model",
        str(tiny_model),
        "--output-dir",
        str(root / "out"),
        "--space",
        str(space),
        "--tracking-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--experiment",
        "tune",
        "--batch-size",
        "16",
        "--precision",
        "fp32",
        "--num-threads",
        "1",
        "--min-steps",
        "0",
        *extra,
    ]


def runs_of(root: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    return client.search_runs([client.get_experiment_by_name("tune").experiment_id])


def load_study(root: Path) -> optuna.Study:
    return optuna.load_study(study_name="emoclf-tune", storage=f"sqlite:///{root / 'out' / 'study.db'}")


class PruneTrialOne(optuna.pruners.BasePruner):
    """Prunes trial 1 at its second evaluation, whatever its scores: a pruned trial on demand."""

    def prune(self, study, trial) -> bool:
        return trial.number == 1 and len(trial.intermediate_values) >= 2


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_model):
    """One 3-trial study whose trial 1 is pruned, with every training, evaluation and scored text recorded."""
    root = tmp_path_factory.mktemp("tune")
    calls: list[tuple] = []
    real_train, real_evaluate, real_logits = training.train, finishing.evaluate, Predictor.logits

    def spy_train(cfg, data=None, resume=False, callbacks=(), holdout="test"):
        calls.append(("train", tuple(data.splits), holdout))
        return real_train(cfg, data, resume, callbacks, holdout)

    def spy_evaluate(predictor, data, *args, **kwargs):
        calls.append(("evaluate", data.split))
        return real_evaluate(predictor, data, *args, **kwargs)

    def spy_logits(self, texts, *args, **kwargs):
        calls.append(("logits", tuple(texts)))
        return real_logits(self, texts, *args, **kwargs)

    records, printed = Records(), io.StringIO()
    logging.getLogger("emoclf").addHandler(records)
    logging.getLogger("emoclf").setLevel(logging.INFO)
    try:
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
            mp.setattr(tune_module, "make_pruner", lambda name: PruneTrialOne())
            mp.setattr(training, "train", spy_train)
            mp.setattr(finishing, "evaluate", spy_evaluate)
            mp.setattr(Predictor, "logits", spy_logits)
            rc = main(tune_flags(tiny_model, root, "--n-trials", "3"))
    finally:
        logging.getLogger("emoclf").removeHandler(records)
    return SimpleNamespace(
        root=root, out=root / "out", rc=rc, calls=calls, log=records.lines, printed=printed.getvalue()
    )


@pytest.mark.slow
def test_a_three_trial_study_writes_its_files_and_one_parent_with_three_child_runs(study):
    from mlflow.tracking import MlflowClient

    assert study.rc == 0
    out = study.out
    for name in (
        "study.db",
        "best.yaml",
        "tune.json",
        "run_info.json",
        "model/model.safetensors",
        "report/report.html",
        "report/metrics.json",
        "study/trials.csv",
        *(f"study/{p}" for p in PLOTS),
    ):
        assert (out / name).is_file(), name
    trials = load_study(study.root).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 3  # each trial drew its own values
    best = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    for t in trials:  # only the best trial's model is kept; no trial keeps checkpoints
        folder = out / "trials" / f"trial-{t.number:04d}"
        assert (folder / "config.yaml").is_file() and not (folder / "checkpoints").exists()
        assert (folder / "model").exists() == (t.number == best.number)
    summary = json.loads((out / "tune.json").read_text())
    assert summary["best_trial"] == best.number and summary["best_value"] == best.value
    assert summary["trials"] == {"complete": 2, "pruned": 1, "fail": 0}
    report = json.loads((out / "report" / "metrics.json").read_text())
    assert report["n"] == 46 and summary["test_metrics"]["macro_f1"] == report["macro_f1"]
    assert report["training"] == best.user_attrs["training"]  # the steps its trial trained

    runs = runs_of(study.root)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and len(runs) == 4
    parent = parents[0]
    assert parent.info.run_id == json.loads((out / "run_info.json").read_text())["run_id"]
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(children) == ["trial-0", "trial-1", "trial-2"]
    assert {r.info.status for r in runs} == {"FINISHED"}  # none left RUNNING, the pruned one included
    client = MlflowClient(f"sqlite:///{study.root / 'mlflow.db'}")
    for t in trials:  # each child trained with the values its trial drew, its per-epoch scores those reported
        params = children[f"trial-{t.number}"].data.params
        assert float(params["train.learning_rate"]) == pytest.approx(t.params["learning_rate"])
        assert params["train.imbalance"] == t.params["imbalance"]
        epochs = client.get_metric_history(children[f"trial-{t.number}"].info.run_id, "curves/val/macro_f1")
        assert [m.value for m in sorted(epochs, key=lambda m: m.step)] == pytest.approx(
            [t.intermediate_values[k] for k in sorted(t.intermediate_values)]
        )
    assert parent.data.metrics["best_value"] == pytest.approx(best.value)
    assert parent.data.metrics["test/macro_f1"] == pytest.approx(report["macro_f1"])
    assert parent.data.params["best.learning_rate"] == str(best.params["learning_rate"])
    assert parent.data.tags["emoclf.best_trial"] == str(best.number)
    artifacts = _artifacts(parent.info.run_id, study.root)
    assert {"best.yaml", "report/report.html", *(f"study/{p}" for p in PLOTS)} <= artifacts
    models = client.search_logged_models([parent.info.experiment_id])
    assert [m.source_run_id for m in models] == [parent.info.run_id]  # the study's model, none per trial
    assert f"best trial {best.number}: validation macro-F1 {best.value:.4f}" in study.printed
    assert f"MLflow parent run: {parent.info.run_id}" in study.printed


def _artifacts(run_id: str, root: Path) -> set[str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    found, folders = set(), [None]
    while folders:
        for a in client.list_artifacts(run_id, folders.pop()):
            (folders.append(a.path) if a.is_dir else found.add(a.path))
    return found


@pytest.mark.slow
def test_a_pruned_trial_ends_cleanly_and_tagged(study):
    trial = load_study(study.root).trials[1]
    assert trial.state == TrialState.PRUNED and sorted(trial.intermediate_values) == [1, 2]
    run = next(r for r in runs_of(study.root) if r.info.run_name == "trial-1")
    assert run.info.status == "FINISHED"
    assert run.data.tags["emoclf.pruned"] == "true" and run.data.tags["emoclf.pruned_at"] == "evaluation 2 (epoch 2.00)"
    folder = study.out / "trials" / "trial-0001"
    assert not (folder / "checkpoints").exists() and not (folder / "model").exists()
    assert not (folder / ".model.staged").exists()
    line = next(line for line in study.log if line.startswith("trial 1 "))
    assert "[2/3 finished" in line and "-> pruned at evaluation 2 (validation macro-F1 " in line


@pytest.mark.slow
def test_the_search_never_looks_at_the_test_split(study):
    test_texts = set(load_data(DataConfig()).splits["test"]["raw_text"])
    trainings = [c for c in study.calls if c[0] == "train"]
    assert trainings == [("train", ("train", "validation"), None)] * 3  # trials get no test split at all
    evaluations = [i for i, c in enumerate(study.calls) if c[0] == "evaluate"]
    assert [study.calls[i] for i in evaluations] == [("evaluate", "test")]  # once: the kept model, at the end
    last_training = max(i for i, c in enumerate(study.calls) if c[0] == "train")
    assert evaluations[0] > last_training
    scored_before = {t for c in study.calls[: evaluations[0]] if c[0] == "logits" for t in c[1]}
    assert scored_before and not scored_before & test_texts
    assert test_texts <= set(next(c[1] for c in study.calls[evaluations[0] :] if c[0] == "logits"))


@pytest.mark.slow
def test_best_yaml_reproduces_the_best_trial(study, tmp_path):
    cfg = Config.from_yaml(study.out / "best.yaml")
    assert cfg.train.output_dir == str(study.out / "reproduced") and not cfg.train.overwrite
    assert cfg.model.max_length is not None  # pinned: emoclf train would otherwise profile the test texts too
    summary = json.loads((study.out / "tune.json").read_text())
    result = training.train(cfg.replace(output_dir=str(tmp_path / "again"), tracking=False))
    assert best_validation_f1(result.history) == pytest.approx(summary["best_value"], abs=1e-6)
    assert result.metrics["macro_f1"] == pytest.approx(summary["test_metrics"]["macro_f1"], abs=1e-6)


@pytest.mark.slow
def test_refit_trains_the_best_config_again_on_all_the_training_rows(tmp_path, tiny_model, monkeypatch):
    trained = []
    real_train = training.train

    def spy_train(cfg, data=None, *args, **kwargs):
        trained.append((Path(cfg.train.output_dir).name, len(data.splits["train"]), cfg.data.max_samples))
        return real_train(cfg, data, *args, **kwargs)

    monkeypatch.setattr(training, "train", spy_train)
    records = Records()
    logging.getLogger("emoclf").addHandler(records)
    try:  # 60 rows at batch 16 are 4 steps an epoch: the floor of 40 outweighs the 5 to 7 epochs drawn
        assert (
            main(
                tune_flags(
                    tiny_model,
                    tmp_path,
                    "--n-trials",
                    "1",
                    "--max-samples",
                    "60",
                    "--refit",
                    "--no-tracking",
                    "--min-steps",
                    "40",
                    "--no-early-stopping",
                )
            )
            == 0
        )
    finally:
        logging.getLogger("emoclf").removeHandler(records)
    everything = len(load_data(DataConfig()).splits["train"])
    assert everything > 60 and trained == [("trial-0000", 60, 60), ("refit", everything, None)]
    out = tmp_path / "out"
    trial = load_study(tmp_path).trials[0]
    steps = trial.user_attrs["training"]
    assert (steps["steps"], steps["optimizer_steps"], steps["min_steps_applied"]) == (40, 40, True)
    assert steps["planned_steps"] == 4 * trial.params["epochs"]
    assert any(
        line.startswith("trial 0 ")
        and f"(40 steps, the --min-steps floor, instead of the {steps['planned_steps']} drawn)" in line
        for line in records.lines
    )
    summary = json.loads((out / "tune.json").read_text())
    assert summary["refit"] is True and summary["model"] == str(out / "refit" / "model")
    report = json.loads((out / "refit" / "report" / "metrics.json").read_text())
    assert report["n"] == 46 and summary["test_metrics"]["macro_f1"] == report["macro_f1"]
    assert not report["training"]["min_steps_applied"]  # all the rows: the epochs drawn are trained
    assert report["training"]["optimizer_steps"] == -(-everything // 16) * trial.params["epochs"]
    assert (out / "refit" / "model" / "model.safetensors").is_file() and not (out / "model").exists()
    assert not (out / "refit" / "checkpoints").exists()
    best = Config.from_yaml(out / "best.yaml")  # reproduces the refit: no cap on the training rows
    assert best.data.max_samples is None and best.train.learning_rate == summary["best_params"]["learning_rate"]


@pytest.mark.slow
def test_resuming_with_other_settings_is_refused(study, tiny_model, capsys):
    flags = tune_flags(tiny_model, study.root, "--n-trials", "3", "--weight-decay", "0.05")
    assert main(flags) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (  # after the data summary line
        f"emoclf: error: study 'emoclf-tune' in sqlite:///{study.out / 'study.db'} was started with other settings "
        "(config train.weight_decay: 0.01 then, 0.05 now); rerun with the same ones to resume it, or pass "
        "--overwrite or another --study-name"
    )


@pytest.mark.parametrize(
    "options, message",
    [
        (TuneOptions(n_trials=0), "n_trials must be at least 1, got 0"),
        (TuneOptions(timeout=-5.0), "timeout must be positive, got -5.0"),
    ],
)
def test_bad_options_are_refused_before_anything_is_read(tmp_path, options, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        tune_module.tune(Config().replace(output_dir=str(tmp_path / "out")), options)
    assert not (tmp_path / "out").exists()


def test_an_unreachable_tracking_server_fails_fast_before_any_trial(tiny_model, tmp_path, capsys):
    uri = f"http://127.0.0.1:{free_port()}"
    flags = tune_flags(tiny_model, tmp_path, "--n-trials", "1")
    assert main([*flags, "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the data summary line
    assert err.startswith(f"emoclf: error: MLflow tracking server {uri} is unreachable (")
    assert err.endswith("start it, fix --tracking-uri, or pass --no-tracking (or --tracking-optional to train anyway)")
    assert not (tmp_path / "out" / "trials").exists()


@pytest.mark.slow
def test_a_study_killed_with_sigkill_resumes_without_repeating_finished_trials(tmp_path, tiny_model, monkeypatch):
    flags = tune_flags(tiny_model, tmp_path, "--n-trials", "3", "--pruner", "none")
    ready, log = tmp_path / "ready", tmp_path / "child.log"
    proc = subprocess.Popen(
        [sys.executable, str(DRIVER), "hang-in-second-trial", str(ready), "--quiet", *flags],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 240
    while not ready.exists():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the second trial never started"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    before = load_study(tmp_path).trials
    assert [t.state for t in before] == [TrialState.COMPLETE, TrialState.RUNNING]
    parent_id = json.loads((tmp_path / "out" / "run_info.json").read_text())["run_id"]
    assert {r.info.run_name: r.info.status for r in runs_of(tmp_path)} == {
        "emoclf-tune": "RUNNING",
        "trial-0": "FINISHED",
        "trial-1": "RUNNING",
    }

    trained = []
    real_train = training.train
    monkeypatch.setattr(
        training, "train", lambda cfg, *a, **k: trained.append(cfg.train.output_dir) or real_train(cfg, *a, **k)
    )
    assert main(flags) == 0  # the same command
    after = load_study(tmp_path).trials
    assert [t.state for t in after] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert (after[0].params, after[0].value) == (before[0].params, before[0].value)
    assert [Path(p).name for p in trained] == ["trial-0002", "trial-0003"]  # trial 0 not trained again
    runs = runs_of(tmp_path)
    assert sorted(r.info.run_name for r in runs) == ["emoclf-tune", "trial-0", "trial-1", "trial-2", "trial-3"]
    status = {r.info.run_name: r.info.status for r in runs}
    assert status == {
        "emoclf-tune": "FINISHED",
        "trial-0": "FINISHED",
        "trial-1": "KILLED",
        "trial-2": "FINISHED",
        "trial-3": "FINISHED",
    }
    parent = next(r for r in runs if r.info.run_name == "emoclf-tune")
    assert parent.info.run_id == parent_id  # one parent run for the study, reopened
    assert next(r for r in runs if r.info.run_name == "trial-1").data.tags["emoclf.cut_short"] == "true"
    assert not (tmp_path / "out" / "trials" / "trial-0001" / "checkpoints").exists()


@pytest.mark.slow
def test_ctrl_c_ends_the_trial_killed_and_the_same_command_resumes(tmp_path, tiny_model, monkeypatch, capsys):
    flags = tune_flags(tiny_model, tmp_path, "--n-trials", "2", "--pruner", "none")
    real_fit, fits = training._fit, []

    def interrupted_second(*args, **kwargs):  # what GracefulStop makes of a Ctrl-C, in the second trial
        fits.append(1)
        if len(fits) == 2:
            raise TrainingInterrupted("SIGINT at step 3")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(training, "_fit", interrupted_second)
    assert main(flags) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "emoclf: interrupted: the trial under way ended KILLED; study 'emoclf-tune' keeps its 1 finished trial(s): "
        "rerun the same command to go on"
    )
    assert [t.state for t in load_study(tmp_path).trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert {r.info.run_name: r.info.status for r in runs_of(tmp_path)} == {
        "emoclf-tune": "KILLED",
        "trial-0": "FINISHED",
        "trial-1": "KILLED",
    }

    monkeypatch.setattr(training, "_fit", real_fit)
    assert main(flags) == 0
    assert [t.state for t in load_study(tmp_path).trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert {r.info.run_name: r.info.status for r in runs_of(tmp_path)} == {
        "emoclf-tune": "FINISHED",
        "trial-0": "FINISHED",
        "trial-1": "KILLED",
        "trial-2": "FINISHED",
    }


def test_auto_hierarchy_is_found_once_for_every_trial_and_kept_on_resume(tmp_path, tiny_model, monkeypatch):
    firsts, trials = [], []
    real_first, real_train = training.first_model, training.train

    def spy_first(cfg, data):
        firsts.append(cfg.train.output_dir)
        return real_first(cfg, data)

    def spy_train(cfg, data=None, *args, **kwargs):
        trials.append((Path(cfg.train.output_dir).name, cfg.train.hierarchy))
        return real_train(cfg, data, *args, **kwargs)

    monkeypatch.setattr(training, "first_model", spy_first)
    monkeypatch.setattr(training, "train", spy_train)
    flags = tune_flags(
        tiny_model, tmp_path, "--max-samples", "120", "--no-tracking", "--hierarchy", "auto", "--min-steps", "30"
    )
    assert main([*flags, "--n-trials", "2"]) == 0
    assert main([*flags, "--n-trials", "3"]) == 0  # resumed: one more trial, with the groups found the first time
    out = tmp_path / "out"
    assert firsts == [str(out)] and not (out / "hierarchy-first-model").exists()
    pinned = str((out / "hierarchy.yaml").resolve())
    assert [t for t in trials if t[0].startswith("trial-")] == [
        ("trial-0000", pinned),
        ("trial-0001", pinned),
        ("trial-0002", pinned),
    ]
    groups = yaml.safe_load((out / "hierarchy.yaml").read_text())
    assert json.loads((out / "hierarchy.json").read_text())["groups"] == groups


@pytest.mark.slow
def test_multi_label_data_is_searched_over_its_own_strategies(tmp_path, tiny_model, multi_csv, monkeypatch):
    """The default space of multi-label data, trials trained on multi-label data and scored by validation
    macro-F1 over the labels, the best model kept as a multi-label model."""
    trained = []
    real_train = training.train

    def spy_train(cfg, data=None, *args, **kwargs):
        trained.append((cfg.train.imbalance, data.task))
        return real_train(cfg, data, *args, **kwargs)

    monkeypatch.setattr(training, "train", spy_train)
    out = tmp_path / "out"
    flags = ["tune", str(multi_csv), "--model", str(tiny_model), "--output-dir", str(out), "--no-tracking"]
    flags += ["--n-trials", "2", "--pruner", "none", "--precision", "fp32", "--num-threads", "1", "--min-steps", "0"]
    assert main(flags) == 0
    summary = json.loads((out / "tune.json").read_text())
    space = load_study(tmp_path).user_attrs["space"]
    assert space["imbalance"]["choices"] == ["none", "class-weight", "focal", "asl"] and "asl_gamma_neg" in space
    assert all(task == "multi-label" for _, task in trained) and len(trained) == 2
    assert {s for s, _ in trained} <= {"none", "class-weight", "focal", "asl"}
    history = json.loads((out / "trials" / f"trial-{summary['best_trial']:04d}" / "history.json").read_text())
    assert summary["best_value"] == best_validation_f1(history)
    assert json.loads((out / "model" / "emoclf.json").read_text())["task"] == "multi-label"


def test_a_strategy_multi_label_data_has_no_use_for_is_refused_before_any_trial(tmp_path, multi_csv):
    space = tmp_path / "space.yaml"
    space.write_text("imbalance: {type: categorical, choices: [none, oversample]}\n")
    cfg = Config().replace(data=str(multi_csv), output_dir=str(tmp_path / "out"), tracking=False)
    with pytest.raises(ConfigError) as e:
        tune_module.tune(cfg, TuneOptions(space=str(space)))
    assert str(e.value) == (
        f"{space}: imbalance: 'oversample' does not apply to multi-label data; choose from auto, none, class-weight, "
        "focal, asl"
    )
    assert not (tmp_path / "out").exists()
