"""The Python API: four names from the package, imported lazily (the README's example: tests/test_readme.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_the_four_names_import_from_the_package_with_docstrings():
    import emoclf
    from emoclf import Config, Predictor, evaluate, train
    from emoclf.evaluation.evaluate import evaluate_model
    from emoclf.inference import Predictor as InferencePredictor
    from emoclf.training import train as training_train

    assert (Predictor, train, evaluate) == (InferencePredictor, training_train, evaluate_model)
    assert {"Config", "Predictor", "evaluate", "train"} <= set(emoclf.__all__) <= set(dir(emoclf))
    for thing in (
        Config,
        Predictor,
        Predictor.load,
        Predictor.predict,
        Predictor.predict_proba,
        Predictor.logits,
        train,
        evaluate,
    ):
        assert thing.__doc__ and len(thing.__doc__.split()) > 10, thing
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        emoclf.nope  # noqa: B018


def test_importing_emoclf_loads_no_model_library():
    code = "import sys, emoclf; print(sorted({'torch', 'transformers', 'mlflow'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
