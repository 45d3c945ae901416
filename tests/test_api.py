"""The Python API: four names from the package, imported lazily, and the README's example as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


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


def readme_example() -> str:
    block = re.search(r"```python\n(from emoclf import .*?)```", README.read_text(encoding="utf-8"), re.S).group(1)
    return block


def test_the_readme_example_runs_as_written(tiny_model, tmp_path, monkeypatch, capsys):
    """The README's five lines, with the tiny model and the demo data standing in for its names."""
    from emoclf.data.io import demo_path

    code = readme_example()
    assert len(code.strip().splitlines()) == 5
    monkeypatch.chdir(tmp_path)
    code = code.replace(
        "Config()", f"Config().replace(model={str(tiny_model)!r}, tracking=False, learning_rate=3e-3, batch_size=16)"
    ).replace('"data/test.csv"', repr(str(demo_path())))
    exec(compile(code, "README.md", "exec"), {})
    label, macro_f1 = capsys.readouterr().out.split()
    assert label in {"anger", "fear", "joy", "love", "sadness", "surprise"}
    assert 0.0 <= float(macro_f1) <= 1.0
    assert (tmp_path / "runs" / "api" / "model" / "README.md").is_file()
