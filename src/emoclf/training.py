"""One training, end to end: setup -> fit -> evaluate -> log.

What emoclf adds to a plain Trainer lives in the modules named for it: ``trainer`` (the Trainer
subclass and callbacks), ``checkpoints`` (the run folder and what may be replaced), ``imbalance``
and ``losses`` (the plan for the training split), ``evaluation`` (calibrate on validation, score
the *saved* model on the untouched test split, exactly as ``emoclf predict`` will), ``tracking``.

No silent failures: the data is validated before anything is written or tracked; a non-finite
loss stops the training at its step; the model folder appears only once the saved model has been
evaluated; a finished training's folder is replaced only with ``overwrite``.
"""

from __future__ import annotations

import json
import logging
import pickle
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import DataCollatorWithPadding, EarlyStoppingCallback, ProgressCallback, TrainerCallback, set_seed
from transformers.trainer import TRAINER_STATE_NAME, TrainerState

from emoclf import hardware, imbalance
from emoclf.checkpoints import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    ENVIRONMENT_FILE,
    MODEL_DIR,
    REPORT_DIR,
    STAGED_MODEL_DIR,
    latest_checkpoint,
    prepare_output,
)
from emoclf.config import Config
from emoclf.data import PreparedData, load_data
from emoclf.data.profile import profile, write_profile
from emoclf.environment import run_environment
from emoclf.errors import ModelLoadError, TrainingDivergedError, TrainingInterrupted
from emoclf.evaluation.evaluate import finish_model
from emoclf.evaluation.metrics import flat_metrics
from emoclf.losses import make_loss
from emoclf.modeling import BundleMeta, load_for_training, model_max_length, save_bundle
from emoclf.preprocess import Preprocessor
from emoclf.tracking import Tracker, ended_run, make_tracker
from emoclf.trainer import (
    DivergenceCheck,
    EmoclfTrainer,
    EpochSummary,
    GracefulStop,
    ProgressBars,
    build_training_args,
    compute_metrics,
    is_main_process,
    pad_multiple,
    plan_steps,
    resolve_precision,
    tokenize_split,
)

log = logging.getLogger(__name__)


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


@dataclass
class _Setup:
    """Everything the fit needs, decided before it starts."""

    tokenizer: Any
    model: Any
    profile: dict
    max_length: int
    plan: imbalance.Plan
    train_ds: Any
    val_ds: Any
    precision: str
    steps: dict = field(default_factory=dict)  # what plan_steps decided, then the steps trained


def train(cfg: Config, data: PreparedData | None = None, resume: bool = False,
          callbacks: Sequence[TrainerCallback] = (), holdout: str | None = "test") -> TrainResult:
    """Run one training end to end; the MLflow run is FINISHED, FAILED or KILLED, never left RUNNING.

    ``resume`` continues from the newest complete checkpoint in ``output_dir`` and in the MLflow
    run recorded there (a ``kill -9`` leaves it RUNNING until then). ``callbacks`` join the
    Trainer's. ``holdout`` is the split the saved model is scored on; a search trial passes None
    (and data without a test split): the model is calibrated on validation and saved, nothing
    else is scored, and no model is logged. A ``RunStopped`` raised on the way (a pruned trial)
    ends the run FINISHED with its tags.
    """
    out = Path(cfg.train.output_dir)
    # The data first: bad data fails in seconds, before any file is written or any MLflow run opened.
    data = data or load_data(cfg.data, Preprocessor(cfg.preprocess))
    # Under torchrun/accelerate every rank runs this; only rank 0 tracks, writes and evaluates.
    main = is_main_process()
    checkpoint = (prepare_output(out, resume, cfg.train.overwrite) if main
                  else latest_checkpoint(out / CHECKPOINT_DIR) if resume else None)
    tracker = make_tracker(cfg.tracking.tracking and main, cfg.tracking.tracking_uri, cfg.tracking.experiment,
                           local_dir=out, optional=cfg.tracking.tracking_optional)
    tracker.start(cfg.tracking.run_name, resume=resume)
    with ended_run(tracker):
        setup = _setup(cfg, data, tracker)
        trainer, seconds, examples = _fit(cfg, setup, tracker, checkpoint, callbacks)
        history = trainer.state.log_history
        if not main:
            return TrainResult(out, out / MODEL_DIR, {}, setup.profile, None, seconds, examples / seconds, history)
        metrics = _evaluate(cfg, data, setup, trainer, history, holdout)
        metrics.update(train_seconds=round(seconds, 1), train_examples_per_second=round(examples / seconds, 2))
        _log_results(cfg, tracker, data, metrics, holdout)
    return TrainResult(out, out / MODEL_DIR, metrics, setup.profile, tracker.run_id, seconds, examples / seconds,
                       history, tracker.failures_file)


def _record_run(cfg: Config, out: Path, tracker: Tracker) -> None:
    """The run's own files (config, environment) beside its results, and in its tracking run."""
    out.mkdir(parents=True, exist_ok=True)
    cfg.save_yaml(out / CONFIG_FILE)
    environment = run_environment()
    (out / ENVIRONMENT_FILE).write_text(json.dumps(environment, indent=2))
    tracker.log_dict(environment, ENVIRONMENT_FILE)
    tracker.set_tags({"emoclf.git_commit": str(environment["git"]["commit"]),
                      "emoclf.git_dirty": str(environment["git"]["dirty"]),
                      "emoclf.hardware": hardware.detect().describe()})


def _setup(cfg: Config, data: PreparedData, tracker: Tracker) -> _Setup:
    """Model, token limit from the data profile, the imbalance plan, the tokenised splits; all logged."""
    t, out = cfg.train, Path(cfg.train.output_dir)
    if is_main_process():
        _record_run(cfg, out, tracker)
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    set_seed(t.seed)
    tokenizer, model = load_for_training(cfg.model.model, data.labels)
    limit = model_max_length(tokenizer, model.config)
    prof = profile(data, tokenizer, limit)
    max_length = min(cfg.model.max_length or prof["suggested_max_length"], limit)
    if is_main_process():
        write_profile(prof, out / REPORT_DIR)
    label_ids = data.splits["train"]["label_id"].to_numpy()
    plan = imbalance.plan(t.imbalance, label_ids, len(data.labels), t.imbalance_threshold)
    rows = imbalance.resample_indices(plan.strategy, label_ids, t.seed)
    setup = _Setup(tokenizer, model, prof, max_length, plan,
                   tokenize_split(data.splits["train"], tokenizer, max_length).select(rows),
                   tokenize_split(data.splits["validation"], tokenizer, max_length), resolve_precision(t.precision))
    log.info("training %s on %d rows (%s, imbalance ratio %.2f, loss %s), max_length %d, %s", cfg.model.model,
             len(setup.train_ds), plan.strategy, plan.imbalance_ratio, plan.loss, max_length, setup.precision)
    tracker.log_params({**cfg.to_dict(), "resolved": {
        "imbalance_strategy": plan.strategy, "loss": plan.loss, "max_length": max_length,
        "precision": setup.precision, "train_rows_after_resampling": len(setup.train_ds)}})
    tracker.log_dict(cfg.to_dict(), CONFIG_FILE.replace(".yaml", ".json"))
    tracker.log_dict(prof, "data_profile.json")
    for split, context in (("train", "training"), ("validation", "validation"), ("test", "testing")):
        if split in data.splits:  # a search trial's data has no test split
            tracker.log_dataset(data.splits[split], split, cfg.data.data or "emoclf-demo", context)
    return setup


def _fit(cfg: Config, setup: _Setup, tracker: Tracker, checkpoint: Path | None,
         callbacks: Sequence[TrainerCallback] = ()) -> tuple[EmoclfTrainer, float, float]:
    """The Trainer's own loop; returns it, the seconds trained and the examples seen in them."""
    t, out = cfg.train, Path(cfg.train.output_dir)
    stop = GracefulStop()
    trainer = EmoclfTrainer(
        model=setup.model, args=build_training_args(cfg, setup.precision), train_dataset=setup.train_ds,
        eval_dataset=setup.val_ds, processing_class=setup.tokenizer,
        data_collator=DataCollatorWithPadding(setup.tokenizer, pad_to_multiple_of=pad_multiple()),
        compute_metrics=compute_metrics,
        compute_loss_func=make_loss(setup.plan.loss, setup.plan.class_weights, t.focal_gamma, t.focal_alpha,
                                    t.label_smoothing),
        callbacks=[EpochSummary(tracker), DivergenceCheck(), stop, *callbacks]
        + [EarlyStoppingCallback(early_stopping_patience=t.patience)] * t.early_stopping,
    )
    setup.steps = plan_steps(trainer, cfg)
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
            if is_main_process():  # its checkpoints would only replay the divergence on --resume
                shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
            raise
    if stop.signum is not None:
        raise TrainingInterrupted(f"{signal.Signals(stop.signum).name} at step {trainer.state.global_step}; "
                                  f"checkpoint {latest_checkpoint(out / CHECKPOINT_DIR)}; continue with: "
                                  f"emoclf train --resume {out}")
    seconds = time.perf_counter() - started
    setup.steps.update(optimizer_steps=trainer.state.global_step, examples_seen=round(len(setup.train_ds) * trainer.state.epoch))
    return trainer, seconds, len(setup.train_ds) * (trainer.state.epoch - start_epoch)


def _evaluate(cfg: Config, data: PreparedData, setup: _Setup, trainer: EmoclfTrainer, history: list[dict],
              holdout: str | None) -> dict:
    meta = BundleMeta(labels=data.labels, preprocess=Preprocessor(cfg.preprocess).to_dict(),
                      max_length=setup.max_length, base_model=cfg.model.model, config=cfg.to_dict())
    staged = save_bundle(Path(cfg.train.output_dir) / STAGED_MODEL_DIR, trainer.model, setup.tokenizer, meta)
    return finish_model(cfg, data, staged, history, holdout, {"training": setup.steps})


def _log_results(cfg: Config, tracker: Tracker, data: PreparedData, metrics: dict, holdout: str | None) -> None:
    out = Path(cfg.train.output_dir)
    prefix = f"{holdout}_" if holdout else "validation_"
    calibration = {f"{prefix}{k}": float(v) for k, v in metrics["calibration"].items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
    scores = flat_metrics(metrics, prefix) if holdout else {}
    tracker.log_metrics({**scores, **calibration, "train_seconds": metrics["train_seconds"],
                         "train_examples_per_second": metrics["train_examples_per_second"]})
    tracker.log_artifacts(out / REPORT_DIR, "report")
    if holdout is not None:
        tracker.log_model(out / MODEL_DIR, data.splits[holdout]["raw_text"].head(3).tolist(),
                          cfg.tracking.register_name)
