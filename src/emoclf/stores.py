"""Where MLflow data lives: the tracking URI emoclf uses, checked before reading, locked when first created; and
the reads from it (a logged model's files, the run that logged it).

Shared by the tracker (which does every write, ``emoclf.tracking``) and by ``Predictor.load`` and ``emoclf export``
(which read ``runs:/`` and ``models:/`` URIs), so both resolve the same store the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

from emoclf.config import MLFLOW_SCHEMES
from emoclf.errors import TrackingError

try:
    import fcntl
except ModuleNotFoundError:  # Windows
    fcntl = None

log = logging.getLogger(__name__)

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


def point_mlflow_at(uri: str) -> None:
    """``mlflow.set_tracking_uri`` without its side effect on this process's environment: MLflow also writes the
    URI into ``MLFLOW_TRACKING_URI`` (for subprocesses), where ``tracking_uri`` would later read it as the user's
    choice, and a second training in the same Python process would log to the first one's store."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


def use_store(uri: str) -> None:
    """Read ``runs:/`` and ``models:/`` URIs from the store at ``uri`` (``--tracking-uri``) from now on."""
    point_mlflow_at(tracking_uri(uri))


def _reading_store():
    """MLflow, pointed at the store emoclf uses (``TrackingError`` when a local one does not exist)."""
    import mlflow

    point_mlflow_at(existing_store(tracking_uri(mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None)))
    return mlflow


def download(artifact_uri: str) -> Path:
    """A local copy of an MLflow artifact (a logged model: ``runs:/...``, ``models:/...``) in a new temporary
    folder."""
    mlflow = _reading_store()
    try:
        return Path(
            mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=tempfile.mkdtemp(prefix="emoclf-"))
        )
    except Exception as e:  # MLflow raises its own and HTTP errors alike
        raise TrackingError(f"cannot download {artifact_uri} from MLflow ({mlflow.get_tracking_uri()}): {e}") from None


def model_run_id(model_uri: str) -> str | None:
    """The MLflow run that logged the model at ``model_uri`` (a ``runs:/`` or ``models:/`` URI), or None."""
    if not str(model_uri).startswith(MLFLOW_SCHEMES):
        return None
    try:
        return _reading_store().models.get_model_info(str(model_uri)).run_id
    except Exception as e:  # a registry without run links, or an unreachable server: the caller decides
        log.warning("cannot find the MLflow run of %s (%s)", model_uri, e)
        return None
