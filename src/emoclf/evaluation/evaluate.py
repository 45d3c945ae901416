"""One evaluation for every caller: training's test report, ``emoclf evaluate``, an export's
before-and-after, and the benchmarks.

``evaluate`` scores a ``Predictor`` exactly as ``emoclf predict`` would (its saved preprocessing,
temperature and class bias), on ``Labelled`` texts, and writes the full report when given a
folder. It only scores: fitting the temperature on validation and finishing a saved model are
``emoclf.finishing``'s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emoclf.calibration import expected_calibration_error, reliability_bins
from emoclf.config import DataConfig
from emoclf.data import Labelled, load_labelled
from emoclf.evaluation import multilabel
from emoclf.evaluation.context import report_context
from emoclf.evaluation.metrics import classification_metrics, group_metrics
from emoclf.evaluation.report import write_report
from emoclf.inference import Predictor


@dataclass
class Evaluation:
    """An evaluation's metrics (``classification_metrics`` plus calibration), its probabilities, and its speed."""

    metrics: dict
    probs: np.ndarray  # as predict gives them: saved temperature and class bias applied
    texts_per_second: float
    source: str = ""  # the data scored
    split: str = ""  # which of its rows: "test", or "all rows" of a file


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
    meta, task = predictor.meta, predictor.task
    raw = task.probabilities(logits)
    probs = task.probabilities(logits, meta.temperature, meta.class_bias)
    if task.multi_label:
        metrics = _multilabel(predictor, data, raw, probs, out_dir, history, fitted, context, training)
        return Evaluation(metrics, probs, rate, data.source, data.split)
    metrics = classification_metrics(data.y_true, probs.argmax(axis=1), predictor.labels)
    if predictor.hierarchy is not None:  # flat metrics as they are, and the same predictions scored by group
        metrics["groups"] = group_metrics(metrics["confusion_matrix"], predictor.labels, predictor.hierarchy.groups)
    metrics["calibration"] = _calibration(fitted, meta.temperature, raw, probs, data.y_true, task)
    if meta.class_bias is not None:
        without = classification_metrics(data.y_true, raw.argmax(axis=1), predictor.labels)["macro_f1"]
        metrics["class_bias"] = {
            "bias": dict(zip(predictor.labels, meta.class_bias)),
            "macro_f1_without": without,
            "macro_f1_with": metrics["macro_f1"],
            "helped": metrics["macro_f1"] > without,
        }
    metrics["calibration"]["bins"] = _bins(raw, probs, data.y_true, task)
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


def _calibration(fitted: dict | None, temperature: float, raw, probs, y, task) -> dict:
    return {
        "temperature": temperature,
        **(fitted or {}),
        "ece_before": expected_calibration_error(raw, y, task=task),
        "ece_after": expected_calibration_error(probs, y, task=task),
    }


def _bins(raw, probs, y, task) -> dict:
    return {"before": reliability_bins(raw, y, task=task), "after": reliability_bins(probs, y, task=task)}


def _multilabel(predictor, data: Labelled, raw, probs, out_dir, history, fitted, context, training) -> dict:
    """``evaluate`` of a multi-label model: ``multilabel.multilabel_metrics``, the groups when it has a hierarchy,
    calibration over all (text, label) pairs and per label, and ``multilabel.write_report``."""
    meta, task, labels, y = predictor.meta, predictor.task, predictor.labels, data.y_true
    decided = predictor.decide(probs)
    metrics = multilabel.multilabel_metrics(y, decided, probs, labels, meta.thresholds)
    if predictor.hierarchy is not None:
        metrics["groups"] = multilabel.group_metrics(y, decided, labels, predictor.hierarchy.groups)
    metrics["calibration"] = _calibration(fitted, meta.temperature, raw, probs, y, task)
    metrics["calibration"]["per_label_ece"] = {
        lab: expected_calibration_error(probs[:, [k]], y[:, [k]], task=task) for k, lab in enumerate(labels)
    }
    metrics["calibration"]["bins"] = _bins(raw, probs, y, task)
    if training:
        metrics["training"] = training
    if out_dir is not None:
        multilabel.write_report(
            out_dir,
            metrics,
            labels,
            data.texts,
            y,
            probs,
            decided,
            history,
            raw_probs=raw,
            context=context or report_context(meta, data),
            task=task,
        )
    return metrics


def evaluate_model(
    model: str | Path | Predictor,
    data: str | Path | DataConfig | None = None,
    out_dir: str | Path | None = None,
    *,
    batch_size: int = 64,
    progress: bool = False,
    **data_settings: Any,
) -> Evaluation:
    """Score a saved model on labelled data exactly as ``emoclf predict`` would predict it (``emoclf evaluate``).

    Args:
        model: a model folder, an ONNX export folder, an MLflow model URI (``runs:/...``, ``models:/...``), or a
            loaded ``Predictor``.
        data: a file (csv, tsv, jsonl, parquet, or txt with ``text;label`` lines), a folder with a test split,
            ``hf:<dataset id>``, or a ``DataConfig``; None scores every row of the embedded demo set. A folder is
            scored on its test split, a file on every row. Its labels are mapped by the model's label map (a model
            trained with ``--label-map``), or by ``label_map`` when given.
        out_dir: where to write the full report (metrics.json, report.html, figures); None writes nothing.
        batch_size: texts per forward pass.
        progress: show a progress bar over the batches.
        **data_settings: other ``DataConfig`` fields, e.g. ``text_column="sentence"``.

    Returns:
        Evaluation: ``metrics`` (accuracy, macro_f1, weighted_f1, per_class, confusion_matrix,
        calibration), ``probs``, ``texts_per_second``, ``source`` and ``split``.
    """
    predictor = model if isinstance(model, Predictor) else Predictor.load(model, batch_size=batch_size)
    cfg = (
        data if isinstance(data, DataConfig) else DataConfig(data=None if data is None else str(data), **data_settings)
    )
    meta = predictor.meta
    labelled = load_labelled(
        cfg,
        predictor.labels,
        predictor.preprocessor,
        predictor.task.name,
        meta.allow_no_label,
        meta.data.get("label_map"),
    )
    return evaluate(
        predictor,
        labelled,
        out_dir,
        progress=progress,
        context=report_context(predictor.meta, labelled, predictor.source),
    )
