"""Where MLflow data lives: the tracking URI emoclf uses, checked before reading, locked when first created.

Shared by the tracker (which writes runs) and by ``Predictor.load`` (which reads ``runs:/`` and
``models:/`` URIs), so both resolve the same store the same way.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from emoclf.errors import TrackingError

try:
    import fcntl
except ModuleNotFoundError:  # Windows
    fcntl = None

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def tracking_uri(explicit: str | None = None) -> str:
    """``explicit``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``; a relative SQLite or file
    store made absolute, so that a run recorded here is found again from any folder."""
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())
    if "://" not in uri and not uri.startswith("file:"):
        return str(Path(uri).resolve())
    return uri


def existing_store(uri: str) -> str:
    """``uri``, checked to hold a store when it is a local one: reading must never create an empty store."""
    path = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else uri if "://" not in uri else None
    if path is not None and not Path(path).exists():
        raise TrackingError(
            f"no MLflow store at {path} (tracking URI {uri}); run from the folder that holds it, "
            "or set MLFLOW_TRACKING_URI to the store that logged the model"
        )
    return uri


@contextlib.contextmanager
def store_lock(uri: str):
    """Serialise MLflow's first use of a SQLite store across processes.

    Two processes opening the same new store race in its schema migrations ("Online migration
    expected to match one row ... 0 found"); once it exists, SQLite's busy timeout (MLflow sets
    20 s) lets concurrent writers wait for each other.
    """
    if fcntl is None or not uri.startswith("sqlite:///"):
        yield
        return
    path = Path(uri.removeprefix("sqlite:///") + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
