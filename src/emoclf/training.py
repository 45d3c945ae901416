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

import contextlib
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from transformers import DataCollatorWithPadding, TrainerCallback, set_seed
from transformers.trainer import TRAINER_STATE_NAME, TrainerState

from emoclf import console, hardware, imbalance
from emoclf.checkpoints import latest_checkpoint, output_lock, prepare_output
from emoclf.config import QUICK_BATCH_SIZE, QUICK_EPOCHS, QUICK_MAX_SAMPLES, Config
from emoclf.data import DEMO_SOURCE, Labelled, PreparedData, load_data
from emoclf.data.profile import profile, write_profile
from emoclf.data.split import subsample
from emoclf.distributed import is_main_process, wait_for_everyone
from emoclf.environment import record_run
from emoclf.errors import ConfigError
from emoclf.evaluation.context import now
from emoclf.evaluation.evaluate import evaluate
from emoclf.evaluation.metrics import metric_labels
from emoclf.finishing import finish_model
from emoclf.hierarchy import AUTO, Hierarchy, from_validation, read_found
from emoclf.inference import Predictor
from emoclf.layout import (
    CHECKPOINT_DIR,
    HIERARCHY_FIRST_MODEL_DIR,
    HIERARCHY_JSON,
    LOG_FILE,
    MODEL_DIR,
    REPORT_DIR,
    STAGED_MODEL_DIR,
    __version__,
)
from emoclf.losses import make_loss
from emoclf.modeling import (
    BundleMeta,
    base_card,
    check_max_length,
    default_name,
    hub_id,
    load_for_training,
    model_max_length,
    save_bundle,
)
from emoclf.naming import source_name
from emoclf.preprocess import Preprocessor
from emoclf.task import Task, task_for
from emoclf.tracking import (
    ended_run,
    log_training_results,
    log_training_setup,
    make_tracker,
    run_description,
    run_name,
    tracked_metrics,
)
from emoclf.trainer import (
    DivergenceCheck,
    EarlyStoppingAfterFloor,
    EmoclfTrainer,
    EpochSummary,
    GracefulStop,
    build_training_args,
    pad_multiple,
    plan_steps,
    resolve_precision,
    run_training,
    tokenize_split,
    validation_metrics,
)

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What ``train`` made: where the model and report are, the test metrics, the run."""

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
    hierarchy: Hierarchy | None
    task: Task
    steps: dict = field(default_factory=dict)  # what plan_steps decided, then the steps trained

    def resolved(self) -> dict[str, Any]:
        """What the ``auto`` settings became, logged with the run and saved with the model."""
        return {
            "imbalance_strategy": self.plan.strategy,
            "loss": self.plan.loss,
            "max_length": self.max_length,
            "precision": self.precision,
            "train_rows_after_resampling": len(self.train_ds),
            "hierarchy": self.hierarchy.describe() if self.hierarchy else "flat",
        }


def train(
    cfg: Config,
    data: PreparedData | None = None,
    resume: bool = False,
    callbacks: Sequence[TrainerCallback] = (),
    holdout: str | None = "test",
) -> TrainResult:
    """Fine-tune, evaluate the saved model on the untouched test split, and log it all (``emoclf train``).

    Args:
        cfg: what to train: ``Config()`` is the default MiniLM on the embedded demo set;
            ``Config().replace(data="train.csv", epochs=2)`` sets any field by name, and
            ``Config.from_yaml(path)`` reads a file.
        data: already loaded and split data (``load_data``), to train several variants on one split.
        resume: continue from the newest complete checkpoint in ``output_dir``, in the MLflow run
            recorded there (a ``kill -9`` leaves it RUNNING until then).
        callbacks: Trainer callbacks joining emoclf's (``emoclf tune`` reports to its pruner with one).
        holdout: the split the saved model is scored on. A search trial passes None (and data
            without a test split): the model is calibrated on validation and saved, nothing else is
            scored, and no model is logged. A ``RunStopped`` raised on the way (a pruned trial) ends
            the run FINISHED with its tags.

    Returns:
        TrainResult: ``model_dir`` (load it with ``Predictor.load``), ``output_dir`` (with
        ``report/``), test ``metrics``, the data ``profile``, the MLflow ``run_id``, ``train_seconds`` and
        the Trainer's ``history``.

    The MLflow run ends FINISHED, FAILED or KILLED, never left RUNNING; everything logged goes to
    ``output_dir/train.log`` too.
    """
    out = Path(cfg.train.output_dir)
    # The data first: bad data fails in seconds, before any file is written or any MLflow run opened.
    data = data or load_data(cfg.data, Preprocessor(cfg.preprocess))
    check_task_settings(cfg, data)
    spec = cfg.train.hierarchy
    given = Hierarchy.parse(spec, data.labels) if spec and spec != AUTO else None  # refused before anything is written
    if cfg.model.max_length:
        check_max_length(cfg.model.model, cfg.model.max_length)
    if cfg.tracking.tracking:
        metric_labels(data.labels)  # two labels that MLflow would log under one name are refused now
    # Under torchrun/accelerate every rank runs this; only rank 0 tracks, writes, evaluates and holds the lock.
    main = is_main_process()
    with output_lock(out) if main else contextlib.nullcontext():
        checkpoint = (
            prepare_output(out, resume, cfg.train.overwrite)
            if main
            else latest_checkpoint(out / CHECKPOINT_DIR)
            if resume
            else None
        )
        with console.log_file(out / LOG_FILE) if main else contextlib.nullcontext():
            hierarchy = given or (auto_hierarchy(cfg, data, resume=checkpoint is not None) if spec == AUTO else None)
            return _run(cfg, data, checkpoint, resume, callbacks, holdout, hierarchy)


def check_task_settings(cfg: Config, data: PreparedData) -> None:
    """Settings of one task given for data of the other are refused before anything is written."""
    t = cfg.train
    if data.multi_label and t.class_bias:
        raise ConfigError(
            "--class-bias applies to single-label data; this data is multi-label, and its model fits a decision "
            "threshold per label on validation instead"
        )
    if not data.multi_label and t.threshold is not None:
        raise ConfigError(
            "--threshold applies to multi-label data; this data is single-label (one class per text): drop it, or "
            "pass --task multi-label if texts may have several labels"
        )
    # The imbalance plan names the strategies a task has no use for (oversample on multi-label data).
    imbalance.plan(t.imbalance, data.y("train"), len(data.labels), t.imbalance_threshold, task=task_for(data.task))


def first_model(cfg: Config, data: PreparedData) -> tuple[Config, PreparedData]:
    """What ``auto`` trains its first, flat model on: ``compare --quick``'s budget (at most 4,000 training rows,
    one epoch in batches of 16, at least ``min_steps``) on the same training and validation splits (no test)."""
    quick = {"epochs": QUICK_EPOCHS, "batch_size": QUICK_BATCH_SIZE, "max_steps": None}
    flat = {"hierarchy": None, "calibrate": False, "class_bias": False, "tracking": False}
    first = cfg.replace(
        output_dir=str(Path(cfg.train.output_dir) / HIERARCHY_FIRST_MODEL_DIR), overwrite=True, **quick, **flat
    )
    train = subsample(data.splits["train"], QUICK_MAX_SAMPLES, cfg.data.split_seed, data.multi_label)
    log.info(
        "hierarchy auto: training a first flat model on %d texts to find the groups from its validation confusion",
        len(train),
    )
    return first, replace(data, splits={"train": train, "validation": data.splits["validation"]})


def auto_hierarchy(
    cfg: Config, data: PreparedData, report_dir: Path | None = None, resume: bool = False
) -> Hierarchy | None:
    """``--hierarchy auto``: the groups of the classes that a first, quick flat model (``first_model``)
    confuses on validation (never test; multi-label: a label given to texts of another that lack it), the tree
    drawn in ``report_dir`` (default: the run's report folder); None, and a flat training, when it confuses none
    more than the mean. ``resume``: the groups recorded there."""
    report_dir = report_dir or Path(cfg.train.output_dir) / REPORT_DIR
    if resume and (report_dir / HIERARCHY_JSON).is_file():
        kept = read_found(report_dir, data.labels)
        log.info(
            "hierarchy auto: resuming with the groups found when this training started: %s",
            kept.describe() if kept else "none, flat",
        )
        return kept
    first, small = first_model(cfg, data)
    model_dir = train(first, small, holdout=None).model_dir  # under torchrun, trained by every rank together
    if is_main_process():  # rank 0 alone saved it: it finds and records the groups, the other ranks read them
        predictor = Predictor.load(model_dir, batch_size=cfg.train.eval_batch_size)
        validation = Labelled.from_split(data.splits["validation"], "validation")
        decided = predictor.decide(evaluate(predictor, validation).probs)
        shutil.rmtree(first.train.output_dir, ignore_errors=True)
        from_validation(predictor.task.indicator(validation.y_true, len(data.labels)), decided, data.labels, report_dir)
    wait_for_everyone()
    return read_found(report_dir, data.labels)


def _run(
    cfg: Config,
    data: PreparedData,
    checkpoint: Path | None,
    resume: bool,
    callbacks: Sequence[TrainerCallback],
    holdout: str | None,
    hierarchy: Hierarchy | None,
) -> TrainResult:
    t, out, main = cfg.train, Path(cfg.train.output_dir), is_main_process()
    plan = imbalance.plan(
        t.imbalance,
        data.y("train"),
        len(data.labels),
        t.imbalance_threshold,
        hierarchy.group_ids(data.labels) if hierarchy else None,
        task_for(data.task),
    )
    summary = data.summary(cfg.data.data or DEMO_SOURCE)  # what the run, the model and its card say it learnt from
    tracker = make_tracker(cfg.tracking, local_dir=out, enabled=main)
    with console.status("opening the MLflow run", enabled=main):
        tracker.start(
            cfg.tracking.run_name or run_name(cfg.model.model, plan.strategy),
            resume=resume,
            description=run_description(cfg, summary, plan.strategy, plan.loss),
        )
    with ended_run(tracker, out / LOG_FILE if main else None):
        setup = _setup(cfg, data, plan, tracker, hierarchy)
        trainer, seconds, examples = _fit(cfg, setup, tracker, checkpoint, callbacks)
        history = trainer.state.log_history
        if not main:
            return TrainResult(out, out / MODEL_DIR, {}, setup.profile, None, seconds, examples / seconds, history)
        metrics = _evaluate(cfg, data, summary, setup, trainer, tracker.run_id, holdout)
        metrics.update(train_seconds=round(seconds, 1), train_examples_per_second=round(examples / seconds, 2))
        log_training_results(
            tracker,
            out / MODEL_DIR,
            out / REPORT_DIR,
            metrics,
            holdout,
            data.splits[holdout]["raw_text"].head(3).tolist() if holdout else [],
            cfg.tracking.register_name,
        )
    return TrainResult(
        out,
        out / MODEL_DIR,
        metrics,
        setup.profile,
        tracker.run_id,
        seconds,
        examples / seconds,
        history,
        tracker.failures_file,
    )


def _setup(cfg: Config, data: PreparedData, plan: imbalance.Plan, tracker, hierarchy: Hierarchy | None) -> _Setup:
    """Model, token limit from the data profile, the imbalance plan, the tokenised splits; all logged."""
    t, out = cfg.train, Path(cfg.train.output_dir)
    if is_main_process():
        record_run(cfg, out, tracker)
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    set_seed(t.seed)
    with console.status(
        f"loading {cfg.model.model} and tokenising {sum(map(len, data.splits.values()))} texts",
        enabled=is_main_process(),
    ):
        task = task_for(data.task)
        tokenizer, model = load_for_training(cfg.model.model, data.labels, task.problem_type)
        limit = model_max_length(tokenizer, model.config)
        prof = profile(data, tokenizer, limit)
        max_length = min(cfg.model.max_length or prof["suggested_max_length"], limit)
        if is_main_process():
            write_profile(prof, out / REPORT_DIR)
        rows = imbalance.resample_indices(plan.strategy, data.y("train"), t.seed)
        k = len(data.labels)
        setup = _Setup(
            tokenizer,
            model,
            prof,
            max_length,
            plan,
            tokenize_split(data.splits["train"], tokenizer, max_length, task, k).select(rows),
            tokenize_split(data.splits["validation"], tokenizer, max_length, task, k),
            resolve_precision(t.precision),
            hierarchy,
            task,
        )
    log.info(
        "training %s on %d texts (imbalance %s, ratio %.2f, loss %s), max_length %d, %s",
        cfg.model.model,
        len(setup.train_ds),
        plan.strategy,
        plan.imbalance_ratio,
        plan.loss,
        max_length,
        setup.precision,
    )
    log_training_setup(tracker, cfg, data.splits, setup.resolved(), data.report.label_issues)
    return setup


def _fit(
    cfg: Config, setup: _Setup, tracker, checkpoint: Path | None, callbacks: Sequence[TrainerCallback] = ()
) -> tuple[EmoclfTrainer, float, float]:
    """The Trainer's own loop; returns it, the seconds trained and the examples seen in them."""
    t, out = cfg.train, Path(cfg.train.output_dir)
    stop = GracefulStop()
    trainer = EmoclfTrainer(
        model=setup.model,
        args=build_training_args(cfg, setup.precision),
        train_dataset=setup.train_ds,
        eval_dataset=setup.val_ds,
        processing_class=setup.tokenizer,
        data_collator=DataCollatorWithPadding(setup.tokenizer, pad_to_multiple_of=pad_multiple()),
        compute_metrics=validation_metrics(setup.task, cfg.data.allow_no_label, t.threshold),
        compute_loss_func=make_loss(
            setup.plan.loss,
            setup.plan.class_weights,
            t.focal_gamma,
            t.focal_alpha,
            t.label_smoothing,
            setup.plan.group_ids,
            t.hierarchy_weight,
            setup.plan.group_weights,
            t.asl_gamma_neg,
            t.asl_clip,
        ),
        layer_decay=t.layer_decay,
        callbacks=[EpochSummary(tracker, tracked_metrics), DivergenceCheck(), stop, *callbacks]
        + [EarlyStoppingAfterFloor(t.patience, min_steps=t.min_steps)] * t.early_stopping,
    )
    setup.steps = plan_steps(trainer, cfg)
    start_epoch = TrainerState.load_from_json(str(checkpoint / TRAINER_STATE_NAME)).epoch if checkpoint else 0.0
    started = time.perf_counter()
    run_training(trainer, stop, checkpoint, out)
    seconds = time.perf_counter() - started
    setup.steps.update(
        optimizer_steps=trainer.state.global_step,
        examples_seen=round(len(setup.train_ds) * trainer.state.epoch),
        train_seconds=round(seconds, 1),
        hardware=hardware.detect().describe(),
    )
    return trainer, seconds, len(setup.train_ds) * (trainer.state.epoch - start_epoch)


def _evaluate(
    cfg: Config,
    data: PreparedData,
    summary: dict,
    setup: _Setup,
    trainer: EmoclfTrainer,
    run_id: str | None,
    holdout: str | None,
) -> dict:
    """Save the model with what describes it (``emoclf.json``, model card), then finish it (``finish_model``)."""
    m = cfg.model
    base = base_card(m.model) if not (m.license and m.language) else {}
    languages = base.get("language", [])
    meta = BundleMeta(
        labels=data.labels,
        preprocess=Preprocessor(cfg.preprocess).to_dict(),
        max_length=setup.max_length,
        base_model=source_name(hub_id(m.model)),  # a local base model by a relative name
        config=cfg.to_dict(),
        trained_at=now(),
        run_id=run_id,
        emoclf_version=__version__,
        data=summary,
        training={**setup.resolved(), **setup.steps},
        hierarchy=setup.hierarchy.to_dict() if setup.hierarchy else None,
        task=setup.task.name,
        allow_no_label=cfg.data.allow_no_label,
        name=m.model_name or default_name(hub_id(m.model), summary["name"]),
        license=m.license or base.get("license"),
        # A base model's one language is its fine-tuned model's too; of a multilingual one's, the data's are unknown.
        language=[c.strip() for c in m.language.split(",")] if m.language else languages if len(languages) == 1 else [],
    )
    staged = save_bundle(Path(cfg.train.output_dir) / STAGED_MODEL_DIR, trainer.model, setup.tokenizer, meta)
    return finish_model(cfg, data, staged, trainer.state.log_history, holdout, setup.steps)
