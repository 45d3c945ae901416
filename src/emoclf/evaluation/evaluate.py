"""One evaluation for every caller: training's test report, ``emoclf evaluate``, an export's
before-and-after, and the benchmarks.

``evaluate`` scores a ``Predictor`` exactly as ``emoclf predict`` would (its saved preprocessing,
temperature and class bias), on ``Labelled`` texts, and writes the full report when given a
folder. ``calibrate`` fits the temperature (and, on request, the class bias) on validation texts
and sets them on the predictor: calibrate on validation, then evaluate on test.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emoclf.calibration import (
    calibrated_probs,
    choose_temperature,
    expected_calibration_error,
    fit_class_bias,
    reliability_bins,
)
from emoclf.data import Labelled
from emoclf.evaluation.context import report_context
from emoclf.evaluation.metrics import classification_metrics
from emoclf.evaluation.report import write_report

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    metrics: dict
    probs: np.ndarray  # as predict gives them: saved temperature and class bias applied
    texts_per_second: float


def calibrate(predictor, validation: Labelled, temperature: bool = True, class_bias: bool = False) -> dict:
    """Fit the temperature (unless ``temperature`` is off: T = 1) and the class bias on validation texts,
    set them on ``predictor.meta``, and say what was fitted and kept."""
    logits = predictor.logits(validation.texts)
    meta = predictor.meta
    choice = choose_temperature(logits, validation.y_true) if temperature else None
    meta.temperature = choice.temperature if choice else 1.0
    meta.class_bias = fit_class_bias(logits, validation.y_true) if class_bias else None
    return choice.report() if choice else {}


def evaluate(predictor, data: Labelled, out_dir: str | Path | None = None, history: list[dict] | None = None,
             fitted: dict | None = None, progress: bool = False, context: dict | None = None,
             training: dict | None = None) -> Evaluation:
    """Metrics of ``predictor`` on ``data``; with ``out_dir``, every report file too (``write_report``).

    ``fitted`` (what ``calibrate`` returned) is recorded in the metrics' calibration entry; ``context``
    (``report_context``: model, data, run, settings) heads the report, by default from the model's own folder;
    ``training`` (how long the model trained: ``plan_steps`` and the steps taken) is kept as ``metrics["training"]``.
    """
    started = time.perf_counter()
    logits = predictor.logits(data.texts, progress=progress)
    rate = len(data.texts) / max(time.perf_counter() - started, 1e-9)
    meta = predictor.meta
    raw = calibrated_probs(logits)
    probs = calibrated_probs(logits, meta.temperature, meta.class_bias)
    metrics = classification_metrics(data.y_true, probs.argmax(axis=1), predictor.labels)
    metrics["calibration"] = {"temperature": meta.temperature, **(fitted or {}),
                              "ece_before": expected_calibration_error(raw, data.y_true),
                              "ece_after": expected_calibration_error(probs, data.y_true)}
    if meta.class_bias is not None:
        without = classification_metrics(data.y_true, raw.argmax(axis=1), predictor.labels)["macro_f1"]
        metrics["class_bias"] = {"bias": dict(zip(predictor.labels, meta.class_bias)), "macro_f1_without": without,
                                 "macro_f1_with": metrics["macro_f1"], "helped": metrics["macro_f1"] > without}
    metrics["calibration"]["bins"] = {"before": reliability_bins(raw, data.y_true),
                                      "after": reliability_bins(probs, data.y_true)}
    if training:
        metrics["training"] = training
    if out_dir is not None:
        write_report(out_dir, metrics, predictor.labels, data.texts, data.y_true, probs, history, raw_probs=raw,
                     context=context or report_context(meta, data))
    return Evaluation(metrics, probs, rate)
