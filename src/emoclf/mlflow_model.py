"""The emoclf model as an MLflow pyfunc: raw text in, labels and probabilities out.

It wraps the saved bundle (weights, tokenizer, preprocessing, temperature) as an artifact, so
``mlflow.pyfunc.load_model``, ``mlflow models serve`` and ``spark_udf`` apply exactly what
``emoclf predict`` applies. The model is logged from code (``mlflow_entry.py``), not pickled, with
emoclf's own source as its code path: its ``requirements.txt`` names only packages an index serves.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import mlflow
import pandas as pd

from emoclf.predictions import predictions_frame

ARTIFACT_KEY = "bundle"
MODEL_NAME = "model"
PACKAGE_DIR = Path(__file__).parent
ENTRY_FILE = PACKAGE_DIR / "mlflow_entry.py"
# What loading and running the model imports; emoclf itself travels as code.
REQUIREMENTS = (
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "mlflow",
    "numpy",
    "pandas",
    "scikit-learn",
    "scipy",
    "pyyaml",
    "tqdm",
)


class EmoclfPyfunc(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with a ``text`` column (or a list of strings). Output: ``Predictor.predict_frame``'s
    columns, predicted_label, predicted_probability, prob_<class>, skipped; one row per input row."""

    def load_context(self, context) -> None:
        from emoclf.inference import Predictor

        self.predictor = Predictor.load(context.artifacts[ARTIFACT_KEY])

    # The DataFrame hint tells MLflow the input is validated against the logged signature, not the hint.
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if isinstance(model_input, pd.DataFrame):
            column = model_input["text" if "text" in model_input.columns else model_input.columns[0]]
        else:
            column = pd.Series(list(model_input), dtype=object)
        # A missing text is an empty one (no prediction, marked skipped), never the string "None" or "nan".
        texts = ["" if v is None or (isinstance(v, float) and v != v) else v for v in column.tolist()]
        return predictions_frame(self.predictor, texts)


def requirements() -> list[str]:
    """This environment's versions, without local labels (``2.13.0+cpu`` is ``2.13.0``): an index serves
    every line. On Linux, PyPI's ``torch`` is the CUDA build, so a GPU machine gets its GPU torch."""
    reqs = []
    for name in REQUIREMENTS:
        try:
            reqs.append(f"{name}=={metadata.version(name).split('+')[0]}")
        except metadata.PackageNotFoundError:
            reqs.append(name)
    return reqs


def log_pyfunc(
    bundle: str | Path,
    input_example: list[str],
    register_name: str | None = None,
    name: str = MODEL_NAME,
    tags: dict[str, str] | None = None,
):
    """Log the bundle as the active run's pyfunc model ``name`` with ``tags`` (its description among them);
    returns MLflow's ``ModelInfo`` (``model_uri``, ``model_id``)."""
    from emoclf.inference import Predictor

    example = pd.DataFrame({"text": input_example})
    predictor = Predictor.load(bundle)
    output = predictions_frame(predictor, input_example)
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(ENTRY_FILE),
        code_paths=[str(PACKAGE_DIR)],
        artifacts={ARTIFACT_KEY: str(bundle)},
        input_example=example,
        signature=mlflow.models.infer_signature(example, output),
        pip_requirements=requirements(),
        registered_model_name=register_name,
        tags=tags,
    )
