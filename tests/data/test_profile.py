"""Data profile: max_length suggestion, the profile dict, and the files write_profile leaves."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from emoclf.config import DataConfig
from emoclf.data import PreparedData, load_data
from emoclf.data.profile import format_profile, profile, suggest_max_length, write_profile
from emoclf.data.validate import DataReport
from emoclf.layout import CLASS_PNG, PROFILE_JSON

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("lengths", "limit", "expected"),
    [
        (np.arange(1, 101), 512, 104),  # p99 = 99.01 -> 104
        (np.full(50, 16), 512, 16),  # already a multiple of 8: unchanged
        (np.full(50, 17), 512, 24),
        (np.array([3, 4, 5]), 512, 8),  # never below 8
        (np.arange(1, 101), 64, 64),  # capped by the model limit
        (np.arange(1, 1001), 510, 510),  # cap need not be a multiple of 8
        (np.array([10] * 99 + [1000]), 512, 24),  # one outlier moves p99 only by interpolation
    ],
)
def test_suggest_max_length(lengths, limit, expected):
    assert suggest_max_length(lengths, limit) == expected
    assert isinstance(suggest_max_length(lengths, limit), int)


def test_suggest_max_length_rounds_percentile_up():
    lengths = np.array([20] * 98 + [41, 41])
    p99 = float(np.percentile(lengths, 99))
    assert 40 < p99 <= 41
    assert suggest_max_length(lengths, 512) == 48


def _prepared() -> PreparedData:
    def frame(rows):
        df = pd.DataFrame(rows, columns=["text", "label"])
        df["row"] = range(1, len(df) + 1)
        return df

    splits = {
        "train": frame([("a b c", "joy")] * 6 + [("d e", "anger")] * 2 + [("f", "fear")] * 3),
        "validation": frame([("a", "joy"), ("b c", "anger"), ("x y z w", "fear")]),
        "test": frame([("one two", "joy"), ("three", "joy")]),
    }
    report = DataReport(rows_read={"train": 12, "validation": 3, "test": 2}, duplicates_dropped=1)
    return PreparedData(splits, ["anger", "fear", "joy"], report)


def test_profile_without_tokenizer():
    prof = profile(_prepared())
    assert prof["labels"] == ["anger", "fear", "joy"]
    assert prof["rows"] == {"train": 11, "validation": 3, "test": 2}
    assert prof["class_counts"] == {
        "train": {"anger": 2, "fear": 3, "joy": 6},
        "validation": {"anger": 1, "fear": 1, "joy": 1},
        "test": {"anger": 0, "fear": 0, "joy": 2},
    }
    assert prof["imbalance_ratio"] == 3.0
    assert prof["validation"]["duplicates_dropped"] == 1
    assert prof["word_length"]["p100"] == 4.0 and prof["word_length"]["p50"] == 2.0
    assert set(prof["word_length"]) == {"p50", "p90", "p95", "p99", "p100"}
    assert "token_length" not in prof and "suggested_max_length" not in prof
    json.dumps(prof)  # JSON-ready


def test_profile_with_tokenizer_stub():
    class WordTokenizer:  # counts words plus [CLS]/[SEP], like a fast tokenizer's input_ids
        def __call__(self, texts, **kw):
            assert kw["add_special_tokens"] is True and kw["truncation"] is False
            return {"input_ids": [[0] * (len(t.split()) + 2) for t in texts]}

    prof = profile(_prepared(), WordTokenizer(), model_limit=5)
    assert prof["token_length"]["p100"] == 6.0
    assert prof["model_max_length"] == 5 and prof["suggested_max_length"] == 5
    assert prof["texts_over_max_length"] == 1 and prof["texts_over_model_limit"] == 1


def test_profile_of_loaded_demo():
    data = load_data(DataConfig())
    prof = profile(data)
    assert prof["rows"] == {k: len(v) for k, v in data.splits.items()}
    assert sum(prof["class_counts"]["train"].values()) == prof["rows"]["train"]
    counts = prof["class_counts"]["train"].values()
    assert prof["imbalance_ratio"] == pytest.approx(max(counts) / min(counts))


def test_write_profile_json_and_png(tmp_path):
    prof = profile(_prepared())
    paths = write_profile(prof, tmp_path / "out")
    assert paths == {"profile": tmp_path / "out" / PROFILE_JSON, "class_distribution": tmp_path / "out" / CLASS_PNG}
    assert json.loads(paths["profile"].read_text(encoding="utf-8")) == prof
    png = paths["class_distribution"].read_bytes()
    assert png[:8] == PNG_MAGIC and len(png) > 1000


def test_format_profile_prints_tables():
    lines = format_profile(profile(_prepared())).splitlines()
    assert lines[:5] == [
        "class  train  validation  test",
        "anger      2           1     0",
        "fear       3           1     0",
        "joy        6           1     2",
        "all       11           3     2",
    ]
    assert "imbalance ratio (train, largest/smallest class): 3.00" in lines
    assert "exact duplicates                           0  1 (train)" in lines
    assert lines[-2:] == ["length  p50  p90   p95   p99  p100", "words     2    3  3.25  3.85     4"]


def test_texts_far_longer_than_the_model_limit_are_counted_and_warned(tiny_model, caplog):
    import logging

    import pandas as pd
    from transformers import AutoTokenizer

    from emoclf.data import PreparedData
    from emoclf.data.validate import DataReport

    tok = AutoTokenizer.from_pretrained(tiny_model)
    long_text = " ".join(["happy"] * 500)
    frames = {
        s: pd.DataFrame({"text": ["i feel happy", long_text, "i am sad"], "label": ["joy", "joy", "sadness"]})
        for s in ("train", "validation", "test")
    }
    data = PreparedData(frames, ["joy", "sadness"], DataReport())
    with caplog.at_level(logging.WARNING, logger="emoclf.data.profile"):
        prof = profile(data, tok, model_limit=128)
    assert prof["texts_over_model_limit"] == 3  # the long text in each of the three splits
    assert prof["token_length"]["p100"] == 502  # 500 words + [CLS] + [SEP]
    assert prof["suggested_max_length"] == 128  # capped by the model
    assert "3 text(s) are longer than the model's limit of 128 tokens and will be truncated" in caplog.text


def test_tokens_are_counted_in_chunks_and_on_a_stated_sample_of_many_texts(monkeypatch):
    import emoclf.data.profile as profile_module

    class WordTokenizer:
        calls = []

        def __call__(self, texts, **kw):
            self.calls.append(len(texts))
            return {"input_ids": [[0] * (len(t.split()) + 2) for t in texts]}

    tokenizer = WordTokenizer()
    monkeypatch.setattr(profile_module, "CHUNK", 4)
    whole = profile(_prepared(), tokenizer, model_limit=5)
    assert tokenizer.calls == [4, 4, 4, 4] and whole["token_length_texts"] == 16  # every text, 4 at a time
    assert "texts would be truncated" in format_profile(whole)
    monkeypatch.setattr(profile_module, "TOKENS_COUNTED", 10)
    sampled = profile(_prepared(), tokenizer, model_limit=5)
    assert sampled["token_length_texts"] == 10 and sampled["rows"] == whole["rows"]
    assert "texts of a random sample of 10 of the 16 would be truncated" in format_profile(sampled)
    assert sampled == profile(_prepared(), tokenizer, model_limit=5)  # the same sample every time
