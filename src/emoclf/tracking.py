"""Experiment tracking behind a small interface, so training never imports MLflow directly.

``Tracker`` is the interface; ``MLflowTracker`` logs to ``--tracking-uri``, else
``$MLFLOW_TRACKING_URI``, else a local SQLite store ``sqlite:///mlflow.db`` (``emoclf.stores``);
``NullTracker`` is what ``--no-tracking`` uses.

What a training logs, and under which names, is decided here too (``log_training_setup``,
``log_training_results``, ``tracked_metrics``): metrics grouped by prefix into MLflow's chart sections,
which its UI sorts by name: ``curves/`` first (``curves/train/loss``, ``curves/val/macro_f1``: the values
per step and per epoch), then single values (``test/``, ``train/``, ``val/``; ``system/`` has a tab of
its own); no param holds "None"; the Trainer's bookkeeping left out; the model logged under its name
(``--model-name``) with a description, linked with the test metrics to the test dataset; the experiment
marked as machine-learning work (``mlflow.experimentKind``); the run's ``train.log``.

A tracking outage never stops a training: ``Outbox`` tries each call a few times, queues what
fails, retries the queue while training goes on and once more at the end, and writes whatever
still could not be delivered to ``<output_dir>/tracking_failures.json`` next to the local results.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from emoclf import console, modelcard
from emoclf.config import TrackingConfig
from emoclf.errors import RunStopped, TrackingError
from emoclf.evaluation.metrics import flat_metrics
from emoclf.layout import CARD_FILE, FAILURES_FILE, RUN_INFO_FILE
from emoclf.modeling import BundleMeta, hub_id, model_name, short_name
from emoclf.naming import source_name
from emoclf.network import unreachable
from emoclf.stores import point_mlflow_at, store_lock, tracking_uri

log = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 500  # MLflow's own limit is 6000 in recent servers, but 500 in older ones
# The experiment tag MLflow 3's UI reads for what kind of work an experiment holds (no tag: GenAI pages), and
# the value of model training; newer UIs choose the pages by a workflowType in the URL, which run_url sets.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
CUSTOM_MODEL_DEVELOPMENT = "custom_model_development"
DESCRIPTION_TAG = "mlflow.note.content"  # a run's, or a logged model's, description in MLflow's UI
# MLflow's HTTP client retries 7 times with exponential backoff (minutes) before one call fails;
# the outbox retries and queues by itself, so a single call must fail fast. User settings win.
CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


Metrics = dict[str, float]


class Tracker(Protocol):
    """What training, compare and tune log through."""

    run_id: str | None
    failures_file: Path | None

    def start(self, run_name: str | None = None, resume: bool = False, description: str | None = None) -> None: ...
    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: Metrics, step: int | None = None, dataset: str = "", model_id: str = "") -> None: ...
    def log_dict(self, data: dict, name: str) -> None: ...
    def log_text(self, text: str, name: str) -> None: ...
    def log_artifacts(self, folder: str | Path, path: str | None = None) -> None: ...
    def log_dataset(self, df: pd.DataFrame, name: str, source: str, context: str) -> None: ...
    def log_model(
        self, bundle: str | Path, input_example: list[str], register_name: str | None = None
    ) -> str | None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def end(self, status: str = "FINISHED") -> None: ...


class NullTracker:
    """Does nothing; keeps training code free of ``if tracking:`` branches."""

    run_id: str | None = None
    failures_file: Path | None = None

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith(("log_", "set_")) or name in ("start", "end"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def artifact_name(name: str) -> str:
    """A logged model's name in the characters an artifact path admits."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "model"


def run_url(uri: str, experiment_id: str, run_id: str) -> str | None:
    """The run's page in the MLflow UI of a tracking server, opened on its model-training pages (None: a local
    store, which ``mlflow ui`` serves)."""
    if not uri.startswith(("http://", "https://")):
        return None
    return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


class Refused(TrackingError):
    """MLflow refused the call itself (an invalid metric name or value, an unknown run, no permission): sending
    it again cannot succeed."""


def never_succeeds(error: Exception) -> bool:
    """Whether ``error`` is MLflow refusing the request (a 4xx status) rather than failing to answer it: a
    timeout (408) or a rate limit (429) passes, an invalid parameter (400) or a missing run (404) does not."""
    from mlflow.exceptions import MlflowException

    if not isinstance(error, MlflowException):
        return False
    status = error.get_http_status_code()
    return 400 <= status < 500 and status not in (408, 429)


@dataclass
class _Call:
    """One MLflow call, kept with a JSON-able description so an undelivered one can be reported."""

    what: str
    send: Callable[[], Any]
    detail: Any = None
    error: str = ""


class Outbox:
    """Calls delivered in order through an outage: each tried ``attempts`` times (backing off), the
    failed ones queued and the queue probed at most every ``probe_every`` seconds, then flushed at
    the end; what is left is written to ``FAILURES_FILE``. A call MLflow refuses (``never_succeeds``)
    is tried once, never queued, and listed there too."""

    def __init__(self, uri: str, attempts: int = 3, backoff: float = 0.5, probe_every: float = 5.0) -> None:
        self.uri, self.attempts, self.backoff, self.probe_every = uri, attempts, backoff, probe_every
        self.pending: list[_Call] = []
        self.refused: list[_Call] = []
        self.offline: str | None = None  # why no run could be started: every call is kept
        self._last_probe = 0.0

    def _attempt(self, call: _Call, attempts: int) -> Any:
        for i in range(attempts):
            try:
                return call.send()
            except Exception as e:  # MLflow raises its own, HTTP and SQLAlchemy errors alike
                call.error = f"{type(e).__name__}: {e}"
                if never_succeeds(e):
                    raise Refused(call.error) from None
                if i + 1 < attempts:
                    time.sleep(self.backoff * 2**i)
        raise TrackingError(call.error)

    def flush(self, final: bool = False) -> bool:
        """Deliver the queue in order. Between finals, one quick probe every ``probe_every`` seconds."""
        if not final and time.monotonic() - self._last_probe < self.probe_every:
            return not self.pending
        self._last_probe = time.monotonic()
        while self.pending:
            try:
                self._attempt(self.pending[0], self.attempts if final else 1)
            except Refused:
                self._refuse(self.pending[0])
            except TrackingError:
                return False
            self.pending.pop(0)
            if not self.pending:
                log.warning("MLflow at %s is reachable again; the queued calls were delivered", self.uri)
        return True

    def _refuse(self, call: _Call) -> None:
        log.error("MLflow at %s refused to %s (%s); not retried, as it cannot succeed", self.uri, call.what, call.error)
        self.refused.append(call)

    def send(self, what: str, fn: Callable, *args: Any, detail: Any = None, **kwargs: Any) -> Any:
        call = _Call(what, functools.partial(fn, *args, **kwargs), detail)
        if self.offline or not self.flush():
            self.pending.append(call)
            return None
        try:
            return self._attempt(call, self.attempts)
        except Refused:
            self._refuse(call)
            return None
        except TrackingError:
            log.warning(
                "MLflow at %s failed to %s (%s); queued for retry, training goes on", self.uri, what, call.error
            )
            self.pending.append(call)
            self._last_probe = time.monotonic()
            return None

    def write_failures(self, where: Path, run_id: str | None) -> Path:
        path = where / FAILURES_FILE
        path.write_text(
            json.dumps(
                {
                    "tracking_uri": self.uri,
                    "run_id": run_id,
                    "kept_locally": str(where.resolve()),
                    "failures": [{"call": "start a run", "error": self.offline}] * bool(self.offline)
                    + [{"call": c.what, "error": c.error, "detail": c.detail, "refused": True} for c in self.refused]
                    + [{"call": c.what, "error": c.error, "detail": c.detail} for c in self.pending],
                },
                indent=2,
                default=str,
            )
        )
        undelivered = self.refused + self.pending
        first = self.offline or f"{undelivered[0].what}: {undelivered[0].error}"
        log.error(
            "MLflow at %s: %d call(s) could not be logged (%s); the results are in %s, the calls in %s",
            self.uri,
            len(undelivered) + bool(self.offline),
            first,
            where,
            path,
        )
        return path


def last_logged_step(client, run) -> int:
    """The last step a resumed run already has metrics for (-1: none)."""
    return max(
        (m.step for key in run.data.metrics for m in client.get_metric_history(run.info.run_id, key)), default=-1
    )


def write_run_info(local_dir: Path, run_id: str, uri: str, experiment: str) -> None:
    local_dir.mkdir(parents=True, exist_ok=True)
    (local_dir / RUN_INFO_FILE).write_text(
        json.dumps({"run_id": run_id, "tracking_uri": uri, "experiment": experiment}, indent=2)
    )


def pandas_dataset(df: pd.DataFrame, source: str, name: str):
    """A split as an MLflow dataset of texts and labels."""
    import mlflow

    with warnings.catch_warnings():
        # MLflow registers its local-file source twice and warns that every path is ambiguous between them.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        return mlflow.data.from_pandas(df[["text", "label"]], source=source, name=name, targets="label")


def recorded_run_id(local_dir: Path | None, uri: str) -> str | None:
    """The run that ``local_dir``'s ``run_info.json`` names, if it lives in the store at ``uri``."""
    path = local_dir / RUN_INFO_FILE if local_dir is not None else None
    if path is None or not path.is_file():
        log.warning("no %s in %s: resuming into a new MLflow run", RUN_INFO_FILE, local_dir)
        return None
    info = json.loads(path.read_text())
    if info.get("tracking_uri") != uri:
        log.warning(
            "run %s was logged to %s, not %s: resuming into a new MLflow run",
            info.get("run_id"),
            info.get("tracking_uri"),
            uri,
        )
        return None
    return info["run_id"]


class MLflowTracker:
    """One MLflow run: params, metrics, artifacts, dataset inputs and the model as a pyfunc. ``local_dir``
    (the output folder) receives ``run_info.json`` (for ``--resume``) and, after an outage, the failures."""

    def __init__(
        self,
        uri: str | None,
        experiment: str,
        local_dir: str | Path | None = None,
        optional: bool = False,
        **outbox: Any,
    ) -> None:
        import mlflow

        self.mlflow = mlflow
        self.uri = tracking_uri(uri)
        self.experiment, self.optional = experiment, optional
        self.local_dir = Path(local_dir) if local_dir is not None else None
        self.outbox = Outbox(self.uri, **outbox)
        self.run_id: str | None = None
        self.failures_file: Path | None = None
        self._logged_params: dict[str, str] = {}
        self._logged_through = -1  # last metric step already in the run (when resumed)
        self._datasets: dict[str, Any] = {}  # logged inputs by name, for metrics computed on them
        self._kept: tuple[str, int | None] | None = None  # an attached run's status and end time

    def start(self, run_name: str | None = None, resume: bool = False, description: str | None = None) -> None:
        """Start a run, or with ``resume`` reopen the one recorded in ``local_dir`` if it lives in this store."""
        for name, value in CLIENT_DEFAULTS.items():
            os.environ.setdefault(name, value)
        try:
            run, previous = self._open(run_name, resume, description)
        except TrackingError as e:
            if not self.optional:
                raise
            log.warning("%s; training anyway (--tracking-optional), results are kept in %s", e, self.local_dir)
            self.outbox.offline = str(e)
            return
        self.run_id = run.info.run_id
        if previous:
            self._logged_params = dict(run.data.params)
            self._logged_through = last_logged_step(self.mlflow.MlflowClient(), run)
            log.info(
                "MLflow run %s reopened at %s (metrics logged through step %d)",
                self.run_id,
                self.uri,
                self._logged_through,
            )
        else:
            url = run_url(self.uri, run.info.experiment_id, self.run_id)
            log.info("MLflow: run %s in experiment %r at %s", run.info.run_name, self.experiment, url or self.uri)
        if self.local_dir is not None:
            write_run_info(self.local_dir, self.run_id, self.uri, self.experiment)

    def attach(self, run_id: str) -> None:
        """Add to a run that has ended (an export's report to the run that logged its model); ``end`` gives it back
        the status and end time it had."""
        for name, value in CLIENT_DEFAULTS.items():
            os.environ.setdefault(name, value)
        point_mlflow_at(self.uri)
        try:
            info = self.mlflow.MlflowClient().get_run(run_id).info
            self.mlflow.start_run(run_id=run_id, nested=self.mlflow.active_run() is not None)
        except Exception as e:  # MLflow raises its own, HTTP and SQLAlchemy errors alike
            log.warning("cannot open MLflow run %s at %s (%s): nothing is logged to it", run_id, self.uri, e)
            self.outbox.offline = f"cannot open MLflow run {run_id}: {e}"
            return
        self.run_id, self._kept = run_id, (info.status, info.end_time)

    def _open(self, run_name: str | None, resume: bool, description: str | None):
        if self.uri.startswith(("http://", "https://")) and (why := unreachable(self.uri)):
            raise TrackingError(
                f"MLflow tracking server {self.uri} is unreachable ({why}); start it, fix "
                "--tracking-uri, or pass --no-tracking (or --tracking-optional to train anyway)"
            )
        point_mlflow_at(self.uri)
        previous = recorded_run_id(self.local_dir, self.uri) if resume else None
        try:
            with store_lock(self.uri):
                experiment = self.mlflow.set_experiment(self.experiment)
                if EXPERIMENT_KIND_TAG not in experiment.tags:  # a kind chosen in the UI stays
                    self.mlflow.MlflowClient().set_experiment_tag(
                        experiment.experiment_id, EXPERIMENT_KIND_TAG, CUSTOM_MODEL_DEVELOPMENT
                    )
                # Inside an active run (emoclf compare's parent), this run becomes its child.
                return self.mlflow.start_run(
                    run_id=previous,
                    run_name=None if previous else run_name,
                    description=None if previous else description,
                    nested=self.mlflow.active_run() is not None,
                ), previous
        except Exception as e:
            raise TrackingError(f"cannot start an MLflow run at {self.uri}: {e}") from None

    def log_params(self, params: dict[str, Any]) -> None:
        """Flattened params (``train.epochs``); unset ones (None) are left out: MLflow would show the string "None",
        and the full config is the run's ``config.json``."""
        every = {k: v for k, v in flatten(params).items() if v is not None}
        flat = {k: v for k, v in every.items() if k not in self._logged_params}
        changed = [k for k, v in every.items() if self._logged_params.get(k, str(v)) != str(v)]
        if changed:
            # MLflow refuses to change a logged param; the resumed config is in config.yaml.
            log.warning("resumed with changed settings (kept as first logged in MLflow): %s", ", ".join(changed))
        short = {k: v for k, v in flat.items() if len(str(v)) <= MAX_PARAM_LENGTH}
        long = {k: v for k, v in flat.items() if k not in short}
        self.outbox.send("log params", self.mlflow.log_params, short, detail=short)
        if long:
            # Values over the limit would be refused; they live in an artifact instead.
            self.outbox.send("log long params", self.mlflow.log_dict, long, "long_params.json", detail=long)

    def log_metrics(self, metrics: Metrics, step: int | None = None, dataset: str = "", model_id: str = "") -> None:
        """``dataset`` (a ``log_dataset`` name) and ``model_id`` link the values to their data and model."""
        if step is not None and step <= self._logged_through:
            return  # logged before the crash this run resumes from; the replay recomputes the same values
        values = {k: float(v) for k, v in metrics.items()}
        self.outbox.send(
            "log metrics",
            self.mlflow.log_metrics,
            values,
            step=step,
            model_id=model_id or None,
            dataset=self._datasets.get(dataset),
            detail={"step": step, "metrics": values},
        )

    def log_dict(self, data: dict, name: str) -> None:
        self.outbox.send(f"log {name}", self.mlflow.log_dict, data, name, detail={"artifact": name})

    def log_text(self, text: str, name: str) -> None:
        self.outbox.send(f"log {name}", self.mlflow.log_text, text, name, detail={"artifact": name})

    def log_artifacts(self, folder: str | Path, path: str | None = None) -> None:
        self.outbox.send(
            f"log artifacts {path or ''}".strip(),
            self.mlflow.log_artifacts,
            str(folder),
            artifact_path=path,
            detail={"local": str(folder), "artifact_path": path},
        )

    def log_dataset(self, df: pd.DataFrame, name: str, source: str, context: str) -> None:
        self._datasets[name] = ds = pandas_dataset(df, source, name)
        self.outbox.send(
            f"log dataset {name}",
            self.mlflow.log_input,
            ds,
            context=context,
            detail={"name": name, "source": source, "context": context},
        )

    def set_tags(self, tags: dict[str, str]) -> None:
        self.outbox.send("set tags", self.mlflow.set_tags, tags, detail=tags)

    def log_model(self, bundle: str | Path, input_example: list[str], register_name: str | None = None) -> str | None:
        """Log the bundle as a pyfunc under the model's own name, described as its card begins; its model id
        (None if the call was queued)."""
        from emoclf.mlflow_model import log_pyfunc

        meta = BundleMeta.read(Path(bundle))
        name = artifact_name(model_name(meta))
        info = self.outbox.send(
            "log model",
            log_pyfunc,
            bundle,
            input_example,
            register_name,
            name,
            {DESCRIPTION_TAG: modelcard.description(meta)},
            detail={"local": str(bundle), "register_name": register_name, "name": name},
        )
        return info.model_id if info is not None else None

    def end(self, status: str = "FINISHED") -> None:
        """Deliver the queue and end the run; what still fails goes to ``tracking_failures.json``."""
        if not self.outbox.offline:
            client = self.mlflow.MlflowClient()
            self.outbox.send(f"end the run as {status}", client.set_terminated, self.run_id, status)
            self.outbox.flush(final=True)
            # Leave the fluent run stack as start() found it (emoclf compare's parent run lies below). end_run
            # pops first, then repeats the server call just made, which only fails when that one failed too.
            with contextlib.suppress(Exception):
                self.mlflow.end_run(status)
            if self._kept:  # an attached run gets back the status and end time it had
                self.outbox.send("restore the run's status", client.set_terminated, self.run_id, *self._kept)
                self.outbox.flush(final=True)
        if self.outbox.pending or self.outbox.refused or self.outbox.offline:
            self.failures_file = self.outbox.write_failures(self.local_dir or Path.cwd(), self.run_id)


def make_tracker(settings: TrackingConfig, local_dir: str | Path | None = None, enabled: bool = True) -> Tracker:
    """The tracker the tracking settings ask for (``NullTracker`` when off, or when ``enabled`` is False: a rank but
    0); ``local_dir`` receives ``run_info.json`` and, after an outage, what could not be logged."""
    if not (settings.tracking and enabled):
        return NullTracker()
    return MLflowTracker(settings.tracking_uri, settings.experiment, local_dir, settings.tracking_optional)


@contextlib.contextmanager
def ended_run(tracker: Tracker, log_file: Path | None = None):
    """End the tracker's run FINISHED, KILLED (Ctrl-C, SIGTERM) or FAILED: never left RUNNING; ``log_file`` (the
    run's ``train.log``) is logged first, whichever way it ends.

    A ``RunStopped`` (a pruned trial) ends it FINISHED with the tags it carries, and goes on up."""

    def end(status: str) -> None:
        if log_file is not None and log_file.is_file():
            tracker.log_text(log_file.read_text(encoding="utf-8", errors="replace"), log_file.name)
        tracker.end(status)

    try:
        yield tracker
    except RunStopped as e:
        tracker.set_tags(e.tags)
        end("FINISHED")
        raise
    except KeyboardInterrupt:
        end("KILLED")
        raise
    except BaseException:
        end("FAILED")
        raise
    end("FINISHED")


# The Trainer's log keys as emoclf tracks them. Everything else it logs is bookkeeping (total_flos, steps per
# second) or repeats what emoclf logs itself (train_runtime is system/train_seconds).
TRACKED_METRICS = {
    "loss": "curves/train/loss",
    "learning_rate": "curves/train/learning_rate",
    "grad_norm": "curves/train/grad_norm",
    "eval_loss": "curves/val/loss",
    "eval_macro_f1": "curves/val/macro_f1",
    "eval_accuracy": "curves/val/accuracy",
    "eval_runtime": "system/val_seconds",
}
DATASET_CONTEXTS = {"train": "training", "validation": "validation", "test": "testing"}


def tracked_metrics(logs: dict) -> dict[str, float]:
    """The Trainer's logged values under emoclf's metric names; the rest is dropped."""
    return {TRACKED_METRICS[k]: v for k, v in logs.items() if k in TRACKED_METRICS and isinstance(v, (int, float))}


def run_name(model: str, strategy: str) -> str:
    """The default run name: model, imbalance strategy, time, e.g. ``minilm-class-weight-20261127-0457``."""
    return f"{short_name(model)}-{strategy}-{datetime.now():%Y%m%d-%H%M}"


def run_description(cfg, summary: dict, strategy: str, loss: str) -> str:
    """What was trained on what (``summary``: ``PreparedData.summary``), and where the scores come from."""
    t = cfg.train
    rows = ", ".join(f"{n} {split}" for split, n in summary["texts"].items())
    budget = (f"{t.max_steps} optimizer steps" if t.max_steps else f"up to {t.epochs:g} epochs") + (
        f" (at least {t.min_steps} steps)" if t.min_steps and not t.max_steps else ""
    )
    base = source_name(hub_id(cfg.model.model))  # a local base model by a relative name
    return (
        f"Fine-tunes {base} to classify texts as {', '.join(summary['class_counts']['train'])}, "
        f"on {summary['source']} ({rows} texts), imbalance handling {strategy} (loss {loss}), {budget}. "
        "Test metrics (test/) are from the saved model on the untouched test split; validation (curves/val/, "
        "val/) chose the best epoch and fitted the temperature."
    )


def log_training_setup(
    tracker: Tracker, cfg, splits: dict[str, pd.DataFrame], resolved: dict, label_issues: dict | None = None
) -> None:
    """The settings (the model as its hub id, not emoclf's alias; what ``auto`` became), the three datasets and,
    with ``--exclude-label-issues``, how many training rows the audit's file changed (``data/label_issues_*``)."""
    settings = cfg.to_dict()
    settings["model"]["model"] = hub_id(cfg.model.model)
    tracker.log_params({**settings, "resolved": resolved})
    tracker.log_dict(cfg.to_dict(), "config.json")
    for split, context in DATASET_CONTEXTS.items():
        if split in splits:  # a search trial's data has no test split
            tracker.log_dataset(splits[split], split, cfg.data.data or "emoclf-demo", context)
    if label_issues:
        tracker.log_metrics({f"data/label_issues_{k}": label_issues[k] for k in ("listed", "changed", "not_in_train")})


def log_training_results(
    tracker: Tracker,
    model_dir: Path,
    report_dir: Path,
    metrics: dict,
    holdout: str | None,
    input_example: list[str],
    register_name: str | None,
) -> None:
    """The model first, so that the ``holdout`` metrics can name it and the dataset they were computed on;
    then what calibration fitted, how long training took, the report and the model card (``for_mlflow``'s copy,
    which MLflow's viewer renders). Without a holdout (a search trial) nothing was scored and no model is logged."""
    cal, steps = metrics["calibration"], metrics.get("training", {})
    if holdout is not None:
        with console.status("logging the model to MLflow"):
            model_id = tracker.log_model(model_dir, input_example, register_name)
        tracker.log_metrics(
            {
                **flat_metrics(metrics, f"{holdout}/"),
                f"{holdout}/ece_before": cal["ece_before"],
                f"{holdout}/ece_after": cal["ece_after"],
            },
            dataset=holdout,
            model_id=model_id,
        )
    other = {
        "val/temperature": cal["temperature"],
        "val/fitted_temperature": cal.get("fitted_temperature"),
        "val/ece_before": cal.get("validation_ece_before"),
        "val/ece_fitted": cal.get("validation_ece_fitted"),
        "train/optimizer_steps": steps.get("optimizer_steps"),
        "train/examples_seen": steps.get("examples_seen"),
        "system/train_seconds": metrics.get("train_seconds"),
        "system/train_examples_per_second": metrics.get("train_examples_per_second"),
    }
    tracker.log_metrics({k: v for k, v in other.items() if v is not None})
    tracker.log_artifacts(report_dir, "report")
    if holdout is not None:
        tracker.log_text(modelcard.for_mlflow((model_dir / CARD_FILE).read_text(encoding="utf-8")), CARD_FILE)
