"""What a report says about itself: which model, data, run, date and settings its figures describe,
and a warning when a split is too small for them to mean much.

Everything comes from the model folder's ``emoclf.json`` (written at training time) and the data
being scored, so ``emoclf evaluate`` on any data gets the same header as the training's own report.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone

from emoclf.layout import __version__
from emoclf.naming import source_name

log = logging.getLogger(__name__)

Z95 = 1.96
MAX_HALF_INTERVAL = 0.03  # accuracy known to within ±3 points, 95% of the time
MIN_CLASS_TEXTS = 30  # fewer, and one text moves the class's recall by more than 3 points
MIN_VALIDATION_TEXTS = 300


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def settings(meta) -> dict[str, str]:
    """The settings that shape a model's scores, as a reader names them."""
    t = meta.config.get("train", {})
    resolved = meta.training or {}
    imbalance = resolved.get("imbalance_strategy", t.get("imbalance"))
    if imbalance and t.get("imbalance") == "auto":
        imbalance = f"{imbalance} (auto)"
    shown = {
        "epochs (at most)": None if t.get("max_steps") else t.get("epochs"),
        "optimizer steps": resolved.get("optimizer_steps", t.get("max_steps") or None),
        "batch size": t.get("batch_size"),
        "learning rate": t.get("learning_rate"),
        "imbalance": imbalance,
        "loss": resolved.get("loss"),
        "max_length": meta.max_length,
        "precision": resolved.get("precision", t.get("precision")),
        "seed": t.get("seed"),
        "temperature": f"{meta.temperature:.3f}",
        "class bias": "yes" if meta.class_bias else "no",
    }
    return {k: f"{v:g}" if isinstance(v, float) else str(v) for k, v in shown.items() if v is not None}


def report_context(meta, data, model: str | None = None) -> dict:
    """The header of a report on ``data`` (``Labelled``) by the model described by ``meta``."""
    return {
        "model": meta.base_model,
        "model_name": meta.name,
        "model_source": source_name(model) if model else None,
        "trained_at": meta.trained_at,
        "run_id": meta.run_id,
        "trained_with": meta.emoclf_version,
        "training_data": meta.data or {},
        "evaluated_on": {"source": source_name(data.source), "split": data.split, "texts": len(data.texts)},
        "settings": settings(meta),
        "written_at": now(),
        "emoclf_version": __version__,
    }


def data_origin(data: dict) -> str:
    """Where each split's texts came from, e.g. ``train 14,388 and validation 1,600 (carved out) from
    emotion/train.txt; test 2,000 from emotion/val.txt``: splits of one file share a clause."""
    texts = data.get("texts", {})
    if not data.get("splits"):  # recorded before each split's origin was
        return f"{data.get('source')}: " + ", ".join(f"{k} {v:,}" for k, v in texts.items())
    by_file: dict[str, list[str]] = {}
    for split, origin in data["splits"].items():
        carved = " (carved out)" if origin.get("carved") else ""
        by_file.setdefault(origin["from"], []).append(f"{split} {texts.get(split, 0):,}{carved}")
    return "; ".join(
        f"{', '.join(parts[:-1])} and {parts[-1]} from {where}" if len(parts) > 1 else f"{parts[0]} from {where}"
        for where, parts in by_file.items()
    )


def accuracy_interval(accuracy: float, n: int) -> float:
    """Half-width of the 95% Wilson interval of an accuracy measured on ``n`` texts."""
    spread = Z95 * math.sqrt(accuracy * (1 - accuracy) / n + Z95**2 / (4 * n * n))
    return spread / (1 + Z95**2 / n)


def split_warnings(metrics: dict, context: dict | None) -> list[str]:
    """Why the figures of a report should be read with care, one sentence per reason (none: they hold)."""
    out = []
    n = metrics["n"]
    split = (context or {}).get("evaluated_on", {}).get("split", "evaluated")
    support = {lab: r["support"] for lab, r in metrics["per_class"].items() if r["support"]}
    smallest = min(support, key=support.get) if support else None
    half = accuracy_interval(metrics["accuracy"], n) if n else 1.0
    if half > MAX_HALF_INTERVAL or (smallest and support[smallest] < MIN_CLASS_TEXTS):
        out.append(
            f"only {n} {split} texts (fewest: {support.get(smallest, 0)} {smallest}): accuracy is known to "
            f"±{half:.2f} (95% interval) and one text moves a class's recall by up to "
            f"{1 / max(support.get(smallest, 1), 1):.2f}; smaller differences between models are noise"
        )
    val = (context or {}).get("training_data", {}).get("texts", {}).get("validation")
    if val is not None and val < MIN_VALIDATION_TEXTS:
        out.append(
            f"only {val} validation texts chose the best epoch and fitted the temperature: the "
            "calibration figures are rough"
        )
    return out


def log_evaluation(metrics: dict, context: dict | None) -> None:
    """What calibration did (in the log file), and on the terminal what the report's header warns of."""
    cal = metrics["calibration"]
    log.debug("temperature %.3f: test ECE %.4f -> %.4f", cal["temperature"], cal["ece_before"], cal["ece_after"])
    for warning in split_warnings(metrics, context):
        log.warning("%s (the report says so too)", warning)
