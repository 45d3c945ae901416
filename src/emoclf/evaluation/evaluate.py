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

from emoclf.calibration import (
    calibrated_probs,
    choose_temperature,
    expected_calibration_error,
    fit_class_bias,
    reliability_bins,
)
from emoclf.checkpoints import MODEL_DIR, REPORT_DIR
from emoclf.config import Config, DataConfig
from emoclf.data import Labelled, PreparedData, load_labelled
from emoclf.evaluation.context import log_evaluation, report_context
from emoclf.evaluation.metrics import classification_metrics, group_metrics, model_metrics
from emoclf.evaluation.report import write_report
from emoclf.inference import Predictor
from emoclf.modelcard import pick_examples, write_meta_and_card
from emoclf.modeling import replace_folder

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """An evaluation's metrics (``classification_metrics`` plus calibration), its probabilities, and its speed."""

    metrics: dict
    probs: np.ndarray  # as predict gives them: saved temperature and class bias applied
    texts_per_second: float
    source: str = ""  # the data scored
    split: str = ""  # which of its rows: "test", or "all rows" of a file


def calibrate(predictor, validation: Labelled, temperature: bool = True, class_bias: bool = False) -> dict:
    """Fit the temperature (unless ``temperature`` is off: T = 1) and the class bias on validation texts,
    set them on ``predictor.meta``, and say what was fitted and kept."""
    logits = predictor.logits(validation.texts)
    meta = predictor.meta
    choice = choose_temperature(logits, validation.y_true) if temperature else None
    meta.temperature = choice.temperature if choice else 1.0
    meta.class_bias = fit_class_bias(logits, validation.y_true) if class_bias else None
    return choice.report() if choice else {}


def evaluate(
    predictor,
    data: Labelled,
    out_dir: str | Path | None = None,
    history: list[dict] | None = None,
    fitted: dict | None = None,
    progress: bool = False,
    context: dict | None = None,
    training: dict | None = None,
) -> Evaluation:
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
    if predictor.hierarchy is not None:  # flat metrics as they are, and the same predictions scored by group
        metrics["groups"] = group_metrics(metrics["confusion_matrix"], predictor.labels, predictor.hierarchy.groups)
    metrics["calibration"] = {
        "temperature": meta.temperature,
        **(fitted or {}),
        "ece_before": expected_calibration_error(raw, data.y_true),
        "ece_after": expected_calibration_error(probs, data.y_true),
    }
    if meta.class_bias is not None:
        without = classification_metrics(data.y_true, raw.argmax(axis=1), predictor.labels)["macro_f1"]
        metrics["class_bias"] = {
            "bias": dict(zip(predictor.labels, meta.class_bias)),
            "macro_f1_without": without,
            "macro_f1_with": metrics["macro_f1"],
            "helped": metrics["macro_f1"] > without,
        }
    metrics["calibration"]["bins"] = {
        "before": reliability_bins(raw, data.y_true),
        "after": reliability_bins(probs, data.y_true),
    }
    if training:
        metrics["training"] = training
    if out_dir is not None:
        write_report(
            out_dir,
            metrics,
            predictor.labels,
            data.texts,
            data.y_true,
            probs,
            history,
            raw_probs=raw,
            context=context or report_context(meta, data),
        )
    return Evaluation(metrics, probs, rate, data.source, data.split)


def finish_model(
    cfg: Config,
    data: PreparedData,
    staged: Path,
    history: list[dict] | None,
    holdout: str | None = "test",
    training: dict | None = None,
) -> dict:
    """Calibrate the model saved in ``staged`` on validation, score it on ``holdout`` as saved (the report),
    then put it in place as ``output_dir/model`` with its model card. ``training`` (the steps it trained)
    joins the metrics.

    It is evaluated where it was saved and renamed into place only then: a failure on the way
    leaves no model folder behind. Training finishes every model with it, and ``emoclf tune`` the
    model of its best trial.
    """
    t, out = cfg.train, Path(cfg.train.output_dir)
    try:
        predictor = Predictor.load(staged, batch_size=t.eval_batch_size)
        fitted = calibrate(
            predictor, Labelled.from_split(data.splits["validation"], "validation"), t.calibrate, t.class_bias
        )
        metrics, context = (
            {"calibration": {"temperature": predictor.meta.temperature, **fitted}, "training": training or {}},
            None,
        )
        if holdout is not None:
            scored = Labelled.from_split(data.splits[holdout], holdout)
            context = report_context(predictor.meta, scored, str(out / MODEL_DIR))
            metrics = evaluate(
                predictor, scored, out / REPORT_DIR, history, fitted, progress=True, context=context, training=training
            ).metrics
            predictor.meta.metrics = model_metrics(metrics)
            predictor.meta.examples = pick_examples(scored.texts, scored.y_true, predictor.labels)
        write_meta_and_card(staged, predictor.meta)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    replace_folder(staged, out / MODEL_DIR)
    if holdout is not None:
        log_evaluation(metrics, context)
    return metrics


def evaluate_model(
    model,
    data: str | Path | DataConfig | None = None,
    out_dir: str | Path | None = None,
    *,
    batch_size: int = 64,
    progress: bool = False,
    **data_settings,
) -> Evaluation:
    """Score a saved model on labelled data exactly as ``emoclf predict`` would predict it (``emoclf evaluate``).

    Args:
        model: a model folder, an ONNX export folder, an MLflow model URI (``runs:/...``, ``models:/...``), or a
            loaded ``Predictor``.
        data: a file (csv, tsv, jsonl, parquet, or txt with ``text;label`` lines), a folder with a test split,
            ``hf:<dataset id>``, or a ``DataConfig``; None scores every row of the embedded demo set. A folder is
            scored on its test split, a file on every row.
        out_dir: where to write the full report (metrics.json, report.html, figures); None writes nothing.
        batch_size: texts per forward pass.
        progress: show a progress bar over the batches.
        **data_settings: other ``DataConfig`` fields, e.g. ``text_column="sentence"``.

    Returns:
        An ``Evaluation``: ``metrics`` (accuracy, macro_f1, weighted_f1, per_class, confusion_matrix,
        calibration), ``probs``, ``texts_per_second``, ``source`` and ``split``.
    """
    predictor = model if isinstance(model, Predictor) else Predictor.load(model, batch_size=batch_size)
    cfg = (
        data if isinstance(data, DataConfig) else DataConfig(data=None if data is None else str(data), **data_settings)
    )
    labelled = load_labelled(cfg, predictor.labels, predictor.preprocessor)
    return evaluate(
        predictor,
        labelled,
        out_dir,
        progress=progress,
        context=report_context(predictor.meta, labelled, predictor.source),
    )
