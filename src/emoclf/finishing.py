"""A saved model made ready to use: calibrated on validation, scored on the held-out split, given its model card,
then put in place.

``finish_model`` is the last step of every training (and of ``emoclf tune``'s best trial): the model is scored
where it was saved, from its folder, exactly as ``emoclf predict`` will load it, and the folder is renamed into
``output_dir/model`` only then, so a failure on the way leaves no model behind. Scoring itself is
``emoclf.evaluation``'s; this module decides what a finished model folder holds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from emoclf.calibration import choose_temperature, fit_class_bias
from emoclf.config import Config
from emoclf.data import Labelled, PreparedData
from emoclf.evaluation.context import log_evaluation, report_context
from emoclf.evaluation.evaluate import evaluate
from emoclf.evaluation.metrics import model_metrics
from emoclf.inference import Predictor
from emoclf.layout import MODEL_DIR, REPORT_DIR
from emoclf.modelcard import pick_examples, write_meta_and_card
from emoclf.modeling import replace_folder


def calibrate(
    predictor, validation: Labelled, temperature: bool = True, class_bias: bool = False, threshold: float | None = None
) -> dict:
    """Fit the temperature (unless ``temperature`` is off: T = 1), the class bias (single-label, on request) and
    the thresholds (multi-label: per label, unless ``threshold`` gives one for all) on validation texts, set them
    on ``predictor.meta``, and say what was fitted and kept."""
    logits = predictor.logits(validation.texts)
    meta, task, y = predictor.meta, predictor.task, validation.y_true
    choice = choose_temperature(logits, y, task) if temperature else None
    meta.temperature = choice.temperature if choice else 1.0
    meta.class_bias = fit_class_bias(logits, y) if class_bias else None
    fitted = choice.report() if choice else {}
    thresholds = task.thresholds(task.probabilities(logits, meta.temperature), y, threshold)
    if thresholds is not None:  # multi-label: each label's threshold, on the calibrated probabilities
        meta.thresholds = thresholds.values
        fitted["thresholds"] = thresholds.to_dict(predictor.labels)
    return fitted


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
        validation = Labelled.from_split(data.splits["validation"], "validation")
        fitted = calibrate(predictor, validation, t.calibrate, t.class_bias, t.threshold)
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
