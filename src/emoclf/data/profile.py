"""Data profile: split sizes, class balance, duplicates, leakage, lengths and a suggested max_length."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from emoclf.data import PreparedData

log = logging.getLogger(__name__)

PERCENTILES = (50, 90, 95, 99, 100)
PROFILE_JSON = "data_profile.json"
CLASS_PNG = "class_distribution.png"


def token_lengths(texts: list[str], tokenizer) -> np.ndarray:
    """Token counts including special tokens, from the fast tokenizer in one batched call."""
    # verbose=False: counting a long text's tokens is the point here, not a mistake to warn about.
    enc = tokenizer(list(texts), add_special_tokens=True, truncation=False, return_attention_mask=False, verbose=False)
    return np.fromiter((len(ids) for ids in enc["input_ids"]), dtype=np.int64, count=len(texts))


def suggest_max_length(lengths: np.ndarray, model_limit: int) -> int:
    """99th percentile of token lengths rounded up to a multiple of 8 (tensor-core friendly), capped."""
    p99 = float(np.percentile(lengths, 99))
    return int(min(model_limit, max(8, math.ceil(p99 / 8) * 8)))


def _percentiles(values: np.ndarray) -> dict[str, float]:
    return {f"p{p}": float(np.percentile(values, p)) for p in PERCENTILES}


def profile(data: PreparedData, tokenizer=None, model_limit: int = 512) -> dict:
    """The profile as a JSON-ready dict; token statistics need a tokenizer."""
    splits = data.splits
    train_counts = splits["train"]["label"].value_counts()
    counts = {s: {lab: int((df["label"] == lab).sum()) for lab in data.labels} for s, df in splits.items()}
    out = {
        "labels": data.labels,
        "rows": {s: len(df) for s, df in splits.items()},
        "class_counts": counts,
        "imbalance_ratio": float(train_counts.max() / train_counts.min()),
        "validation": data.report.to_dict(),
        "word_length": _percentiles(np.concatenate([df["text"].str.split().str.len().to_numpy() for df in splits.values()])),
    }
    if tokenizer is not None:
        lengths = np.concatenate([token_lengths(df["text"].tolist(), tokenizer) for df in splits.values()])
        max_length = suggest_max_length(lengths, model_limit)
        out["token_length"] = _percentiles(lengths)
        out["model_max_length"] = model_limit
        out["suggested_max_length"] = max_length
        out["texts_over_max_length"] = int((lengths > max_length).sum())
        out["texts_over_model_limit"] = int((lengths > model_limit).sum())
        if out["texts_over_model_limit"]:
            log.warning("%d text(s) are longer than the model's limit of %d tokens and will be truncated",
                        out["texts_over_model_limit"], model_limit)
    return out


def plot_class_distribution(prof: dict, path: Path) -> Path:
    labels = prof["labels"]
    splits = list(prof["class_counts"])
    width = 0.8 / len(splits)
    fig = Figure(figsize=(1.5 + 1.1 * len(labels), 3.8))
    ax = fig.subplots()
    x = np.arange(len(labels))
    for i, split in enumerate(splits):
        bars = ax.bar(x + i * width, [prof["class_counts"][split][lab] for lab in labels], width, label=split)
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(x + width * (len(splits) - 1) / 2, labels, rotation=30)
    ax.set(ylabel="texts", title=f"class distribution (train imbalance ratio {prof['imbalance_ratio']:.1f})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def write_profile(prof: dict, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / PROFILE_JSON).write_text(json.dumps(prof, indent=2), encoding="utf-8")
    return {"profile": out / PROFILE_JSON, "class_distribution": plot_class_distribution(prof, out / CLASS_PNG)}


def format_profile(prof: dict) -> str:
    """A human-readable summary for the terminal."""
    lines = [f"rows: {', '.join(f'{s} {n}' for s, n in prof['rows'].items())}"]
    width = max(len(lab) for lab in prof["labels"])
    lines.append(f"{'class':<{width}}  " + "  ".join(f"{s:>10}" for s in prof["class_counts"]))
    for lab in prof["labels"]:
        lines.append(f"{lab:<{width}}  " + "  ".join(f"{c[lab]:>10}" for c in prof["class_counts"].values()))
    v = prof["validation"]
    lines.append(f"imbalance ratio (train, largest/smallest): {prof['imbalance_ratio']:.2f}")
    lines.append(
        f"duplicates: {v['duplicates']} (dropped from train: {v['duplicates_dropped']}); "
        f"conflicting labels: {v['conflicting_duplicates']}"
    )
    lines.append(f"leakage (train texts also in): {v['leakage']} (dropped from train: {v['leakage_dropped']})")
    lines.append(f"empty texts dropped: {v['empty_texts_dropped']}")
    lines.append("word length: " + ", ".join(f"{k} {x:g}" for k, x in prof["word_length"].items()))
    if "token_length" in prof:
        lines.append("token length: " + ", ".join(f"{k} {x:g}" for k, x in prof["token_length"].items()))
        lines.append(
            f"suggested max_length: {prof['suggested_max_length']} (model limit {prof['model_max_length']}; "
            f"{prof['texts_over_max_length']} texts would be truncated, {prof['texts_over_model_limit']} exceed the model limit)"
        )
    return "\n".join(lines)
