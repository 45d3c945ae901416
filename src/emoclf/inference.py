"""Predict from a saved model folder or an MLflow model URI, applying the saved preprocessing.

``Predictor.load(source)`` accepts a bundle folder (``emoclf train`` output), or ``runs:/...`` /
``models:/...`` URIs of a logged emoclf model. Texts are sorted by length and batched so that
padding stays small; results come back in input order.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from emoclf.errors import ModelLoadError
from emoclf.modeling import META_FILE, BundleMeta, load_bundle
from emoclf.preprocess import Preprocessor

log = logging.getLogger(__name__)

MLFLOW_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")


def resolve_source(source: str | Path) -> Path:
    """A local bundle folder for ``source``, downloading MLflow model URIs first."""
    text = str(source)
    if not text.startswith(MLFLOW_SCHEMES):
        return Path(source)
    import mlflow

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=text, dst_path=tempfile.mkdtemp(prefix="emoclf-")))
    except Exception as e:  # MLflow raises its own and HTTP errors alike
        raise ModelLoadError(f"cannot download {text} from MLflow ({mlflow.get_tracking_uri()}): {e}") from None
    hits = sorted(local.rglob(META_FILE))
    if not hits:
        raise ModelLoadError(f"{text}: no emoclf model inside ({META_FILE} not found)")
    return hits[0].parent


@dataclass
class Prediction:
    label: str
    confidence: float
    probabilities: dict[str, float]


class Predictor:
    """Batch prediction with the preprocessing, labels and temperature saved with the model."""

    def __init__(self, model, tokenizer, meta: BundleMeta, batch_size: int = 64) -> None:
        self.model, self.tokenizer, self.meta = model, tokenizer, meta
        self.labels = meta.labels
        self.preprocessor = Preprocessor.from_dict(meta.preprocess)
        self.batch_size = batch_size

    @classmethod
    def load(cls, source: str | Path, batch_size: int = 64) -> Predictor:
        model, tokenizer, meta = load_bundle(resolve_source(source))
        return cls(model, tokenizer, meta, batch_size)

    def logits(self, texts: list[str], progress: bool = False) -> np.ndarray:
        clean = self.preprocessor.batch(texts)
        # Longest first: the biggest batch allocates first, and similar lengths share a batch.
        order = np.argsort([-len(t) for t in clean], kind="stable")
        out = np.zeros((len(clean), len(self.labels)), dtype=np.float32)
        starts = range(0, len(clean), self.batch_size)
        with torch.inference_mode():
            for start in tqdm(starts, desc="predict", unit="batch", disable=not progress or len(starts) < 2):
                idx = order[start:start + self.batch_size]
                enc = self.tokenizer(
                    [clean[i] for i in idx], padding=True, truncation=True,
                    max_length=self.meta.max_length, return_tensors="pt",
                ).to(self.model.device)
                out[idx] = self.model(**enc).logits.float().cpu().numpy()
        return out

    def predict_proba(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Class probabilities (temperature-scaled softmax), rows in input order."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return softmax(self.logits(list(texts), progress) / self.meta.temperature)

    def predict(self, texts: list[str], progress: bool = False) -> list[Prediction]:
        probs = self.predict_proba(texts, progress)
        return [
            Prediction(self.labels[int(p.argmax())], float(p.max()), dict(zip(self.labels, map(float, p))))
            for p in probs
        ]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
