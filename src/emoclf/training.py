"""Fine-tuning with the transformers Trainer: setup -> fit -> evaluate on untouched test -> save -> log.

What emoclf adds to a plain Trainer: texts tokenised once per split (not per item per epoch),
dynamic padding with length-grouped batches, the imbalance plan (resampled train rows or a
weighted/focal loss), early stopping on validation macro-F1, and an evaluation of the *saved*
model on the test split, so the reported numbers are those of what ships.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from emoclf import calibration, imbalance
from emoclf.config import Config
from emoclf.data import PreparedData, load_data
from emoclf.data.profile import profile, write_profile
from emoclf.evaluation.metrics import classification_metrics, flat_metrics
from emoclf.evaluation.report import write_report
from emoclf.inference import Predictor
from emoclf.losses import make_loss
from emoclf.modeling import BundleMeta, load_for_training, model_max_length, save_bundle, write_meta
from emoclf.preprocess import Preprocessor
from emoclf.tracking import NullTracker, make_tracker

log = logging.getLogger(__name__)

MODEL_DIR = "model"
REPORT_DIR = "report"
CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.yaml"
RELIABILITY_PNG = "reliability.png"


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


def cpu_supports_bf16() -> bool:
    """AMX or AVX512-BF16 makes bf16 matmuls fast on CPU; without them bf16 autocast is slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
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


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _compute_metrics(eval_pred) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    preds = np.asarray(eval_pred.predictions).argmax(axis=-1)
    labels = np.asarray(eval_pred.label_ids)
    return {"macro_f1": f1_score(labels, preds, average="macro"), "accuracy": accuracy_score(labels, preds)}


def build_training_args(cfg: Config, precision: str, steps_per_epoch: int) -> TrainingArguments:
    t = cfg.train
    return TrainingArguments(
        output_dir=str(Path(t.output_dir) / CHECKPOINT_DIR),
        num_train_epochs=t.epochs,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=math.ceil(t.warmup_ratio * steps_per_epoch * t.epochs),
        lr_scheduler_type="linear",
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=t.save_total_limit,
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


def train(cfg: Config, data: PreparedData | None = None) -> TrainResult:
    """Run one training end to end; the MLflow run is FINISHED, FAILED or KILLED, never left RUNNING."""
    # Under torchrun/accelerate every rank runs this; only rank 0 tracks, writes and evaluates.
    tracker = make_tracker(cfg.tracking.tracking and is_main_process(), cfg.tracking.tracking_uri,
                           cfg.tracking.experiment)
    tracker.start(cfg.tracking.run_name)
    try:
        result = _train(cfg, tracker, data)
    except KeyboardInterrupt:
        tracker.end("KILLED")
        raise
    except BaseException:
        tracker.end("FAILED")
        raise
    tracker.end("FINISHED")
    return result


def _train(cfg: Config, tracker: NullTracker, data: PreparedData | None) -> TrainResult:
    t = cfg.train
    out = Path(t.output_dir)
    main = is_main_process()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save_yaml(out / CONFIG_FILE)
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
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8),
        compute_metrics=_compute_metrics,
        compute_loss_func=make_loss(plan.loss, plan.class_weights, t.focal_gamma, t.focal_alpha),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=t.patience), EpochSummary(tracker)],
    )
    started = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - started
    history = trainer.state.log_history
    examples = len(train_ds) * trainer.state.epoch

    model_dir = out / MODEL_DIR
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
