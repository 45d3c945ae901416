"""Fine-tuning with the transformers Trainer: setup -> fit -> evaluate on untouched test -> save -> log.

What emoclf adds to a plain Trainer: texts tokenised once per split (not per item per epoch),
dynamic padding with length-grouped batches, the imbalance plan (resampled train rows or a
weighted/focal loss), early stopping on validation macro-F1, and an evaluation of the *saved*
model on the test split, so the reported numbers are those of what ships.

Crash safety: checkpoints appear only when complete (staged, then renamed), ``resume=True``
continues from the newest one in the same MLflow run, and SIGINT/SIGTERM end the current step,
checkpoint and stop, so an interrupted training loses at most one step.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import pickle
import platform
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    ProgressCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer import OPTIMIZER_NAME, TRAINER_STATE_NAME, TrainerState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from emoclf import calibration, imbalance
from emoclf.config import Config
from emoclf.data import PreparedData, load_data
from emoclf.data.profile import profile, write_profile
from emoclf.errors import ConfigError, ModelLoadError
from emoclf.evaluation.metrics import classification_metrics, flat_metrics
from emoclf.evaluation.report import RELIABILITY_PNG, write_report
from emoclf.inference import Predictor
from emoclf.losses import make_loss
from emoclf.modeling import (
    WEIGHTS_FILE,
    BundleMeta,
    load_for_training,
    model_max_length,
    save_bundle,
    write_meta,
)
from emoclf.preprocess import Preprocessor
from emoclf.tracking import NullTracker, ended_run, make_tracker

log = logging.getLogger(__name__)

MODEL_DIR = "model"
REPORT_DIR = "report"
CHECKPOINT_DIR = "checkpoints"
STAGING_DIR = ".staging"  # inside CHECKPOINT_DIR: checkpoints being written, renamed out when complete
ENVIRONMENT_FILE = "environment.json"
ENV_PACKAGES = ("emoclf", "torch", "transformers", "accelerate", "datasets", "tokenizers", "safetensors",
                "scikit-learn", "numpy", "pandas", "mlflow")
CONFIG_FILE = "config.yaml"


@dataclass
class TrainResult:
    output_dir: Path
    model_dir: Path
    metrics: dict
    profile: dict
    run_id: str | None
    train_seconds: float
    train_examples_per_second: float
    history: list[dict] = field(default_factory=list)
    # Set when some tracking calls could not be delivered: the file listing them.
    tracking_failures: Path | None = None


def cpu_supports_bf16() -> bool:
    """AMX or AVX512-BF16 makes bf16 matmuls fast on CPU; without them bf16 autocast is slower."""
    flags = _read("/proc/cpuinfo")
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str) -> str:
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


def tokenize_split(df, tokenizer, max_length: int):
    """A ``datasets.Dataset`` of input ids, labels and lengths, tokenised once in one batched call."""
    from datasets import Dataset

    enc = tokenizer(df["text"].tolist(), truncation=True, max_length=max_length)
    ds = Dataset.from_dict({**enc, "labels": df["label_id"].tolist()})
    return ds.add_column("length", [len(ids) for ids in enc["input_ids"]])


class EpochSummary(TrainerCallback):
    """One readable line per evaluation, and every logged metric forwarded to the tracker."""

    def __init__(self, tracker) -> None:
        self.tracker = tracker
        self.started = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        numeric = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and k != "epoch"}
        self.tracker.log_metrics(numeric, step=state.global_step)
        if "eval_macro_f1" in logs:
            train_loss = next((h["loss"] for h in reversed(state.log_history) if "loss" in h), float("nan"))
            log.info(
                "epoch %.2f: train loss %.4f, validation loss %.4f, validation macro-F1 %.4f, accuracy %.4f (%.0fs)",
                logs.get("epoch", state.epoch or 0), train_loss, logs["eval_loss"], logs["eval_macro_f1"],
                logs["eval_accuracy"], time.perf_counter() - self.started,
            )


class ProgressBars(ProgressCallback):
    """The Trainer's progress bars without its per-step dicts on stdout (stdout is for results)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


class GracefulStop(TrainerCallback):
    """SIGINT/SIGTERM while training: finish the step, checkpoint, stop. A second signal stops at once."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt(f"signal {signum}")
        self.signum = signum
        log.warning("%s: stopping after this step with a checkpoint (send it again to stop at once)",
                    signal.Signals(signum).name)

    def on_step_end(self, args, state, control, **kwargs):
        if self.signum is not None:
            control.should_training_stop = True
            # At an epoch's end the epoch's own evaluation and checkpoint follow; anywhere else, save now.
            control.should_save = control.should_save or not float(state.epoch).is_integer()

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.signum is not None and not float(state.epoch).is_integer():
            # Evaluating a cut-short epoch would change early stopping compared with an uninterrupted run.
            control.should_evaluate = control.should_save = False


class CheckpointingTrainer(Trainer):
    """The Trainer, with each checkpoint written to a staging folder and renamed into place when complete.

    transformers writes ``checkpoint-N`` file by file where it ends up, so a crash mid-save would
    leave a folder that looks like a checkpoint; here ``checkpoint-N`` exists only once complete.
    """

    _staging = False

    def _get_output_dir(self, trial) -> str:
        out = super()._get_output_dir(trial)
        return os.path.join(out, STAGING_DIR) if self._staging else out

    def _save_checkpoint(self, model, trial) -> None:
        self._staging = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging = False
        self.accelerator.wait_for_everyone()  # every rank has written its RNG state into the staging folder
        if not self.args.should_save:
            return
        run_dir = self._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staged, final = os.path.join(run_dir, STAGING_DIR, name), os.path.join(run_dir, name)
        if self.state.best_model_checkpoint == staged:
            # The Trainer recorded where it wrote; the state, also the copy inside, must name where it will be.
            self.state.best_model_checkpoint = final
            self.state.save_to_json(os.path.join(staged, TRAINER_STATE_NAME))
        os.replace(staged, final)
        os.rmdir(os.path.dirname(staged))
        rotate_checkpoints(run_dir, self.args.save_total_limit, self.state.best_model_checkpoint)


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint in ``folder``; damaged or foreign ones are skipped with a warning."""
    steps = {}
    for path in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        match = re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", path.name)
        if match and path.is_dir():
            steps[path] = int(match[1])
    for path in sorted(steps, key=steps.get, reverse=True):
        try:
            state = json.loads((path / TRAINER_STATE_NAME).read_text())
            complete = (state["global_step"] == steps[path] and (path / WEIGHTS_FILE).is_file()
                        and (path / OPTIMIZER_NAME).is_file())
        except (OSError, ValueError, KeyError, TypeError):
            complete = False
        if complete:
            return path
        log.warning("skipping incomplete checkpoint %s", path)
    return None


def _prepare_checkpoints(folder: Path, model_dir: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from; a fresh start clears a finished training's checkpoints first.

    Old checkpoints would mix with the new run's (rotation keeps the highest steps, --resume would
    pick theirs), but those of an unfinished training are work a forgotten --resume would lose.
    """
    shutil.rmtree(folder / STAGING_DIR, ignore_errors=True)  # a save cut short by a crash
    newest = latest_checkpoint(folder) if folder.is_dir() else None
    if resume:
        if newest is None:
            log.warning("no complete checkpoint in %s: training from the start", folder)
        else:
            log.info("resuming from %s", newest)
        return newest
    if newest is not None:
        weights = model_dir / WEIGHTS_FILE
        if not weights.is_file() or weights.stat().st_mtime < newest.stat().st_mtime:
            raise ConfigError(f"{folder} holds checkpoints of an unfinished training (newest: {newest.name}): "
                              "pass --resume to continue it, or another --output-dir to start afresh")
        log.info("removing the checkpoints of the earlier training in %s", folder)
    shutil.rmtree(folder, ignore_errors=True)
    return None


def run_environment() -> dict:
    """What reproducing a run needs besides its config: package versions, the project's commit, the hardware."""
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor() or platform.machine())
    commit = git("rev-parse", "HEAD")
    return {
        "python": platform.python_version(),
        "packages": {name: version(name) for name in ENV_PACKAGES},
        "git": {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no")) if commit else None},
        "hardware": {
            "platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "bf16_cpu": cpu_supports_bf16(),
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        },
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _compute_metrics(eval_pred) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    preds = np.asarray(eval_pred.predictions).argmax(axis=-1)
    labels = np.asarray(eval_pred.label_ids)
    return {"macro_f1": f1_score(labels, preds, average="macro"), "accuracy": accuracy_score(labels, preds)}


def build_training_args(cfg: Config, precision: str, steps_per_epoch: int) -> TrainingArguments:
    t = cfg.train
    # Best-model tracking needs evaluations and checkpoints on one schedule.
    schedule = ({"eval_strategy": "steps", "eval_steps": t.checkpoint_steps, "save_strategy": "steps",
                 "save_steps": t.checkpoint_steps} if t.checkpoint_steps else
                {"eval_strategy": "epoch", "save_strategy": "epoch"})
    return TrainingArguments(
        output_dir=str(Path(t.output_dir) / CHECKPOINT_DIR),
        num_train_epochs=t.epochs,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=math.ceil(t.warmup_ratio * steps_per_epoch * t.epochs),
        lr_scheduler_type="linear",
        **schedule,
        save_total_limit=t.save_total_limit,
        restore_callback_states_from_checkpoint=True,  # early stopping's patience counter survives a resume
        load_best_model_at_end=True,
        metric_for_best_model="macro_f1",
        greater_is_better=True,
        logging_strategy="steps",
        logging_steps=max(1, min(50, steps_per_epoch // 4)),
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        seed=t.seed,
        data_seed=t.seed,
        report_to="none",
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # every parameter of a sequence classifier is used; True walks the graph each step
        save_only_model=False,
        disable_tqdm=False,
    )


def evaluate_bundle(model_dir: Path, data: PreparedData, out_dir: Path, history: list[dict] | None = None,
                    batch_size: int = 128, calibrate: bool = True, class_bias: bool = False) -> dict:
    """Calibrate the saved model on validation, then measure it on the untouched test split.

    Temperature and bias are fitted on validation only and written into the bundle, so the
    reported test metrics are exactly what ``emoclf predict`` will give.
    """
    predictor = Predictor.load(model_dir, batch_size=batch_size)
    meta = predictor.meta
    val, test = data.splits["validation"], data.splits["test"]
    y_val, y_test = val["label_id"].to_numpy(), test["label_id"].to_numpy()
    val_logits = predictor.logits(val["raw_text"].tolist())
    test_logits = predictor.logits(test["raw_text"].tolist(), progress=True)
    meta.temperature = calibration.fit_temperature(val_logits, y_val) if calibrate else 1.0
    meta.class_bias = calibration.fit_class_bias(val_logits, y_val) if class_bias else None
    raw_probs = calibration.calibrated_probs(test_logits)
    probs = calibration.calibrated_probs(test_logits, meta.temperature, meta.class_bias)
    metrics = classification_metrics(y_test, probs.argmax(axis=1), data.labels)
    metrics["calibration"] = {
        "temperature": meta.temperature,
        "test_ece_before": calibration.expected_calibration_error(raw_probs, y_test),
        "test_ece_after": calibration.expected_calibration_error(probs, y_test),
    }
    if meta.class_bias is not None:
        without = classification_metrics(y_test, raw_probs.argmax(axis=1), data.labels)["macro_f1"]
        metrics["class_bias"] = {"bias": dict(zip(data.labels, meta.class_bias)), "test_macro_f1_without": without,
                                 "test_macro_f1_with": metrics["macro_f1"], "helped": metrics["macro_f1"] > without}
        log.info("class bias: test macro-F1 %.4f without, %.4f with", without, metrics["macro_f1"])
    log.info("temperature %.3f: test ECE %.4f -> %.4f", meta.temperature,
             metrics["calibration"]["test_ece_before"], metrics["calibration"]["test_ece_after"])
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    calibration.plot_reliability(raw_probs, probs, y_test, Path(out_dir) / RELIABILITY_PNG)
    write_report(out_dir, metrics, data.labels, test["raw_text"].tolist(), y_test, probs, history)
    meta.metrics = {k: metrics[k] for k in ("accuracy", "macro_f1", "weighted_f1")}
    write_meta(model_dir, meta)
    return metrics


def train(cfg: Config, data: PreparedData | None = None, resume: bool = False) -> TrainResult:
    """Run one training end to end; the MLflow run is FINISHED, FAILED or KILLED, never left RUNNING.

    ``resume`` continues from the newest complete checkpoint in ``output_dir`` and in the MLflow
    run recorded there (a ``kill -9`` leaves it RUNNING until then).
    """
    out = Path(cfg.train.output_dir)
    # Under torchrun/accelerate every rank runs this; only rank 0 tracks, writes and evaluates.
    if is_main_process():
        checkpoint = _prepare_checkpoints(out / CHECKPOINT_DIR, out / MODEL_DIR, resume)
    else:
        checkpoint = latest_checkpoint(out / CHECKPOINT_DIR) if resume else None
    tracker = make_tracker(cfg.tracking.tracking and is_main_process(), cfg.tracking.tracking_uri,
                           cfg.tracking.experiment, local_dir=cfg.train.output_dir,
                           optional=cfg.tracking.tracking_optional)
    tracker.start(cfg.tracking.run_name, resume=resume)
    with ended_run(tracker):
        result = _train(cfg, tracker, data, checkpoint)
    result.tracking_failures = tracker.failures_file
    return result


def _train(cfg: Config, tracker: NullTracker, data: PreparedData | None, checkpoint: Path | None) -> TrainResult:
    t = cfg.train
    out = Path(t.output_dir)
    model_dir = out / MODEL_DIR
    main = is_main_process()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save_yaml(out / CONFIG_FILE)
        environment = run_environment()
        (out / ENVIRONMENT_FILE).write_text(json.dumps(environment, indent=2))
        tracker.log_dict(environment, ENVIRONMENT_FILE)
        tracker.set_tags({"emoclf.git_commit": str(environment["git"]["commit"]),
                          "emoclf.git_dirty": str(environment["git"]["dirty"]),
                          "emoclf.hardware": environment["hardware"]["cpu"]})
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    set_seed(t.seed)

    preprocessor = Preprocessor(cfg.preprocess)
    data = data or load_data(cfg.data, preprocessor)
    tokenizer, model = load_for_training(cfg.model.model, data.labels)
    limit = model_max_length(tokenizer, model.config)
    prof = profile(data, tokenizer, limit)
    max_length = min(cfg.model.max_length or prof["suggested_max_length"], limit)
    if main:
        write_profile(prof, out / REPORT_DIR)

    train_df = data.splits["train"]
    plan = imbalance.plan(t.imbalance, train_df["label_id"].to_numpy(), len(data.labels), t.imbalance_threshold)
    rows = imbalance.resample_indices(plan.strategy, train_df["label_id"].to_numpy(), t.seed)
    train_ds = tokenize_split(train_df, tokenizer, max_length).select(rows)
    val_ds = tokenize_split(data.splits["validation"], tokenizer, max_length)
    precision = resolve_precision(t.precision)
    log.info(
        "training %s on %d rows (%s, imbalance ratio %.2f, loss %s), max_length %d, %s",
        cfg.model.model, len(train_ds), plan.strategy, plan.imbalance_ratio, plan.loss, max_length, precision,
    )

    tracker.log_params({**cfg.to_dict(), "resolved": {
        "imbalance_strategy": plan.strategy, "loss": plan.loss, "max_length": max_length, "precision": precision,
        "train_rows_after_resampling": len(train_ds),
    }})
    tracker.log_dict(cfg.to_dict(), CONFIG_FILE.replace(".yaml", ".json"))
    tracker.log_dict(prof, "data_profile.json")
    for split, context in (("train", "training"), ("validation", "validation"), ("test", "testing")):
        tracker.log_dataset(data.splits[split], split, cfg.data.data or "emoclf-demo", context)

    world = int(os.environ.get("WORLD_SIZE", "1"))
    steps_per_epoch = max(1, math.ceil(len(train_ds) / (t.batch_size * world)))
    args = build_training_args(cfg, precision, steps_per_epoch)
    stop = GracefulStop()
    trainer = CheckpointingTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8),
        compute_metrics=_compute_metrics,
        compute_loss_func=make_loss(plan.loss, plan.class_weights, t.focal_gamma, t.focal_alpha),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=t.patience), EpochSummary(tracker), stop],
    )
    # Keep the progress bars, drop the raw log dicts they write to stdout: EpochSummary logs one line per epoch.
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(ProgressBars)
    start_epoch = TrainerState.load_from_json(str(checkpoint / TRAINER_STATE_NAME)).epoch if checkpoint else 0.0
    started = time.perf_counter()
    with stop.installed():
        try:
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        except pickle.UnpicklingError as e:
            if checkpoint is None:
                raise
            raise ModelLoadError(f"{checkpoint}: refused a pickle that holds more than tensors ({e}); "
                                 "the checkpoint is damaged or was tampered with") from None
    if stop.signum is not None:
        raise KeyboardInterrupt(f"signal {stop.signum}: stopped at step {trainer.state.global_step}, "
                                f"checkpoint in {out / CHECKPOINT_DIR}")
    train_seconds = time.perf_counter() - started
    history = trainer.state.log_history
    examples = len(train_ds) * (trainer.state.epoch - start_epoch)

    meta = BundleMeta(
        labels=data.labels, preprocess=preprocessor.to_dict(), max_length=max_length,
        base_model=cfg.model.model, config=cfg.to_dict(),
    )
    if not trainer.is_world_process_zero():
        return TrainResult(out, model_dir, {}, prof, None, train_seconds, examples / train_seconds, history)
    save_bundle(model_dir, trainer.model, tokenizer, meta)
    metrics = evaluate_bundle(model_dir, data, out / REPORT_DIR, history, t.eval_batch_size, t.calibrate, t.class_bias)
    metrics["train_seconds"] = round(train_seconds, 1)
    metrics["train_examples_per_second"] = round(examples / train_seconds, 2)
    log.info("test: accuracy %.4f, macro-F1 %.4f, weighted F1 %.4f on %d texts",
             metrics["accuracy"], metrics["macro_f1"], metrics["weighted_f1"], metrics["n"])

    tracker.log_metrics({**flat_metrics(metrics), **metrics["calibration"], "train_seconds": train_seconds,
                         "train_examples_per_second": examples / train_seconds})
    tracker.log_artifacts(out / REPORT_DIR, "report")
    tracker.log_model(model_dir, data.splits["test"]["raw_text"].head(3).tolist(), cfg.tracking.register_name)
    return TrainResult(out, model_dir, metrics, prof, tracker.run_id, train_seconds, examples / train_seconds, history)
