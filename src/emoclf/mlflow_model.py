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

ARTIFACT_KEY = "bundle"
MODEL_NAME = "model"


class EmoclfPyfunc(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with a ``text`` column (or a list of strings). Output: label, confidence, prob_<class>."""

    def load_context(self, context) -> None:
        from emoclf.inference import Predictor

        self.predictor = Predictor.load(context.artifacts[ARTIFACT_KEY])

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        if isinstance(model_input, pd.DataFrame):
            texts = model_input["text" if "text" in model_input.columns else model_input.columns[0]].astype(str).tolist()
        else:
            texts = [str(t) for t in model_input]
        return predictions_frame(self.predictor.labels, self.predictor.predict_proba(texts))


def predictions_frame(labels: list[str], probs) -> pd.DataFrame:
    df = pd.DataFrame({"label": [labels[i] for i in probs.argmax(axis=1)], "confidence": probs.max(axis=1)})
    for j, lab in enumerate(labels):
        df[f"prob_{lab}"] = probs[:, j]
    return df


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
    output = predictions_frame(predictor.labels, predictor.predict_proba(input_example))
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
