"""One evaluation for every caller: training's test report, ``emoclf evaluate``, an export's
before-and-after, and the benchmarks.

``evaluate`` scores a ``Predictor`` exactly as ``emoclf predict`` would (its saved preprocessing,
temperature and class bias), on ``Labelled`` texts, and writes the full report when given a
folder. ``calibrate`` fits the temperature (and, on request, the class bias) on validation texts
and sets them on the predictor: calibrate on validation, then evaluate on test. ``finish_model``
does both for a freshly saved model folder and only then puts it in place.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emoclf.calibration import calibrated_probs, choose_temperature, expected_calibration_error, fit_class_bias
from emoclf.checkpoints import MODEL_DIR, REPORT_DIR
from emoclf.config import Config
from emoclf.data import Labelled, PreparedData
from emoclf.evaluation.metrics import classification_metrics
from emoclf.evaluation.report import write_report
from emoclf.inference import Predictor
from emoclf.modeling import replace_folder, write_meta

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
             fitted: dict | None = None, progress: bool = False, context: dict | None = None) -> Evaluation:
    """Metrics of ``predictor`` on ``data``; with ``out_dir``, every report file too (``write_report``).

    ``fitted`` (what ``calibrate`` returned) is recorded in the metrics' calibration entry; ``context``
    (how the model was trained, for example) is added to the metrics as it is.
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
    metrics.update(context or {})
    if out_dir is not None:
        write_report(out_dir, metrics, predictor.labels, data.texts, data.y_true, probs, history, raw_probs=raw)
    return Evaluation(metrics, probs, rate)


def finish_model(cfg: Config, data: PreparedData, staged: Path, history: list[dict] | None,
                 holdout: str | None = "test", context: dict | None = None) -> dict:
    """Calibrate the model saved in ``staged`` on validation, score it on ``holdout`` as saved (the report),
    then put it in place as ``output_dir/model``. ``context`` (how it was trained) joins the metrics.

    It is evaluated where it was saved and renamed into place only then: a failure on the way
    leaves no model folder behind. Training finishes every model with it, and ``emoclf tune`` the
    model of its best trial.
    """
    t, out = cfg.train, Path(cfg.train.output_dir)
    try:
        predictor = Predictor.load(staged, batch_size=t.eval_batch_size)
        fitted = calibrate(predictor, Labelled.from_split(data.splits["validation"], "validation"), t.calibrate,
                           t.class_bias)
        metrics = {"calibration": {"temperature": predictor.meta.temperature, **fitted}, **(context or {})}
        if holdout is not None:
            metrics = evaluate(predictor, Labelled.from_split(data.splits[holdout], holdout), out / REPORT_DIR,
                               history, fitted, progress=True, context=context).metrics
            predictor.meta.metrics = {k: metrics[k] for k in ("accuracy", "macro_f1", "weighted_f1")}
        write_meta(staged, predictor.meta)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    replace_folder(staged, out / MODEL_DIR)
    if holdout is not None:
        cal = metrics["calibration"]
        log.info("temperature %.3f: %s ECE %.4f -> %.4f", cal["temperature"], holdout, cal["ece_before"],
                 cal["ece_after"])
        log.info("%s: accuracy %.4f, macro-F1 %.4f, weighted F1 %.4f on %d texts", holdout,
                 metrics["accuracy"], metrics["macro_f1"], metrics["weighted_f1"], metrics["n"])
    return metrics
