"""``emoclf tune``: an Optuna search over training settings that keeps the best model, tracked in MLflow.

The data is loaded, checked and split once. Trials see only its training and validation splits
(the test split is left out of what they are given), each trial is one ``training.train`` with
the config plus the values it drew, scored by the validation macro-F1 of its best checkpoint, and
each is an MLflow child run of the study's parent run (``--hierarchy auto`` is found once, before the first
trial, and every trial learns those groups). A callback reports every evaluation to the
trial, and Optuna's median pruner stops hopeless trials between evaluations.

The study lives in a database (default: SQLite beside the output), so a search cut short, by
Ctrl-C or ``kill -9``, goes on with the same command: finished trials are kept and counted, the
trial that was under way is marked failed (its MLflow run KILLED) and is not resumed.

At the end the best trial's model (or, with ``--refit``, its config retrained once on all the
training data) is evaluated on the untouched test split exactly as ``emoclf train`` does,
``best.yaml`` is the config that ``emoclf train --config best.yaml`` reproduces it with, and
the parent run holds the best params and value, the study's plots, the report and the model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState
from transformers import TrainerCallback

from emoclf import training
from emoclf.config import Config, TuneOptions
from emoclf.data import PreparedData, load_data
from emoclf.data.profile import profile
from emoclf.errors import ConfigError, RunStopped, TrainingDivergedError, TrainingInterrupted
from emoclf.evaluation.metrics import flat_metrics
from emoclf.finishing import finish_model
from emoclf.hierarchy import AUTO, pin
from emoclf.layout import CHECKPOINT_DIR, CONFIG_FILE, MODEL_DIR, REPORT_DIR, RUN_INFO_FILE, STAGED_MODEL_DIR
from emoclf.modeling import load_tokenizer
from emoclf.preprocess import Preprocessor
from emoclf.search_space import Param, load_space, space_dict
from emoclf.task import task_for
from emoclf.tracking import Tracker, ended_run, flatten, make_tracker

try:
    import fcntl
except ModuleNotFoundError:  # Windows: no lock, one tune per folder is up to the user
    fcntl = None

log = logging.getLogger(__name__)

DEFAULT_OUTPUT_DIR = "runs/tune"
STUDY_DB = "study.db"
TRIALS_DIR = "trials"
STUDY_DIR = "study"  # plots and trials.csv
REFIT_DIR = "refit"
BEST_YAML = "best.yaml"
SUMMARY_JSON = "tune.json"
HISTORY_JSON = "history.json"
LOCK_FILE = ".tune.lock"
SEARCH_SPLITS = ("train", "validation")
TPE_STARTUP_TRIALS = 5  # random trials before TPE models the results (Optuna's default of 10 suits long searches)
MEDIAN_STARTUP_TRIALS = 3  # completed trials before the median pruner stops any
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class TuneResult:
    output_dir: Path
    study_name: str
    storage: str
    best_trial: int
    best_value: float  # validation macro-F1 of the best trial's best checkpoint
    best_params: dict
    trials: dict[str, int]  # count by state
    metrics: dict  # the kept model on the test split
    model_dir: Path
    best_config: Path
    run_id: str | None
    tracking_failures: Path | None = None


class TrialPruned(RunStopped, optuna.TrialPruned):
    """Raised inside a trial's training: its run ends FINISHED and tagged, Optuna records the trial PRUNED."""


class PruningCallback(TrainerCallback):
    """Reports each evaluation's validation macro-F1 to the trial; stops the training when the pruner says so.

    It raises from ``on_evaluate``, before the Trainer writes that evaluation's checkpoint, so no
    checkpoint is cut short; the training's MLflow run ends FINISHED with ``emoclf.pruned`` tags."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial, self.evaluations = trial, 0

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.evaluations += 1
        value = float(metrics["eval_macro_f1"])
        self.trial.report(value, self.evaluations)
        if self.trial.should_prune():
            where = f"evaluation {self.evaluations} (epoch {state.epoch:.2f})"
            raise TrialPruned(
                f"trial {self.trial.number} pruned at {where}: validation macro-F1 {value:.4f}",
                {"emoclf.pruned": "true", "emoclf.pruned_at": where},
            )


def trial_dir(out: Path, number: int) -> Path:
    return out / TRIALS_DIR / f"trial-{number:04d}"


def best_validation_f1(history: list[dict]) -> float:
    """The validation macro-F1 of the checkpoint the Trainer kept (the best one)."""
    scores = [h["eval_macro_f1"] for h in history if "eval_macro_f1" in h]
    if not scores:
        raise ConfigError("the trial ended before its first evaluation; give it at least one epoch")
    return max(scores)


class Objective:
    """One trial: the config with the drawn values, trained on the search data, scored on validation."""

    def __init__(self, base: Config, data: PreparedData, space: list[Param], out: Path, prune: bool) -> None:
        self.base, self.data, self.space, self.out, self.prune = base, data, space, out, prune

    def config(self, trial) -> Config:
        drawn: dict = {}
        for param in self.space:
            if param.applies(drawn):
                drawn[param.name] = param.suggest(trial)
        # Children do not register models: one registered name would collect every trial.
        return self.base.replace(
            **drawn,
            output_dir=str(trial_dir(self.out, trial.number)),
            overwrite=True,
            run_name=f"trial-{trial.number}",
            register_name=None,
        )

    def __call__(self, trial: optuna.Trial) -> float:
        cfg = self.config(trial)
        folder = Path(cfg.train.output_dir)
        callbacks = [PruningCallback(trial)] if self.prune else []
        try:
            result = training.train(cfg, self.data, callbacks=callbacks, holdout=None)
        except TrainingDivergedError as e:
            trial.set_user_attr("error", str(e))
            raise
        finally:
            # Trials are never resumed (a cut-short one is replaced), so their checkpoints are only disk.
            shutil.rmtree(folder / CHECKPOINT_DIR, ignore_errors=True)
        (folder / HISTORY_JSON).write_text(json.dumps(result.history, indent=1), encoding="utf-8")
        # The steps it trained: on small data the --min-steps floor can outweigh the epochs it drew.
        trial.set_user_attr("training", result.metrics["training"])
        return best_validation_f1(result.history)


class Progress:
    """After each trial: one progress line, the parent run's metrics, and only the best trial's model kept."""

    def __init__(self, out: Path, tracker: Tracker, n_trials: int) -> None:
        self.out, self.tracker, self.n_trials, self.started = out, tracker, n_trials, time.monotonic()

    def __call__(self, study: optuna.Study, trial) -> None:
        best = best_trial(study)
        if best is not None:
            for folder in (self.out / TRIALS_DIR).glob("trial-*"):
                if folder != trial_dir(self.out, best.number):
                    shutil.rmtree(folder / MODEL_DIR, ignore_errors=True)
        finished = len(study.get_trials(deepcopy=False, states=FINISHED))
        params = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
        if trial.state == TrialState.COMPLETE:
            outcome = f"validation macro-F1 {trial.value:.4f}{_floor_note(trial.user_attrs.get('training', {}))}"
        elif trial.state == TrialState.PRUNED:
            last = max(trial.intermediate_values.items(), default=(0, float("nan")))
            outcome = f"pruned at evaluation {last[0]} (validation macro-F1 {last[1]:.4f})"
        else:
            outcome = f"failed ({trial.user_attrs.get('error', 'see the log above')})"
        so_far = f"best {best.value:.4f} (trial {best.number})" if best else "no trial completed yet"
        log.info(
            "trial %d [%d/%d finished, %.0fs]: %s -> %s; %s",
            trial.number,
            finished,
            self.n_trials,
            time.monotonic() - self.started,
            params,
            outcome,
            so_far,
        )
        values = {"best_value": best.value} if best else {}
        if trial.state == TrialState.COMPLETE:
            values["trial_value"] = trial.value
        self.tracker.log_metrics(values, step=trial.number)


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _floor_note(steps: dict) -> str:
    if not steps.get("min_steps_applied"):
        return ""
    return f" ({steps['steps']} steps, the --min-steps floor, instead of the {steps['planned_steps']} drawn)"


def best_trial(study: optuna.Study):
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def tune(cfg: Config, opts: TuneOptions) -> TuneResult:
    """Search, keep and evaluate the best model; see the module docstring. The parent run ends FINISHED,
    FAILED or KILLED; on Ctrl-C the study stays resumable with the same command."""
    _check_options(opts)
    out = Path(cfg.train.output_dir)
    # The data first: bad data fails in seconds, before any file is written or any run opened; its task decides
    # the default space and which imbalance strategies a space may draw.
    data = load_data(cfg.data, Preprocessor(cfg.preprocess))
    space = load_space(opts.space, cfg, task_for(data.task))
    search = replace(data, splits={split: data.splits[split] for split in SEARCH_SPLITS})
    base = _pin_max_length(cfg, search)
    out.mkdir(parents=True, exist_ok=True)
    with _folder_lock(out):
        base = _auto_hierarchy_once(base, search, out)
        storage = opts.storage or f"sqlite:///{(out / STUDY_DB).resolve()}"
        study = _open_study(base, opts, storage, space, out)
        tracker = make_tracker(cfg.tracking, local_dir=out)
        tracker.start(cfg.tracking.run_name or opts.study_name, resume=bool(study.trials))
        with ended_run(tracker):
            tracker.log_params(
                {
                    "tune": {
                        **{f.name: getattr(opts, f.name) for f in fields(opts)},
                        "storage": storage,
                        "space": json.dumps(space_dict(space)),
                    },
                    **base.to_dict(),
                }
            )
            _end_interrupted_trials(study, base, out)
            _search(study, Objective(base, search, space, out, opts.pruner != "none"), opts, out, tracker)
            result = _keep_best(study, base, data, opts, storage, out, tracker)
    result.run_id, result.tracking_failures = tracker.run_id, tracker.failures_file
    return result


def _auto_hierarchy_once(base: Config, search: PreparedData, out: Path) -> Config:
    """``--hierarchy auto`` found once, before the first trial (read back when the study resumes), so that every
    trial learns the same groups and none trains a first model of its own; no groups found: flat trials."""
    if base.train.hierarchy != AUTO:
        return base
    found = training.auto_hierarchy(base, search, out, resume=True)
    return pin(base, found, out) if found else base.replace(hierarchy=None)


def _check_options(opts: TuneOptions) -> None:
    if opts.n_trials < 1:
        raise ConfigError(f"n_trials must be at least 1, got {opts.n_trials}")
    if opts.timeout is not None and opts.timeout <= 0:
        raise ConfigError(f"timeout must be positive, got {opts.timeout}")


def _pin_max_length(cfg: Config, search: PreparedData) -> Config:
    """Every trial, and ``best.yaml``, uses one token limit, from the training and validation texts only:
    ``emoclf train`` would profile the test texts too."""
    if cfg.model.max_length:
        return cfg
    tokenizer, limit = load_tokenizer(cfg.model.model)
    return cfg.replace(max_length=profile(search, tokenizer, limit)["suggested_max_length"])


@contextlib.contextmanager
def _folder_lock(out: Path):
    """One tune per output folder: the trials found RUNNING at start are then known to be cut short."""
    if fcntl is None:
        yield
        return
    with (out / LOCK_FILE).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"another emoclf tune is running in {out}; wait for it to end, or choose another --output-dir"
            ) from None
        yield


def _open_study(base: Config, opts: TuneOptions, storage: str, space: list[Param], out: Path) -> optuna.Study:
    """The study (created, or loaded to resume), refused when it was started with other settings."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # emoclf logs its own line per trial
    if base.train.overwrite:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=opts.study_name, storage=storage)
        for name in (TRIALS_DIR, STUDY_DIR, REFIT_DIR, MODEL_DIR, REPORT_DIR):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in (SUMMARY_JSON, BEST_YAML, RUN_INFO_FILE):
            (out / name).unlink(missing_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # multivariate/group TPE
        sampler = optuna.samplers.TPESampler(
            seed=base.train.seed, n_startup_trials=TPE_STARTUP_TRIALS, multivariate=True, group=True
        )
    try:
        study = optuna.create_study(
            study_name=opts.study_name,
            storage=storage,
            sampler=sampler,
            pruner=make_pruner(opts.pruner),
            direction="maximize",
            load_if_exists=True,
        )
    except Exception as e:  # SQLAlchemy, driver and Optuna errors alike: one line naming the storage
        raise ConfigError(f"cannot open the Optuna storage {storage}: {type(e).__name__}: {e}") from None
    settings = {"config": flatten(_comparable(base)), "space": space_dict(space)}
    if not study.user_attrs:
        for key, value in settings.items():
            study.set_user_attr(key, value)
    elif study.user_attrs != json.loads(json.dumps(settings)):
        changed = _differences(study.user_attrs, json.loads(json.dumps(settings)))
        raise ConfigError(
            f"study {opts.study_name!r} in {storage} was started with other settings ({changed}); "
            "rerun with the same ones to resume it, or pass --overwrite or another --study-name"
        )
    return study


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """``median``: a trial whose validation macro-F1 at an evaluation is below the median of the completed
    trials' at the same evaluation stops there (once 3 trials have completed)."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS)
    return optuna.pruners.NopPruner()


def _comparable(cfg: Config) -> dict:
    """What makes trials comparable: everything but tracking and whether to overwrite."""
    raw = cfg.to_dict()
    raw.pop("tracking")
    raw["train"].pop("overwrite")
    return raw


def _differences(saved: dict, now: dict) -> str:
    keys = []
    for section in ("config", "space"):
        a, b = saved.get(section, {}), now.get(section, {})
        keys += [
            f"{section} {k}: {a.get(k)!r} then, {b.get(k)!r} now"
            for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)
        ]
    return "; ".join(keys[:3]) + ("; ..." if len(keys) > 3 else "")


def _end_interrupted_trials(study: optuna.Study, base: Config, out: Path) -> None:
    """Trials left RUNNING by a killed tune (the folder lock says no other tune is running) become FAIL,
    and their MLflow runs, reopened from the trial folder, KILLED."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        folder = trial_dir(out, trial.number)
        shutil.rmtree(folder / CHECKPOINT_DIR, ignore_errors=True)
        log.warning("trial %d was cut short by an earlier run of this study: marked failed, not resumed", trial.number)
        if base.tracking.tracking and (folder / RUN_INFO_FILE).is_file():
            child = make_tracker(replace(base.tracking, tracking_optional=True), local_dir=folder)
            child.start(resume=True)
            child.set_tags({"emoclf.cut_short": "true"})
            child.end("KILLED")


def _search(study: optuna.Study, objective: Objective, opts: TuneOptions, out: Path, tracker: Tracker) -> None:
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    remaining = opts.n_trials - finished
    if remaining <= 0:
        log.info("study %r already has %d finished trial(s) of %d", opts.study_name, finished, opts.n_trials)
        return
    log.info(
        "study %r: %d finished trial(s), %d to go%s",
        opts.study_name,
        finished,
        remaining,
        f", at most {opts.timeout:g}s" if opts.timeout else "",
    )
    try:
        # A diverged trial (too high a learning rate) is a result of the search, not the end of it.
        study.optimize(
            objective,
            n_trials=remaining,
            timeout=opts.timeout,
            catch=(TrainingDivergedError,),
            callbacks=[Progress(out, tracker, opts.n_trials)],
            gc_after_trial=True,
        )
    except KeyboardInterrupt:
        done = len(study.get_trials(deepcopy=False, states=FINISHED))
        raise TrainingInterrupted(
            f"the trial under way ended KILLED; study {opts.study_name!r} keeps its {done} "
            "finished trial(s): rerun the same command to go on"
        ) from None


def _keep_best(
    study: optuna.Study, base: Config, data: PreparedData, opts: TuneOptions, storage: str, out: Path, tracker: Tracker
) -> TuneResult:
    """The best trial's model (or its refit) evaluated on the test split, ``best.yaml``, the study's files."""
    best = best_trial(study)
    counts = {
        state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,)))
        for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    if best is None:
        raise ConfigError(
            f"no trial of study {opts.study_name!r} completed ({counts['pruned']} pruned, "
            f"{counts['fail']} failed); widen the space, run more trials or pass --pruner none"
        )

    def result(metrics: dict, model_dir: Path) -> TuneResult:
        return TuneResult(
            out,
            opts.study_name,
            storage,
            best.number,
            best.value,
            best.params,
            counts,
            metrics,
            model_dir,
            out / BEST_YAML,
            None,
        )

    summary = _read_summary(out)
    if (
        summary.get("best_trial") == best.number
        and summary.get("refit") == opts.refit
        and Path(summary["model"], "model.safetensors").is_file()
    ):
        log.info("the best trial is still %d, whose model is already kept in %s", best.number, summary["model"])
        return result(summary["test_metrics"], Path(summary["model"]))
    final, metrics = (_refit if opts.refit else _finish_trial_model)(best, base, data, out)
    model_dir = Path(final.train.output_dir) / MODEL_DIR
    reproduce = final.replace(
        output_dir=str(out / "reproduced"), overwrite=False, run_name=None, register_name=base.tracking.register_name
    )
    reproduce.save_yaml(out / BEST_YAML)
    plots = write_plots(study, out / STUDY_DIR)
    headline = {k: metrics[k] for k in ("accuracy", "macro_f1", "weighted_f1", "n")}
    (out / SUMMARY_JSON).write_text(
        json.dumps(
            {
                "study": opts.study_name,
                "storage": storage,
                "best_trial": best.number,
                "best_value": best.value,
                "best_params": best.params,
                "trials": counts,
                "refit": opts.refit,
                "test_metrics": headline,
                "model": str(model_dir),
                "best_config": str(out / BEST_YAML),
                "plots": sorted(p.name for p in plots),
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    tracker.log_params({"best": best.params})
    tracker.log_metrics({"best_value": best.value, **flat_metrics(metrics)})
    tracker.set_tags({"emoclf.best_trial": str(best.number), "emoclf.refit": str(opts.refit).lower()})
    tracker.log_dict(reproduce.to_dict(), BEST_YAML)
    tracker.log_artifacts(out / STUDY_DIR, STUDY_DIR)
    tracker.log_artifacts(Path(final.train.output_dir) / REPORT_DIR, REPORT_DIR)
    tracker.log_model(model_dir, data.splits["test"]["raw_text"].head(3).tolist(), base.tracking.register_name)
    return result(headline, model_dir)


def _read_summary(out: Path) -> dict:
    try:
        return json.loads((out / SUMMARY_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _finish_trial_model(best: FrozenTrial, base: Config, data: PreparedData, out: Path) -> tuple[Config, dict]:
    """The best trial's model, copied beside the study and evaluated on the test split as ``emoclf train`` does."""
    number, folder = best.number, trial_dir(out, best.number)
    if not (folder / MODEL_DIR).is_dir():
        raise ConfigError(
            f"the best trial's model folder {folder / MODEL_DIR} is missing; rerun with --refit to "
            "train its config again"
        )
    final = Config.from_yaml(folder / CONFIG_FILE).replace(
        output_dir=str(out), run_name=None, register_name=base.tracking.register_name
    )
    staged = out / STAGED_MODEL_DIR
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(folder / MODEL_DIR, staged)
    history = json.loads((folder / HISTORY_JSON).read_text(encoding="utf-8"))
    log.info("evaluating trial %d's model on the test split", number)
    return final, finish_model(final, data, staged, history, "test", best.user_attrs.get("training", {}))


def _refit(best: FrozenTrial, base: Config, data: PreparedData, out: Path) -> tuple[Config, dict]:
    """The best trial's config trained once more, on all the training and validation rows (no caps)."""
    number = best.number
    trial_cfg = Config.from_yaml(trial_dir(out, number) / CONFIG_FILE)
    final = trial_cfg.replace(
        max_samples=None,
        max_val_samples=None,
        output_dir=str(out / REFIT_DIR),
        overwrite=True,
        run_name="refit",
        register_name=None,
    )
    capped = base.data.max_samples or base.data.max_val_samples
    full = load_data(final.data, Preprocessor(final.preprocess)) if capped else data
    log.info("refitting trial %d's config on %d training rows", number, len(full.splits["train"]))
    result = training.train(final, full)
    shutil.rmtree(out / REFIT_DIR / CHECKPOINT_DIR, ignore_errors=True)
    return final.replace(register_name=base.tracking.register_name), result.metrics


PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "slice")


def write_plots(study: optuna.Study, folder: Path) -> list[Path]:
    """Optuna's own matplotlib plots of the study, and every trial as ``trials.csv``."""
    import matplotlib.pyplot as plt
    import numpy as np
    from optuna.visualization import matplotlib as plots

    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "trials.csv"]
    study.trials_dataframe().to_csv(written[0], index=False)
    for name in PLOTS:
        with warnings.catch_warnings():
            # Experimental-API notices, and matplotlib's about flat axes when all trials share a value.
            warnings.simplefilter("ignore")
            try:
                axes = getattr(plots, f"plot_{name}")(study)
            except Exception as e:  # e.g. importances need two completed trials; a plot never fails the study
                log.warning("no %s plot: %s", name, e)
                continue
        figure = (np.ravel(axes)[0] if isinstance(axes, np.ndarray) else axes).figure
        figure.savefig(folder / f"{name}.png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append(folder / f"{name}.png")
    return written
