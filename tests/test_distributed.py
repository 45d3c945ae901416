"""``emoclf train`` unchanged under torchrun and accelerate launch: 2 CPU processes, gloo, loopback only.

Checks what distributed training can get wrong: one MLflow run (rank 0 only), one saved model,
each rank training on its own shard of the (resampled) rows, and validation metrics gathered
over the whole validation split rather than one rank's half.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import free_port

from emoclf.config import DataConfig, PreprocessConfig
from emoclf.data import load_data
from emoclf.inference import Predictor
from emoclf.preprocess import Preprocessor

pytestmark = pytest.mark.slow
WORLD = 2
BATCH = 16
EPOCHS = 4


def launcher(name: str, port: int) -> list[str]:
    if name == "torchrun":
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            str(WORLD),
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(port),
        ]
    # --multi_gpu selects accelerate's torchrun launcher; the Trainer still runs on CPU with gloo.
    # (--cpu with --num_processes would start one process: accelerate's multi-CPU path needs MPI.)
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(WORLD),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_ip",
        "127.0.0.1",
        "--main_process_port",
        str(port),
    ]


@pytest.mark.parametrize("launch", ["torchrun", "accelerate"])
def test_two_process_training_is_one_run_with_whole_split_metrics(launch, tiny_model, tmp_path):
    from mlflow.tracking import MlflowClient

    out, store = tmp_path / "run", f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [
        *launcher(launch, free_port()),
        "-m",
        "emoclf.cli",
        "train",
        "--model",
        str(tiny_model),
        "--epochs",
        str(EPOCHS),
        "--batch-size",
        str(BATCH),
        "--eval-batch-size",
        "8",
        "--learning-rate",
        "3e-3",
        "--patience",
        str(EPOCHS),
        "--imbalance",
        "oversample",
        "--precision",
        "fp32",
        "--min-steps",
        "0",
        "--output-dir",
        str(out),
        "--tracking-uri",
        store,
        "--experiment",
        "ddp",
    ]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1")
    if sys.platform == "linux":
        env["GLOO_SOCKET_IFNAME"] = "lo"  # gloo would otherwise bind to whatever the hostname resolves to
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert proc.stdout.count("test accuracy") == 1  # rank 0 reports; rank 1 exits quietly, and with 0

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("ddp").experiment_id
    runs = client.search_runs([experiment])
    assert [r.info.status for r in runs] == ["FINISHED"]
    run = runs[0]
    assert [m.source_run_id for m in client.search_logged_models([experiment])] == [run.info.run_id]
    assert list(out.rglob("emoclf.json")) == [out / "model" / "emoclf.json"]  # one saved model, rank 0's

    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["n"] == 46  # the demo's whole carved test split
    assert run.data.metrics["test/macro_f1"] == pytest.approx(metrics["macro_f1"])

    # Each rank draws its own shard: an epoch is ceil(rows / (batch * world)) optimizer steps, not ceil(rows / batch).
    rows = int(run.data.params["resolved.train_rows_after_resampling"])
    assert rows > 368  # oversampling ran before sharding
    per_epoch = math.ceil(rows / (BATCH * WORLD))
    steps = sorted(int(p.name.split("-")[1]) for p in (out / "checkpoints").iterdir())
    assert steps[-1] == per_epoch * EPOCHS and all(s % per_epoch == 0 for s in steps)

    # The logged validation metrics equal a single-process evaluation of the saved (best) model on
    # the whole validation split, so no rank scored only its half.
    history = client.get_metric_history(run.info.run_id, "curves/val/macro_f1")
    assert len(history) == EPOCHS
    best = max(history, key=lambda m: (m.value, -m.step))
    accuracy = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "curves/val/accuracy")}
    val = load_data(DataConfig(), Preprocessor(PreprocessConfig())).splits["validation"]
    predicted = Predictor.load(out / "model").logits(val["raw_text"].tolist()).argmax(axis=1)
    from sklearn.metrics import f1_score

    y = val["label_id"].to_numpy()
    assert len(val) == 46
    assert best.value == pytest.approx(f1_score(y, predicted, average="macro"), abs=1e-9)
    assert accuracy[best.step] == pytest.approx(float(np.mean(predicted == y)), abs=1e-9)


def test_auto_hierarchy_under_torchrun_is_found_by_rank_0_and_read_by_the_others(tiny_model, tmp_path):
    out = tmp_path / "run"
    cmd = [
        *launcher("torchrun", free_port()),
        "-m",
        "emoclf.cli",
        "train",
        "--model",
        str(tiny_model),
        "--epochs",
        "3",
        "--batch-size",
        str(BATCH),
        "--learning-rate",
        "3e-3",
        "--precision",
        "fp32",
        "--min-steps",
        "0",
        "--output-dir",
        str(out),
        "--no-tracking",
        "--hierarchy",
        "auto",
    ]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "OMP_NUM_THREADS": "1"}
    if sys.platform == "linux":
        env["GLOO_SOCKET_IFNAME"] = "lo"
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    # Rank 1 once loaded the first model before rank 0 had saved it ("no such model folder").
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "Could not locate the best model" not in proc.stderr  # every rank knows where the best checkpoint went
    meta = json.loads((out / "model" / "emoclf.json").read_text())
    assert meta["hierarchy"]["source"] == "auto"
    assert json.loads((out / "report" / "hierarchy.json").read_text()) == meta["hierarchy"]
    assert not (out / "hierarchy-first-model").exists()
