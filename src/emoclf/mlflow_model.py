"""The emoclf model as an MLflow pyfunc: raw text in, labels and probabilities out.

It wraps the saved bundle (weights, tokenizer, preprocessing, temperature) as an artifact, so
``mlflow.pyfunc.load_model``, ``mlflow models serve`` and ``spark_udf`` apply exactly what
``emoclf predict`` applies.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import mlflow
import pandas as pd

from emoclf.predictions import predictions_frame

ARTIFACT_KEY = "bundle"
MODEL_NAME = "model"


class EmoclfPyfunc(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with a ``text`` column (or a list of strings). Output: ``Predictor.predict_frame``'s
    columns, predicted_label, predicted_probability, prob_<class>, skipped; one row per input row."""

    def load_context(self, context) -> None:
        from emoclf.inference import Predictor

        self.predictor = Predictor.load(context.artifacts[ARTIFACT_KEY])

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        if isinstance(model_input, pd.DataFrame):
            column = model_input["text" if "text" in model_input.columns else model_input.columns[0]]
        else:
            column = pd.Series(list(model_input), dtype=object)
        # A missing text is an empty one (no prediction, marked skipped), never the string "None" or "nan".
        texts = ["" if v is None or (isinstance(v, float) and v != v) else v for v in column.tolist()]
        return predictions_frame(self.predictor, texts)


def _requirements() -> list[str]:
    # Pinned from this environment: MLflow's own inference loads the model in a subprocess (slow).
    names = ["emoclf", "torch", "transformers", "mlflow", "pandas", "scikit-learn"]
    reqs = []
    for name in names:
        try:
            reqs.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            reqs.append(name)
    return reqs


def log_pyfunc(bundle: str | Path, input_example: list[str], register_name: str | None = None) -> str:
    """Log the bundle as the run's pyfunc model; returns its model URI."""
    from emoclf.inference import Predictor

    example = pd.DataFrame({"text": input_example})
    predictor = Predictor.load(bundle)
    output = predictions_frame(predictor, input_example)
    info = mlflow.pyfunc.log_model(
        name=MODEL_NAME,
        python_model=EmoclfPyfunc(),
        artifacts={ARTIFACT_KEY: str(bundle)},
        input_example=example,
        signature=mlflow.models.infer_signature(example, output),
        pip_requirements=_requirements(),
        registered_model_name=register_name,
    )
    return info.model_uri
