"""The declared dependency floors admit only versions that have the APIs the code calls, so an old
version fails when installing emoclf, not halfway through a training."""

from __future__ import annotations

import dataclasses
import inspect
from importlib import metadata
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def requirements() -> dict[str, Requirement]:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    return {r.name: r for r in map(Requirement, deps)}


def test_transformers_floor_is_the_first_release_with_the_trainer_apis_used():
    import transformers
    from transformers.trainer_utils import rotate_checkpoints  # noqa: F401  (new in 5.2)

    spec = requirements()["transformers"].specifier
    # 5.1 has neither TrainingArguments.train_sampling_strategy nor trainer_utils.rotate_checkpoints.
    assert "5.1.0" not in spec and "4.56.0" not in spec and "5.2.0" in spec
    assert metadata.version("transformers") in spec
    assert "train_sampling_strategy" in {f.name for f in dataclasses.fields(transformers.TrainingArguments)}


def test_mlflow_floor_has_log_model_name():
    import mlflow

    spec = requirements()["mlflow"].specifier
    assert "2.22.0" not in spec and "3.0.0" in spec and metadata.version("mlflow") in spec
    assert "name" in inspect.signature(mlflow.pyfunc.log_model).parameters  # artifact_path before 3.0
