"""Experiment tracking behind a small interface, so training never imports MLflow directly.

``MLflowTracker`` logs to ``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else a local SQLite
store ``sqlite:///mlflow.db``. ``NullTracker`` is what ``--no-tracking`` uses.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd

from emoclf.errors import TrackingError

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
MAX_PARAM_LENGTH = 500  # MLflow's own limit is 6000 in recent servers, but 500 in older ones


def tracking_uri(explicit: str | None = None) -> str:
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


class NullTracker:
    """Does nothing; keeps training code free of ``if tracking:`` branches."""

    run_id: str | None = None

    def start(self, run_name: str | None = None) -> None: ...
    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_dict(self, data: dict, name: str) -> None: ...
    def log_artifacts(self, folder: str | Path, path: str | None = None) -> None: ...
    def log_dataset(self, df: pd.DataFrame, name: str, source: str, context: str) -> None: ...
    def log_model(self, bundle: str | Path, input_example: list[str], register_name: str | None = None) -> str | None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def end(self, status: str = "FINISHED") -> None: ...


class MLflowTracker(NullTracker):
    """One MLflow run: params, metrics, artifacts, dataset inputs and the model as a pyfunc."""

    def __init__(self, uri: str | None, experiment: str) -> None:
        import mlflow

        self.mlflow = mlflow
        self.uri = tracking_uri(uri)
        self.experiment = experiment
        self.run_id = None

    def _check_reachable(self) -> None:
        parsed = urlparse(self.uri)
        if parsed.scheme in ("http", "https"):
            try:
                socket.create_connection((parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)),
                                         timeout=5).close()
            except OSError as e:
                raise TrackingError(
                    f"MLflow tracking server {self.uri} is unreachable ({e}); start it, fix --tracking-uri, "
                    "or pass --no-tracking"
                ) from None

    def start(self, run_name: str | None = None) -> None:
        self._check_reachable()
        self.mlflow.set_tracking_uri(self.uri)
        try:
            self.mlflow.set_experiment(self.experiment)
            # Inside an active run (emoclf compare's parent), this run becomes its child.
            run = self.mlflow.start_run(run_name=run_name, nested=self.mlflow.active_run() is not None)
        except Exception as e:
            raise TrackingError(f"cannot start an MLflow run at {self.uri}: {e}") from None
        self.run_id = run.info.run_id
        log.info("MLflow run %s in experiment %r at %s", self.run_id, self.experiment, self.uri)

    def log_params(self, params: dict[str, Any]) -> None:
        flat = flatten(params)
        short = {k: v for k, v in flat.items() if len(str(v)) <= MAX_PARAM_LENGTH}
        long = {k: v for k, v in flat.items() if k not in short}
        self.mlflow.log_params(short)
        if long:
            # Values over the limit would be refused; they live in an artifact instead.
            self.mlflow.log_dict(long, "long_params.json")

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_dict(self, data: dict, name: str) -> None:
        self.mlflow.log_dict(data, name)

    def log_artifacts(self, folder: str | Path, path: str | None = None) -> None:
        self.mlflow.log_artifacts(str(folder), artifact_path=path)

    def log_dataset(self, df: pd.DataFrame, name: str, source: str, context: str) -> None:
        ds = self.mlflow.data.from_pandas(df[["text", "label"]], source=source, name=name, targets="label")
        self.mlflow.log_input(ds, context=context)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.mlflow.set_tags(tags)

    def log_model(self, bundle: str | Path, input_example: list[str], register_name: str | None = None) -> str:
        from emoclf.mlflow_model import log_pyfunc

        return log_pyfunc(bundle, input_example, register_name)

    def end(self, status: str = "FINISHED") -> None:
        if self.mlflow.active_run() is not None:
            self.mlflow.end_run(status=status)


def make_tracker(enabled: bool, uri: str | None, experiment: str) -> NullTracker:
    return MLflowTracker(uri, experiment) if enabled else NullTracker()
