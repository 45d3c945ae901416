"""Data profile: split sizes, class balance, duplicates, leakage, lengths and a suggested max_length."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from emoclf import console
from emoclf.data import PreparedData
from emoclf.data.issues import changed
from emoclf.data.labels import describe
from emoclf.layout import CLASS_PNG, PROFILE_JSON

log = logging.getLogger(__name__)

PERCENTILES = (50, 90, 95, 99, 100)
# Texts whose tokens are counted: all of them up to this many, else a seeded random sample this size. The
# percentiles of 200,000 texts are those of all within a token; counting 1.2 million took minutes and gigabytes.
TOKENS_COUNTED = 200_000
CHUNK = 10_000  # texts per tokenizer call: the memory of one chunk's ids at a time, and a bar's steps


def token_lengths(texts: list[str], tokenizer) -> np.ndarray:
    """Token counts including special tokens, from the fast tokenizer in batched calls of ``CHUNK`` texts."""
    out = np.empty(len(texts), dtype=np.int64)
    for start in console.progress(range(0, len(texts), CHUNK), desc="counting tokens", unit="chunk"):
        # verbose=False: counting a long text's tokens is the point here, not a mistake to warn about.
        enc = tokenizer(
            list(texts[start : start + CHUNK]),
            add_special_tokens=True,
            truncation=False,
            return_attention_mask=False,
            verbose=False,
        )
        out[start : start + len(enc["input_ids"])] = [len(ids) for ids in enc["input_ids"]]
    return out


def suggest_max_length(lengths: np.ndarray, model_limit: int) -> int:
    """99th percentile of token lengths rounded up to a multiple of 8 (tensor-core friendly), capped."""
    p99 = float(np.percentile(lengths, 99))
    return int(min(model_limit, max(8, math.ceil(p99 / 8) * 8)))


def _percentiles(values: np.ndarray) -> dict[str, float]:
    return {f"p{p}": float(np.percentile(values, p)) for p in PERCENTILES}


def profile(data: PreparedData, tokenizer=None, model_limit: int = 512) -> dict:
    """The profile as a JSON-ready dict; token statistics need a tokenizer."""
    splits = data.splits
    summary = data.summary("")
    train_counts = list(summary["class_counts"]["train"].values())
    out = {
        "task": data.task,
        "labels": data.labels,
        "rows": summary["texts"],
        "class_counts": summary["class_counts"],  # multi-label: the texts that have each label
        "imbalance_ratio": float(max(train_counts) / min(train_counts)) if min(train_counts) else float("inf"),
        "validation": data.report.to_dict(),
        "word_length": _percentiles(
            np.concatenate([df["text"].str.split().str.len().to_numpy() for df in splits.values()])
        ),
    }
    if data.multi_label:
        sizes = {s: df["label"].map(len) for s, df in splits.items()}
        out["labels_per_text"] = {s: round(float(n.mean()), 3) for s, n in sizes.items()}
        out["texts_with_several_labels"] = {s: int((n > 1).sum()) for s, n in sizes.items()}
        out["describe"] = describe(splits["train"]["label"], data.labels)
    if tokenizer is not None:
        texts = pd.concat([df["text"] for df in splits.values()], ignore_index=True)
        if len(texts) > TOKENS_COUNTED:
            texts = texts.sample(TOKENS_COUNTED, random_state=0)
        lengths = token_lengths(texts.tolist(), tokenizer)
        max_length = suggest_max_length(lengths, model_limit)
        out["token_length"] = _percentiles(lengths)
        out["token_length_texts"] = len(texts)  # the texts counted: all, or a random sample of TOKENS_COUNTED
        out["model_max_length"] = model_limit
        out["suggested_max_length"] = max_length
        out["texts_over_max_length"] = int((lengths > max_length).sum())
        out["texts_over_model_limit"] = int((lengths > model_limit).sum())
        if out["texts_over_model_limit"]:
            log.warning(
                "%d text(s)%s are longer than the model's limit of %d tokens and will be truncated",
                out["texts_over_model_limit"],
                _sampled(out),
                model_limit,
            )
    return out


def _sampled(prof: dict) -> str:
    """`` of a random sample of 200000 of the 1200000`` when the token counts are a sample's, else nothing."""
    total = sum(prof["rows"].values())
    counted = prof.get("token_length_texts", total)
    return "" if counted == total else f" of a random sample of {counted} of the {total}"


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


def text_table(header: list[str], rows: list[list]) -> list[str]:
    """Rows aligned under their header: the first column left, the others right."""
    cells = [[str(c) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
        for row in cells
    ]


def _count(value) -> str:
    """A count, or a total of counts per split with the non-zero ones named: ``3 (train 2, test 1)``."""
    if not isinstance(value, dict):
        return str(value)
    parts = ", ".join(f"{k} {n}" for k, n in value.items() if n)
    return f"{sum(value.values())} ({parts})" if parts else "0"


def format_profile(prof: dict) -> str:
    """The profile as tables for the terminal: texts per class and split, checks, lengths."""
    counts, splits = prof["class_counts"], list(prof["class_counts"])
    rows = [[lab, *(counts[s][lab] for s in splits)] for lab in prof["labels"]]
    lines = text_table(["class", *splits], [*rows, ["all", *(prof["rows"][s] for s in splits)]])
    v = prof["validation"]
    lines += ["", f"imbalance ratio (train, largest/smallest class): {prof['imbalance_ratio']:.2f}", ""]
    if "describe" in prof:
        lines[-1:-1] = [f"{prof['describe']} (train); class counts are the texts with each label"]
    lines += text_table(
        ["check", "found", "dropped"],
        [
            ["exact duplicates", _count(v["duplicates"]), f"{v['duplicates_dropped']} (train)"],
            ["same text, different labels", _count(v["conflicting_duplicates"]), "0"],
            [
                "train texts also in validation / test",
                _count({k: n for k, n in v["leakage"].items() if k in ("validation", "test")}),
                f"{v['leakage_dropped']} (train)",
            ],
            [
                "validation texts also in test",
                _count(v["leakage"].get("validation_test", 0)),
                str(v.get("validation_leakage_dropped", 0)),
            ],
            ["empty texts", _count(v["empty_texts_dropped"]), _count(v["empty_texts_dropped"])],
        ],
    )
    issues = v.get("label_issues")
    if issues:
        lines.append(
            f"label issues ({issues['file']}): {issues['listed']} listed, {changed(issues)}, "
            f"{issues['not_in_train']} not in the training split"
        )
    lengths = [["words", *(f"{x:g}" for x in prof["word_length"].values())]]
    if "token_length" in prof:
        lengths.append(["tokens", *(f"{x:g}" for x in prof["token_length"].values())])
    lines += ["", *text_table(["length", *prof["word_length"]], lengths)]
    if "token_length" in prof:
        lines.append(
            f"suggested max_length: {prof['suggested_max_length']} (model limit {prof['model_max_length']}; "
            f"{prof['texts_over_max_length']} texts{_sampled(prof)} would be truncated, "
            f"{prof['texts_over_model_limit']} exceed the model limit)"
        )
    return "\n".join(lines)
