"""The transformers Trainer as emoclf trains with it: settings, callbacks, and a small subclass.

``EmoclfTrainer`` overrides only what differs: checkpoints written complete-or-absent, a
length-grouped batch order drawn from the seed and the epoch (so a mid-epoch resume replays it),
and a loss that must stay finite. The callbacks print one line per evaluation, forward metrics to
the tracker, stop on a non-finite gradient norm or validation loss, and turn SIGINT/SIGTERM into
"finish the step, checkpoint, stop".
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score
from transformers import EarlyStoppingCallback, PrinterCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, IntervalStrategy, SaveStrategy, rotate_checkpoints

from emoclf import hardware
from emoclf.checkpoints import latest_checkpoint
from emoclf.config import Config
from emoclf.console import DELAY, FILE_ONLY, progress
from emoclf.distributed import is_main_process
from emoclf.errors import ModelLoadError, TrainingDivergedError, TrainingInterrupted
from emoclf.evaluation.metrics import macro_f1
from emoclf.layout import CHECKPOINT_DIR, STAGING_DIR
from emoclf.task import SINGLE, TASKS, Task

log = logging.getLogger(__name__)


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


def tokenize_split(df, tokenizer, max_length: int, task: Task = TASKS[SINGLE], num_labels: int = 0):
    """A ``datasets.Dataset`` of input ids and labels (as the task trains on them), tokenised once in one batched
    call."""
    from datasets import Dataset

    enc = tokenizer(df["text"].tolist(), truncation=True, max_length=max_length)
    return Dataset.from_dict({**enc, "labels": task.targets(df["label_id"].tolist(), num_labels)})


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


class EarlyStoppingAfterFloor(EarlyStoppingCallback):
    """Early stopping that waits for the ``--min-steps`` floor: small data gets its steps before it is judged."""

    def __init__(self, early_stopping_patience: int = 1, early_stopping_threshold: float = 0.0, min_steps: int = 0):
        super().__init__(early_stopping_patience, early_stopping_threshold)
        self.min_steps = min_steps

    def on_evaluate(self, args, state, control, metrics, **kwargs):
        if state.global_step >= self.min_steps:
            super().on_evaluate(args, state, control, metrics, **kwargs)

    def state(self) -> dict:  # a resumed training rebuilds the callback from these
        saved = super().state()
        saved["args"]["min_steps"] = self.min_steps
        return saved


class EpochSummary(TrainerCallback):
    """One readable line per evaluation, and the tracked metrics forwarded to the tracker, named by ``names``
    (``tracking.tracked_metrics``: the tracker decides what is logged and under which names)."""

    def __init__(self, tracker, names) -> None:
        self.tracker, self.names = tracker, names
        self.started = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not is_main_process() or not logs:
            return
        named = self.names(logs)
        if named:
            self.tracker.log_metrics(named, step=state.global_step)
        if "eval_macro_f1" in logs:
            train_loss = next((h["loss"] for h in reversed(state.log_history) if "loss" in h), float("nan"))
            log.info(
                "epoch %.2f: train loss %.4f, validation loss %.4f, validation macro-F1 %.4f, accuracy %.4f (%.0fs)",
                logs.get("epoch", state.epoch or 0),
                train_loss,
                logs["eval_loss"],
                logs["eval_macro_f1"],
                logs["eval_accuracy"],
                time.perf_counter() - self.started,
                extra=FILE_ONLY,
            )


class TrainingProgress(TrainerCallback):
    """One bar for the whole training: steps, the epoch, the latest loss and validation macro-F1.

    It replaces the Trainer's own bars, whose nested evaluation bar left blank and cursor-up lines
    behind and whose bar said neither epoch nor score."""

    def __init__(self) -> None:
        self.bar = None
        self.scores: dict[str, str] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.bar = progress(
            desc="train",
            total=state.max_steps,
            initial=state.global_step,
            unit="step",
            enabled=is_main_process(),
        )

    def _show(self, args, state, doing: str = "", refresh: bool = False) -> None:
        parts = [f"epoch {state.epoch or 0:.2f}/{state.num_train_epochs:g}", *self.scores.values(), doing]
        # Without refresh, the next update draws it: updates keep the bar's delay and rate limit.
        self.bar.set_postfix_str(", ".join(p for p in parts if p), refresh=refresh)

    def on_step_end(self, args, state, control, **kwargs):
        self._show(args, state)
        self.bar.update(state.global_step - self.bar.n)

    def on_prediction_step(self, args, state, control, **kwargs):
        if self.bar is not None and "validating" not in (self.bar.postfix or ""):
            shown = not self.bar.disable and time.time() - self.bar.start_t > DELAY  # past the bar's delay
            self._show(args, state, "validating", refresh=shown)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs:
            return
        if "loss" in logs:
            self.scores["loss"] = f"loss {logs['loss']:.4f}"
        if "eval_macro_f1" in logs:
            self.scores["f1"] = f"val macro-F1 {logs['eval_macro_f1']:.4f}"
        self._show(args, state)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


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
        log.warning(
            "%s: stopping after this step with a checkpoint (send it again to stop at once)",
            signal.Signals(signum).name,
        )

    def on_step_end(self, args, state, control, **kwargs):
        if self.signum is not None:
            control.should_training_stop = True
            # At an epoch's end the epoch's own evaluation and checkpoint follow; anywhere else, save now.
            control.should_save = control.should_save or not float(state.epoch).is_integer()

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.signum is not None and not float(state.epoch).is_integer():
            # Evaluating a cut-short epoch would change early stopping compared with an uninterrupted run.
            control.should_evaluate = control.should_save = False


# The encoder layer a parameter belongs to, in BERT, RoBERTa (encoder.layer.N) and DistilBERT (transformer.layer.N).
LAYER_INDEX = re.compile(r"\.layer\.(\d+)\.")


def layer_groups(model, learning_rate: float, decay: float) -> list[tuple[float, list]]:
    """Trainable parameters by depth with their learning rates: embeddings at ``lr * decay^(L+1)``, encoder
    layer i at ``lr * decay^(L-i)``, everything above the encoder (pooler, classifier) at ``lr``."""
    depth: dict[int, list] = {}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    layers = [int(m.group(1)) for n, _ in named if (m := LAYER_INDEX.search(n))]
    top = max(layers, default=-1) + 2
    for n, p in named:
        m = LAYER_INDEX.search(n)
        level = int(m.group(1)) + 1 if m else (0 if "embeddings" in n else top)
        depth.setdefault(level, []).append((n, p))
    return [(learning_rate * decay ** (top - level), depth[level]) for level in sorted(depth)]


class EmoclfTrainer(Trainer):
    """The Trainer, with complete-or-absent checkpoints, a resumable length-grouped order and a finite loss.

    transformers writes ``checkpoint-N`` file by file where it ends up, so a crash mid-save would
    leave a folder that looks like a checkpoint; here ``checkpoint-N`` exists only once complete.
    The Trainer's own logging drops non-finite losses from its averages (``logging_nan_inf_filter``),
    which hid a diverged run; here the first one stops the training, naming its step.
    """

    _staging = False

    def __init__(self, *args, layer_decay: float = 1.0, **kwargs) -> None:
        self.layer_decay = layer_decay
        super().__init__(*args, **kwargs)
        # One bar, with epoch, loss and score; the Trainer's log dicts would go to stdout, which is for results.
        self.remove_callback(PrinterCallback)
        self.add_callback(TrainingProgress)

    def create_optimizer(self, model=None):
        """The Trainer's optimizer, with layer-wise learning-rate decay when ``layer_decay`` is below 1: the
        pretrained lower layers, which hold general features, move less than the top and the new head."""
        if self.layer_decay == 1.0 or self.optimizer is not None:
            return super().create_optimizer(model)
        model = self.model if model is None else model
        decay_names = set(self.get_decay_parameter_names(model))
        groups = layer_groups(model, self.args.learning_rate, self.layer_decay)
        params = [
            {
                "params": [p for n, p in named if (n in decay_names) == decays],
                "lr": lr,
                "weight_decay": self.args.weight_decay if decays else 0.0,
            }
            for lr, named in groups
            for decays in (True, False)
        ]
        optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        self.optimizer = optimizer_cls([g for g in params if g["params"]], **kwargs)
        return self.optimizer

    def _get_train_sampler(self, train_dataset=None):
        if self.args.train_sampling_strategy != "group_by_length":
            return super()._get_train_sampler(train_dataset)
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        lengths = [len(ids) for ids in dataset["input_ids"]]
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return EpochSeededLengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths, seed
        )

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            raise diverged(
                "training loss",
                float(loss.detach().float().mean()),
                self.state.global_step + 1,
                self.args.learning_rate,
            )
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
        run_dir = self._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staged, final = os.path.join(run_dir, STAGING_DIR, name), os.path.join(run_dir, name)
        if self.state.best_model_checkpoint == staged:
            # The Trainer recorded where it wrote; the state (every rank's, and the copy inside) must name where
            # it will be, or the ranks but 0 would look for the best model in the staging folder at the end.
            self.state.best_model_checkpoint = final
            if self.args.should_save:
                self.state.save_to_json(os.path.join(staged, TRAINER_STATE_NAME))
        if not self.args.should_save:
            return
        os.replace(staged, final)
        os.rmdir(os.path.dirname(staged))
        rotate_checkpoints(run_dir, self.args.save_total_limit, self.state.best_model_checkpoint)


def plan_steps(trainer: Trainer, cfg: Config) -> dict:
    """The optimizer steps of this training, set on the trainer: ``max_steps`` when given (an explicit count wins
    over the floor), else epochs x the Trainer's own steps per epoch, raised to ``min_steps`` when fewer (a floor
    that small data needs to learn)."""
    t, a = cfg.train, trainer.args
    # As the Trainer counts them (each process draws its share of every global batch), without building
    # and preparing a second dataloader just for its length.
    global_batch = a.train_batch_size * a.world_size * a.gradient_accumulation_steps
    per_epoch = math.ceil(len(trainer.train_dataset) / global_batch)
    planned = t.max_steps or math.ceil(per_epoch * t.epochs)
    steps = t.max_steps or max(planned, t.min_steps)
    floored = steps > planned
    if floored:
        log.warning(
            "%d optimizer steps (%g epoch(s) of %d) are too few to learn from: training %d steps, the "
            "--min-steps floor",
            planned,
            t.epochs,
            per_epoch,
            steps,
        )
    a.max_steps = steps
    if floored and not t.checkpoint_steps:
        # As many evaluations (and summary lines) as the epochs asked for, spread over the floor's steps.
        a.eval_strategy, a.save_strategy = IntervalStrategy.STEPS, SaveStrategy.STEPS
        a.eval_steps = a.save_steps = math.ceil(steps / max(1, math.ceil(t.epochs)))
    # Four training-loss logs an epoch, in steps: a share of all steps would log once in many epochs of small data.
    a.logging_steps = max(1, per_epoch // 4)
    return {"steps_per_epoch": per_epoch, "planned_steps": planned, "steps": steps, "min_steps_applied": floored}


def run_training(trainer: Trainer, stop: GracefulStop, checkpoint: Path | None, run_dir: Path) -> None:
    """``trainer.train`` from ``checkpoint`` (None: from scratch), its failures said in emoclf's terms: a
    refused pickle, a divergence (its checkpoints removed), a signal (where to resume from)."""
    with stop.installed():
        try:
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        except pickle.UnpicklingError as e:
            if checkpoint is None:
                raise
            raise ModelLoadError(
                f"{checkpoint}: refused a pickle that holds more than tensors ({e}); "
                "the checkpoint is damaged or was tampered with"
            ) from None
        except TrainingDivergedError:
            if is_main_process():  # its checkpoints would only replay the divergence on --resume
                shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)
            raise
    if stop.signum is not None:
        raise TrainingInterrupted(
            f"{signal.Signals(stop.signum).name} at step {trainer.state.global_step}; "
            f"checkpoint {latest_checkpoint(run_dir / CHECKPOINT_DIR)}; continue with: "
            f"emoclf train --resume {run_dir}"
        )


def validation_metrics(task: Task = TASKS[SINGLE], allow_empty: bool = False, threshold: float | None = None):
    """The Trainer's ``compute_metrics``: validation macro-F1 (what early stopping and the best checkpoint go by)
    and accuracy, of the labels the model would give: the most probable class, or every label over its threshold,
    fitted on these texts as the finished model's will be (or ``threshold``)."""

    def compute(eval_pred) -> dict[str, float]:
        y = np.asarray(eval_pred.label_ids)
        probs = task.probabilities(np.asarray(eval_pred.predictions))
        decided = task.decide(probs, task.thresholds(probs, y, threshold), allow_empty)
        preds = task.labels_of(decided)
        return {"macro_f1": macro_f1(y, preds), "accuracy": float(accuracy_score(y, preds))}

    return compute


def build_training_args(cfg: Config, precision: str) -> TrainingArguments:
    """``emoclf train``'s Trainer settings; warm-up and logging are shares of the run, which the Trainer turns
    into steps itself (whatever the number of processes)."""
    t = cfg.train
    # Best-model tracking needs evaluations and checkpoints on one schedule.
    schedule = (
        {
            "eval_strategy": "steps",
            "eval_steps": t.checkpoint_steps,
            "save_strategy": "steps",
            "save_steps": t.checkpoint_steps,
        }
        if t.checkpoint_steps
        else {"eval_strategy": "epoch", "save_strategy": "epoch"}
    )
    return TrainingArguments(
        output_dir=str(Path(t.output_dir) / CHECKPOINT_DIR),
        num_train_epochs=t.epochs,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,  # below 1: a share of all steps
        lr_scheduler_type="linear",
        **schedule,
        save_total_limit=t.save_total_limit,
        restore_callback_states_from_checkpoint=True,  # early stopping's patience counter survives a resume
        load_best_model_at_end=True,
        metric_for_best_model="macro_f1",
        greater_is_better=True,
        logging_strategy="steps",  # four times an epoch: plan_steps sets the steps once it knows an epoch's
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        seed=t.seed,
        data_seed=t.seed,
        report_to="none",
        dataloader_num_workers=0,
        # Every parameter of a sequence classifier is used; True would walk the graph each step.
        ddp_find_unused_parameters=False,
        save_only_model=False,
        disable_tqdm=True,  # TrainingProgress is the one bar
    )
