"""Fine-tuning with the transformers Trainer: setup -> fit -> evaluate on untouched test -> save -> log.

What emoclf adds to a plain Trainer: texts tokenised once per split (not per item per epoch),
dynamic padding with length-grouped batches, the imbalance plan (resampled train rows or a
weighted/focal loss), early stopping on validation macro-F1, and an evaluation of the *saved*
model on the test split, so the reported numbers are those of what ships.

Crash safety: checkpoints appear only when complete (staged, then renamed), ``resume=True``
continues from the newest one in the same MLflow run (with the same length-grouped batch order,
drawn from the seed and the epoch alone), and SIGINT/SIGTERM end the current step, checkpoint and
stop, so an interrupted training loses at most one step.

No silent failures: the data is validated before anything is written or tracked; a loss or
gradient norm that is not finite stops the training at the step it appears; the model folder
appears only once the saved model has been evaluated, so a failed run never leaves one behind;
and a finished training's folder is replaced only with ``overwrite``.
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
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from emoclf import calibration, hardware, imbalance
from emoclf.config import Config
from emoclf.data import PreparedData, load_data
from emoclf.data.profile import profile, write_profile
from emoclf.errors import ConfigError, ModelLoadError, TrainingDivergedError, TrainingInterrupted
from emoclf.evaluation.metrics import classification_metrics, flat_metrics, macro_f1
from emoclf.evaluation.report import RELIABILITY_PNG, write_report
from emoclf.inference import Predictor
from emoclf.losses import make_loss
from emoclf.modeling import (
    WEIGHTS_FILE,
    BundleMeta,
    load_for_training,
    model_max_length,
    replace_folder,
    save_bundle,
    write_meta,
)
from emoclf.preprocess import Preprocessor
from emoclf.tracking import FAILURES_FILE, RUN_INFO_FILE, NullTracker, ended_run, make_tracker

log = logging.getLogger(__name__)

MODEL_DIR = "model"
STAGED_MODEL_DIR = ".model.staged"  # the new model while it is evaluated; renamed to MODEL_DIR when that passes
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


def resolve_precision(precision: str) -> str:
    """``auto``: bf16 on GPUs that have it (else fp16), bf16 on CPUs with bf16 instructions, else fp32."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if hardware.detect().bf16_fast else "fp32"


def pad_multiple() -> int | None:
    """Batches are padded to a multiple of 8 on GPUs (tensor-core tiles); on CPUs a padded token is only waste."""
    return 8 if torch.cuda.is_available() else None


def tokenize_split(df, tokenizer, max_length: int):
    """A ``datasets.Dataset`` of input ids, labels and lengths, tokenised once in one batched call."""
    from datasets import Dataset

    enc = tokenizer(df["text"].tolist(), truncation=True, max_length=max_length)
    ds = Dataset.from_dict({**enc, "labels": df["label_id"].tolist()})
    return ds.add_column("length", [len(ids) for ids in enc["input_ids"]])


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """transformers' length-grouped order, drawn from ``seed + epoch`` alone.

    The stock sampler draws from the global RNG when an epoch starts; a run resumed mid-epoch
    restores the RNG of the checkpoint's step, not of the epoch's start, so it would train on
    another order than the interrupted run. ``set_epoch`` (called by the Trainer every epoch,
    a resumed one included) fixes the order to the epoch number.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator = torch.Generator().manual_seed(self.seed + epoch)


class DivergenceCheck(TrainerCallback):
    """Logged gradient norms and validation losses must be finite (the per-step loss is checked in the trainer)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key, what in (("grad_norm", "gradient norm"), ("eval_loss", "validation loss")):
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(value):
                raise diverged(what, value, state.global_step, args.learning_rate)


def diverged(what: str, value: float, step: int, learning_rate: float) -> TrainingDivergedError:
    return TrainingDivergedError(
        f"training diverged: the {what} is {value} at step {step}; nothing was saved. Lower --learning-rate "
        f"(now {learning_rate:g}), or try --precision fp32"
    )


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
    """The Trainer, with complete-or-absent checkpoints, a resumable length-grouped order and a finite loss.

    transformers writes ``checkpoint-N`` file by file where it ends up, so a crash mid-save would
    leave a folder that looks like a checkpoint; here ``checkpoint-N`` exists only once complete.
    The Trainer's own logging drops non-finite losses from its averages (``logging_nan_inf_filter``),
    which hid a diverged run; here the first one stops the training, naming its step.
    """

    _staging = False

    def _get_train_sampler(self, train_dataset=None):
        if self.args.train_sampling_strategy != "group_by_length":
            return super()._get_train_sampler(train_dataset)
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        lengths = [len(ids) for ids in dataset["input_ids"]]
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return EpochSeededLengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                               lengths, seed)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            raise diverged("training loss", float(loss.detach().float().mean()), self.state.global_step + 1,
                           self.args.learning_rate)
        return loss

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


def _prepare_output(out: Path, resume: bool, overwrite: bool) -> Path | None:
    """The checkpoint to resume from; a fresh start first makes sure it replaces nothing by surprise.

    A finished training (a model folder) is replaced only with ``overwrite``, and so is an
    unfinished one (checkpoints newer than any model), which ``resume`` would continue. A fresh
    start then clears every file an earlier run wrote there, so that no file names another run.
    """
    folder = out / CHECKPOINT_DIR
    shutil.rmtree(folder / STAGING_DIR, ignore_errors=True)  # a save cut short by a crash
    shutil.rmtree(out / STAGED_MODEL_DIR, ignore_errors=True)  # an evaluation cut short
    newest = latest_checkpoint(folder) if folder.is_dir() else None
    if resume:
        if newest is None:
            log.warning("no complete checkpoint in %s: training from the start", folder)
        else:
            log.info("resuming from %s", newest)
        return newest
    if not overwrite:
        weights = out / MODEL_DIR / WEIGHTS_FILE
        if newest is not None and (not weights.is_file() or weights.stat().st_mtime < newest.stat().st_mtime):
            raise ConfigError(f"{folder} holds checkpoints of an unfinished training (newest: {newest.name}): "
                              "pass --resume to continue it, --overwrite to start afresh, or another --output-dir")
        if (out / MODEL_DIR).exists():
            run = _recorded_run(out)
            raise ConfigError(f"{out} holds a finished training ({MODEL_DIR}/{run}); pass --overwrite to replace "
                              "it, or choose another --output-dir")
    for name in (MODEL_DIR, REPORT_DIR, CHECKPOINT_DIR):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (RUN_INFO_FILE, FAILURES_FILE, ENVIRONMENT_FILE, CONFIG_FILE):
        (out / name).unlink(missing_ok=True)
    return None


def _recorded_run(out: Path) -> str:
    try:
        return f", MLflow run {json.loads((out / RUN_INFO_FILE).read_text())['run_id']}"
    except (OSError, ValueError, KeyError):
        return ""


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

    commit = git("rev-parse", "HEAD")
    return {
        "python": platform.python_version(),
        "packages": {name: version(name) for name in ENV_PACKAGES},
        "git": {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no")) if commit else None},
        "hardware": {"platform": platform.platform(), "torch_threads": torch.get_num_threads(),
                     **hardware.detect().to_dict()},
    }


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _compute_metrics(eval_pred) -> dict[str, float]:
    preds = np.asarray(eval_pred.predictions).argmax(axis=-1)
    labels = np.asarray(eval_pred.label_ids)
    return {"macro_f1": macro_f1(labels, preds), "accuracy": float((preds == labels).mean())}


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
    choice = calibration.choose_temperature(val_logits, y_val) if calibrate else None
    meta.temperature = choice.temperature if choice else 1.0
    meta.class_bias = calibration.fit_class_bias(val_logits, y_val) if class_bias else None
    raw_probs = calibration.calibrated_probs(test_logits)
    probs = calibration.calibrated_probs(test_logits, meta.temperature, meta.class_bias)
    metrics = classification_metrics(y_test, probs.argmax(axis=1), data.labels)
    metrics["calibration"] = {
        "temperature": meta.temperature,
        **(choice.report() if choice else {}),
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
    # The data first: bad data fails in seconds, before any file is written or any MLflow run opened.
    data = data or load_data(cfg.data, Preprocessor(cfg.preprocess))
    # Under torchrun/accelerate every rank runs this; only rank 0 tracks, writes and evaluates.
    if is_main_process():
        checkpoint = _prepare_output(out, resume, cfg.train.overwrite)
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


def _train(cfg: Config, tracker: NullTracker, data: PreparedData, checkpoint: Path | None) -> TrainResult:
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
                          "emoclf.hardware": hardware.detect().describe()})
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    set_seed(t.seed)

    preprocessor = Preprocessor(cfg.preprocess)
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
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_multiple()),
        compute_metrics=_compute_metrics,
        compute_loss_func=make_loss(plan.loss, plan.class_weights, t.focal_gamma, t.focal_alpha),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=t.patience), EpochSummary(tracker), DivergenceCheck(),
                   stop],
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
        except TrainingDivergedError:
            if main:  # its checkpoints would only replay the divergence on --resume
                shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
            raise
    if stop.signum is not None:
        newest = latest_checkpoint(out / CHECKPOINT_DIR)
        raise TrainingInterrupted(f"{signal.Signals(stop.signum).name} at step {trainer.state.global_step}; "
                                  f"checkpoint {newest}; continue with: emoclf train --resume {out}")
    train_seconds = time.perf_counter() - started
    history = trainer.state.log_history
    examples = len(train_ds) * (trainer.state.epoch - start_epoch)

    meta = BundleMeta(
        labels=data.labels, preprocess=preprocessor.to_dict(), max_length=max_length,
        base_model=cfg.model.model, config=cfg.to_dict(),
    )
    if not trainer.is_world_process_zero():
        return TrainResult(out, model_dir, {}, prof, None, train_seconds, examples / train_seconds, history)
    # Evaluated where it was saved, then renamed into place: a failure on the way leaves no model folder.
    staged = save_bundle(out / STAGED_MODEL_DIR, trainer.model, tokenizer, meta)
    try:
        metrics = evaluate_bundle(staged, data, out / REPORT_DIR, history, t.eval_batch_size, t.calibrate,
                                  t.class_bias)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    replace_folder(staged, model_dir)
    metrics["train_seconds"] = round(train_seconds, 1)
    metrics["train_examples_per_second"] = round(examples / train_seconds, 2)
    log.info("test: accuracy %.4f, macro-F1 %.4f, weighted F1 %.4f on %d texts",
             metrics["accuracy"], metrics["macro_f1"], metrics["weighted_f1"], metrics["n"])

    calibration_numbers = {k: float(v) for k, v in metrics["calibration"].items()
                           if isinstance(v, (int, float)) and not isinstance(v, bool)}
    tracker.log_metrics({**flat_metrics(metrics), **calibration_numbers, "train_seconds": train_seconds,
                         "train_examples_per_second": examples / train_seconds})
    tracker.log_artifacts(out / REPORT_DIR, "report")
    tracker.log_model(model_dir, data.splits["test"]["raw_text"].head(3).tolist(), cfg.tracking.register_name)
    return TrainResult(out, model_dir, metrics, prof, tracker.run_id, train_seconds, examples / train_seconds, history)
