"""Faults provoked for real: SIGKILL mid-save, SIGTERM mid-epoch, an MLflow server killed mid-run,
two trainings on one SQLite store, a planted pickle. Each test asserts that nothing is lost.

Trainings run the tiny model on 160 demo rows, one torch thread each, so that the child
processes stay cheap on a shared 2-core machine. docs/reliability.md lists what each shows.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import MlflowServer, WritesMarker, free_port

from emoclf.checkpoints import latest_checkpoint
from emoclf.cli import EXIT_TRACKING_DEGRADED, main
from emoclf.config import Config, DataConfig, PreprocessConfig
from emoclf.environment import run_environment
from emoclf.errors import ModelLoadError
from emoclf.layout import STAGING_DIR
from emoclf.trainer import EmoclfTrainer as CheckpointingTrainer
from emoclf.training import train

DRIVER = Path(__file__).with_name("fault_driver.py")


def train_flags(tiny_model: Path, out: Path, uri: str, experiment: str, *extra: str) -> list[str]:
    return [
        "train",
        "--model",
        str(tiny_model),
        "--output-dir",
        str(out),
        "--tracking-uri",
        uri,
        "--experiment",
        experiment,
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--learning-rate",
        "3e-3",
        "--max-samples",
        "160",
        "--precision",
        "fp32",
        "--num-threads",
        "1",
        "--min-steps",
        "0",
        *extra,
    ]


def launch(fault: str, ready: Path, args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(DRIVER), fault, str(ready), *args],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        cwd=log.parent,
    )


def finish(proc: subprocess.Popen, log: Path, timeout: float = 300) -> int:
    rc = proc.wait(timeout=timeout)
    assert "database is locked" not in log.read_text(), log.read_text()[-3000:]
    return rc


def wait_until_ready(ready: Path, proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not ready.exists():
        assert proc.poll() is None, f"exited with {proc.returncode} before the fault point:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"fault point not reached in {timeout}s"
        time.sleep(0.2)


def run_id_of(run_dir: Path) -> str:
    return json.loads((run_dir / "run_info.json").read_text())["run_id"]


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(model_dir / "model.safetensors")


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert np.allclose(wa[key].numpy(), wb[key].numpy(), atol=1e-5), key


@pytest.fixture(scope="module")
def references(tmp_path_factory, tiny_model):
    """Two uninterrupted trainings with one seed, started together on one new SQLite store.

    They are the baseline that resumed runs must match, and two trainings logging to one store at
    once. Started on first use, they run beside the first test's own training.
    """
    root = tmp_path_factory.mktemp("reference")
    uri = f"sqlite:///{root / 'shared.db'}"  # new: both also race to create the schema
    procs = {
        name: launch(
            "none", root / f"{name}.ready", train_flags(tiny_model, root / name, uri, "reference"), root / f"{name}.log"
        )
        for name in ("a", "b")
    }

    def done() -> tuple[Path, str]:
        for name, proc in procs.items():
            assert finish(proc, root / f"{name}.log") == 0, (root / f"{name}.log").read_text()[-3000:]
        return root, uri

    yield done
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()


# --- crash and resume ---------------------------------------------------------------------------


def _complete_checkpoint(folder: Path, step: int) -> Path:
    folder.mkdir(parents=True)
    for name in ("model.safetensors", "optimizer.pt"):
        (folder / name).write_bytes(b"x")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def test_newest_complete_checkpoint_skips_half_written_ones(tmp_path):
    good = _complete_checkpoint(tmp_path / "checkpoint-10", 10)
    (tmp_path / "checkpoint-20").mkdir()  # no trainer state: the save stopped before its last file
    (tmp_path / "checkpoint-20" / "model.safetensors").write_bytes(b"x")
    _complete_checkpoint(tmp_path / "checkpoint-30", 30)
    (tmp_path / "checkpoint-30" / "trainer_state.json").write_text('{"global_st')  # truncated
    _complete_checkpoint(tmp_path / "checkpoint-40", 30)  # a copy under another step's name
    _complete_checkpoint(tmp_path / STAGING_DIR / "checkpoint-50", 50)  # still being written
    _complete_checkpoint(tmp_path / "checkpoint-latest", 60)
    assert latest_checkpoint(tmp_path) == good


@pytest.mark.slow
def test_kill_9_mid_save_then_resume_matches_uninterrupted(tmp_path, tiny_model, references, capsys):
    from mlflow.tracking import MlflowClient

    run, uri, log, ready = (
        tmp_path / "run",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        tmp_path / "run.log",
        tmp_path / "ready",
    )
    proc = launch("hang-in-second-save", ready, train_flags(tiny_model, run, uri, "resumed"), log)
    wait_until_ready(ready, proc, log)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL

    root, ref_uri = references()
    ref_run = root / "a"
    first, last = sorted((p.name for p in (ref_run / "checkpoints").glob("checkpoint-*")), key=lambda n: int(n[11:]))
    checkpoints = run / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == [STAGING_DIR, first]
    half = checkpoints / STAGING_DIR / last
    assert (half / "model.safetensors").is_file() and not (half / "trainer_state.json").exists()
    client = MlflowClient(uri)
    run_id = run_id_of(run)
    assert client.get_run(run_id).info.status == "RUNNING"  # SIGKILL leaves no chance to end it

    assert main(["--quiet", "train", "--resume", str(run)]) == 0
    assert f"MLflow run: {run_id}" in capsys.readouterr().out
    assert sorted(p.name for p in checkpoints.iterdir()) == [first, last]

    runs = client.search_runs([client.get_experiment_by_name("resumed").experiment_id])
    assert [(r.info.run_id, r.info.status) for r in runs] == [(run_id, "FINISHED")]
    ref_client = MlflowClient(ref_uri)
    ref_id = run_id_of(ref_run)
    for key in (
        "curves/train/loss",
        "curves/train/learning_rate",
        "curves/train/grad_norm",
        "curves/val/loss",
        "curves/val/macro_f1",
    ):
        got, want = history(client, run_id, key), history(ref_client, ref_id, key)
        assert [s for s, _ in got] == [s for s, _ in want], key  # every step once: continued, not repeated
        assert np.allclose([v for _, v in got], [v for _, v in want], atol=1e-5), key
    assert_same_weights(run / "model", ref_run / "model")
    got, want = (json.loads((d / "report" / "metrics.json").read_text()) for d in (run, ref_run))
    assert got["macro_f1"] == pytest.approx(want["macro_f1"], abs=1e-6)
    assert got["confusion_matrix"] == want["confusion_matrix"]
    # The environment is logged with the run.
    tags = client.get_run(run_id).data.tags
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True)
    assert tags["emoclf.git_commit"] == (head.stdout.strip() if head.returncode == 0 else "None")
    assert "environment.json" in {a.path for a in client.list_artifacts(run_id)}


@pytest.mark.slow
def test_sigterm_checkpoints_marks_killed_and_resumes_exactly(tmp_path, tiny_model, references):
    from mlflow.tracking import MlflowClient

    run, uri, log, ready = (
        tmp_path / "run",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        tmp_path / "run.log",
        tmp_path / "ready",
    )
    proc = launch("slow-after-first-save", ready, train_flags(tiny_model, run, uri, "sigterm"), log)
    wait_until_ready(ready, proc, log)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 130, log.read_text()[-3000:]
    assert "stopping after this step with a checkpoint" in log.read_text()
    # The last line says where the work is and how to continue it.
    last = log.read_text().strip().splitlines()[-1]
    assert re.fullmatch(
        rf"emoclf: interrupted: SIGTERM at step \d+; checkpoint {run}/checkpoints/checkpoint-\d+; "
        rf"continue with: emoclf train --resume {run}",
        last,
    ), last

    steps = sorted(int(p.name[11:]) for p in (run / "checkpoints").glob("checkpoint-*"))
    per_epoch = steps[0]
    assert len(steps) == 2 and per_epoch < steps[1] < 2 * per_epoch  # the epoch's checkpoint, then the signal's
    assert not (run / "model").exists()
    client = MlflowClient(uri)
    run_id = run_id_of(run)
    assert client.get_run(run_id).info.status == "KILLED"

    # Starting afresh in the same folder would discard the interrupted work: refused.
    assert main(train_flags(tiny_model, run, uri, "sigterm")) == 2
    assert not (run / "model").exists() and latest_checkpoint(run / "checkpoints") is not None
    assert main(["--quiet", "train", "--resume", str(run)]) == 0
    runs = client.search_runs([client.get_experiment_by_name("sigterm").experiment_id])
    assert [(r.info.run_id, r.info.status) for r in runs] == [(run_id, "FINISHED")]
    root, _ = references()
    assert_same_weights(run / "model", root / "a" / "model")  # resumed mid-epoch: the same batches, the same RNG


def test_exception_marks_run_failed_and_keeps_checkpoints(tmp_path, tiny_model, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    save = CheckpointingTrainer._save_checkpoint

    def save_then_fail(self, model, trial):
        save(self, model, trial)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(CheckpointingTrainer, "_save_checkpoint", save_then_fail)
    assert main(train_flags(tiny_model, tmp_path / "run", uri, "fail", "--epochs", "1")) == 1
    client = MlflowClient(uri)
    assert client.get_run(run_id_of(tmp_path / "run")).info.status == "FAILED"
    assert latest_checkpoint(tmp_path / "run" / "checkpoints") is not None


def test_resume_refuses_a_planted_pickle_in_a_checkpoint(tmp_path, tiny_model):
    import torch

    cfg = Config().replace(
        model=str(tiny_model),
        output_dir=str(tmp_path / "run"),
        tracking=False,
        epochs=1.0,
        max_samples=32,
        batch_size=16,
        num_threads=1,
    )
    train(cfg)
    checkpoint = latest_checkpoint(tmp_path / "run" / "checkpoints")
    marker = tmp_path / "pwned"
    torch.save(WritesMarker(marker), checkpoint / "optimizer.pt")
    with pytest.raises(ModelLoadError, match="refused a pickle that holds more than tensors"):
        train(cfg, resume=True)
    assert not marker.exists()
    # The planted file is live: an unsafe load would have run it.
    torch.load(checkpoint / "optimizer.pt", weights_only=False)
    assert marker.exists()


# --- tracking outages ---------------------------------------------------------------------------


def test_unreachable_server_at_start_fails_fast_naming_uri(tmp_path, tiny_model, capsys):
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    assert main(train_flags(tiny_model, tmp_path / "run", uri, "x")) == 2
    assert time.monotonic() - started < 15
    err = capsys.readouterr().err
    assert f"MLflow tracking server {uri} is unreachable" in err and "--tracking-optional" in err
    assert not (tmp_path / "run" / "model").exists()


def test_tracking_optional_trains_and_says_where_results_are(tmp_path, tiny_model, capsys):
    from emoclf.inference import Predictor

    uri = f"http://127.0.0.1:{free_port()}"
    run = tmp_path / "run"
    assert (
        main(train_flags(tiny_model, run, uri, "x", "--epochs", "1", "--tracking-optional")) == EXIT_TRACKING_DEGRADED
    )
    assert f"listed in {run / 'tracking_failures.json'}" in capsys.readouterr().err
    failures = json.loads((run / "tracking_failures.json").read_text())
    assert failures["kept_locally"] == str(run.resolve()) and failures["run_id"] is None
    assert failures["failures"][0]["call"] == "start a run" and uri in failures["failures"][0]["error"]
    assert {"log metrics", "log model", "log artifacts report"} <= {f["call"] for f in failures["failures"]}
    assert Predictor.load(run / "model").labels and (run / "report" / "metrics.json").is_file()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    yield s
    s.kill()


def kill_server_after_first_checkpoint(monkeypatch, server: MlflowServer, restart_after_steps: int | None = None):
    """Kill the server once the first checkpoint is saved; optionally start it again some steps later."""
    save, step = CheckpointingTrainer._save_checkpoint, CheckpointingTrainer.training_step
    seen = {"saves": 0, "steps": 0}

    def save_and_kill(self, model, trial):
        save(self, model, trial)
        seen["saves"] += 1
        if seen["saves"] == 1:
            server.kill()

    def step_and_restart(self, *args, **kwargs):
        if seen["saves"]:
            seen["steps"] += 1
            if seen["steps"] == restart_after_steps:
                server.start()
        return step(self, *args, **kwargs)

    monkeypatch.setattr(CheckpointingTrainer, "_save_checkpoint", save_and_kill)
    monkeypatch.setattr(CheckpointingTrainer, "training_step", step_and_restart)


@pytest.mark.slow
def test_server_killed_mid_run_and_restarted_loses_nothing(tmp_path, tiny_model, server, monkeypatch, caplog):
    from mlflow.tracking import MlflowClient

    kill_server_after_first_checkpoint(monkeypatch, server, restart_after_steps=4)
    cfg = Config().replace(
        model=str(tiny_model),
        output_dir=str(tmp_path / "run"),
        tracking_uri=server.uri,
        experiment="outage",
        epochs=2.0,
        min_steps=0,
        batch_size=16,
        learning_rate=3e-3,
        max_samples=160,
        precision="fp32",
        num_threads=1,
    )
    with caplog.at_level("WARNING", logger="emoclf.tracking"):
        result = train(cfg)
    assert "queued for retry" in caplog.text and "reachable again" in caplog.text
    assert result.tracking_failures is None
    client = MlflowClient(server.uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    logged = [s for s, _ in history(client, result.run_id, "curves/train/loss")]
    trained = [h["step"] for h in result.history if "loss" in h]
    assert logged == trained  # the steps logged while the server was down arrived after it came back
    assert [s for s, _ in history(client, result.run_id, "curves/val/macro_f1")] == [
        h["step"] for h in result.history if "eval_macro_f1" in h
    ]
    assert run.data.metrics["test/macro_f1"] == pytest.approx(result.metrics["macro_f1"])
    assert run.outputs.model_outputs  # the model, logged after the outage


@pytest.mark.slow
def test_server_lost_until_the_end_degrades_with_local_results(tmp_path, tiny_model, server, monkeypatch, capsys):
    from emoclf.inference import Predictor

    kill_server_after_first_checkpoint(monkeypatch, server)
    run = tmp_path / "run"
    rc = main(train_flags(tiny_model, run, server.uri, "lost"))
    assert rc == EXIT_TRACKING_DEGRADED
    assert "tracking degraded" in capsys.readouterr().err
    failures = json.loads((run / "tracking_failures.json").read_text())
    calls = {f["call"]: f for f in failures["failures"]}
    assert {"log metrics", "log artifacts report", "log model", "end the run as FINISHED"} <= set(calls)
    assert calls["log model"]["detail"]["local"] == str(run / "model")
    assert calls["log artifacts report"]["detail"]["local"] == str(run / "report")
    assert failures["tracking_uri"] == server.uri and failures["run_id"] == run_id_of(run)
    assert Predictor.load(run / "model").predict(["i am so happy"])[0].label
    assert json.loads((run / "report" / "metrics.json").read_text())["n"] == 46


@pytest.mark.slow
def test_two_trainings_log_to_one_new_sqlite_store_at_once_and_agree(references):
    from mlflow.tracking import MlflowClient

    root, uri = references()  # finish() has checked both exited 0 without "database is locked"
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("reference").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]
    assert {r.info.run_id for r in runs} == {run_id_of(root / n) for n in ("a", "b")}
    # Same seed, same data, separate processes: the same split, weights and metrics.
    a, b = (json.loads((root / n / "report" / "metrics.json").read_text()) for n in ("a", "b"))
    assert a["n"] == b["n"] and a["macro_f1"] == pytest.approx(b["macro_f1"], abs=1e-6)
    assert_same_weights(root / "a" / "model", root / "b" / "model")
    first, second = (np.array(history(client, r.info.run_id, "curves/val/loss")) for r in runs)
    assert first.shape == second.shape and np.allclose(first, second, atol=1e-6)


# --- reproducibility ----------------------------------------------------------------------------


def test_same_seed_same_split_other_seed_other_split():
    from emoclf.data import load_data
    from emoclf.preprocess import Preprocessor

    def test_texts(seed: int) -> list[str]:
        return load_data(DataConfig(split_seed=seed), Preprocessor(PreprocessConfig())).splits["test"]["text"].tolist()

    assert test_texts(42) == test_texts(42)
    assert set(test_texts(42)) != set(test_texts(7))


def test_environment_names_versions_commit_and_hardware():
    import torch

    env = run_environment()
    assert env["packages"]["torch"] == torch.__version__
    assert env["hardware"]["cores"] == len(os.sched_getaffinity(0))
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    if " avx2 " in flags.replace("\n", " "):
        assert "AVX2" in env["hardware"]["isa"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True)
    assert env["git"]["commit"] == (head.stdout.strip() if head.returncode == 0 else None)


def test_resume_from_a_mid_epoch_checkpoint_matches_uninterrupted_with_length_grouping(
    tmp_path, tiny_model, monkeypatch
):
    """The default sampler groups batches by length in a random order; resumed mid-epoch (here in the
    second of three epochs), the run must train on the same batches as one never interrupted."""
    cfg = Config().replace(
        model=str(tiny_model),
        tracking=False,
        epochs=3.0,
        max_samples=160,
        batch_size=16,
        learning_rate=3e-3,
        checkpoint_steps=4,
        num_threads=1,
        precision="fp32",
        patience=100,
        min_steps=0,
    )
    assert cfg.train.group_by_length
    train(cfg.replace(output_dir=str(tmp_path / "whole")))

    save = CheckpointingTrainer._save_checkpoint

    def crash_after_step_12(self, model, trial):
        save(self, model, trial)
        if self.state.global_step == 12:  # 10 steps per epoch: 12 is inside the second epoch
            raise RuntimeError("power cut")

    monkeypatch.setattr(CheckpointingTrainer, "_save_checkpoint", crash_after_step_12)
    with pytest.raises(RuntimeError, match="power cut"):
        train(cfg.replace(output_dir=str(tmp_path / "cut")))
    monkeypatch.setattr(CheckpointingTrainer, "_save_checkpoint", save)
    assert latest_checkpoint(tmp_path / "cut" / "checkpoints").name == "checkpoint-12"
    assert not (tmp_path / "cut" / "model").exists()
    train(cfg.replace(output_dir=str(tmp_path / "cut")), resume=True)
    # The last step's weights, not the saved model: that is the best checkpoint, which may predate the cut.
    last = latest_checkpoint(tmp_path / "whole" / "checkpoints")
    assert last.name == "checkpoint-30"
    assert_same_weights(tmp_path / "cut" / "checkpoints" / last.name, last)
    assert_same_weights(tmp_path / "cut" / "model", tmp_path / "whole" / "model")
