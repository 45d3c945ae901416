"""emoclf: fine-tune BERT-family models for short-text classification, honestly evaluated.

The Python API is four names::

    from emoclf import Config, Predictor, evaluate, train

    result = train(Config().replace(epochs=1, output_dir="runs/api"))   # TrainResult
    predictor = Predictor.load(result.model_dir)
    print(predictor.predict(["i finally got the job"])[0].label)
    print(evaluate(result.model_dir).metrics["macro_f1"])  # scored on every row of the embedded demo set

``Predictor``, ``train`` and ``evaluate`` are imported on first use, so that ``import emoclf`` (and
``emoclf --help``) stays fast: torch and transformers load only when a model does.
"""

from typing import TYPE_CHECKING

from emoclf.config import Config
from emoclf.layout import __version__

__all__ = ["Config", "Predictor", "__version__", "evaluate", "train"]

# name -> (module, attribute)
_LAZY = {
    "Predictor": ("emoclf.inference", "Predictor"),
    "train": ("emoclf.training", "train"),
    "evaluate": ("emoclf.evaluation.evaluate", "evaluate_model"),
}

if TYPE_CHECKING:
    from emoclf.evaluation.evaluate import evaluate_model as evaluate
    from emoclf.inference import Predictor
    from emoclf.training import train


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'emoclf' has no attribute {name!r}")
    import importlib

    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
