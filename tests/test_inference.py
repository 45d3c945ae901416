"""Predictor: the rule for texts that preprocessing empties, no single string read letter by letter,
finite probabilities or an error, batch frames that keep every row in order, and MLflow URIs read
without creating a store."""

from __future__ import annotations

import os

import numpy as np
import pytest

from emoclf.errors import EmptyTextError, ModelLoadError, PredictionError
from emoclf.inference import Predictor
from emoclf.predictions import SKIPPED_EMPTY, prediction_columns, predictions_frame

LABELS = ["anger", "fear", "joy", "love", "sadness", "surprise"]
EMPTIED = ["😡😡😡", "!!! ...", "\u200b\u200b", "\x00\x00"]  # emoji, punctuation, zero-width, NUL


@pytest.fixture(scope="module")
def predictor(trained) -> Predictor:
    return Predictor.load(trained.model_dir)


@pytest.mark.parametrize("text", EMPTIED)
def test_texts_that_preprocessing_empties_get_no_label(predictor, text):
    with pytest.raises(EmptyTextError, match=r"^1 text\(s\) are empty after preprocessing \(texts\[1\] ") as info:
        predictor.predict(["i am happy", text])
    assert info.value.positions == [1]
    assert "only emoji, punctuation or invisible characters, which the model's preprocessing removes" in str(info.value)
    with pytest.raises(EmptyTextError):
        predictor.predict_proba([text])


def test_batch_frame_keeps_every_row_in_order_and_marks_the_skipped(predictor):
    texts = ["i am so happy", EMPTIED[0], "why would you do that", "", EMPTIED[3], "i feel scared"]
    frame = predictions_frame(predictor, texts)
    assert (
        list(frame.columns)
        == prediction_columns(LABELS)
        == ["predicted_label", "predicted_probability", *(f"prob_{lab}" for lab in LABELS), "skipped"]
    )
    assert len(frame) == len(texts)
    skipped = [1, 3, 4]
    assert frame["skipped"].tolist() == [SKIPPED_EMPTY if i in skipped else "" for i in range(len(texts))]
    assert (frame.loc[skipped, "predicted_label"] == "").all()
    assert frame.loc[skipped, [f"prob_{lab}" for lab in LABELS]].isna().all().all()
    kept = [0, 2, 5]
    expected = predictor.predict_proba([texts[i] for i in kept])
    np.testing.assert_allclose(frame.loc[kept, [f"prob_{lab}" for lab in LABELS]].to_numpy(), expected, atol=1e-6)
    assert frame.loc[kept, "predicted_label"].tolist() == [LABELS[i] for i in expected.argmax(axis=1)]
    np.testing.assert_allclose(frame.loc[kept, "predicted_probability"], expected.max(axis=1), atol=1e-6)


def test_a_text_typed_in_nfd_or_nfc_gets_one_prediction(predictor):
    nfc, nfd = "i feel na\u00efve and d\u00e9j\u00e0 vu", "i feel nai\u0308ve and de\u0301ja\u0300 vu"
    assert predictor.meta.preprocess["normalize_unicode"] is True  # saved with the model
    assert predictor.clean([nfc, nfd]) == [nfc, nfc]
    probs = predictor.predict_proba([nfc, nfd])
    assert (probs[0] == probs[1]).all()


def test_a_single_string_is_refused_not_read_letter_by_letter(predictor):
    with pytest.raises(
        TypeError,
        match=r"^texts must be a list of strings, got one str; pass \[text\] to classify "
        r"a single text$",
    ):
        predictor.predict("i feel great")
    with pytest.raises(TypeError, match=r"^texts\[1\] is int 5, not str$"):
        predictor.predict_proba(["fine", 5])


def test_non_finite_probabilities_are_an_error_never_a_result(predictor, monkeypatch):
    real = predictor.backend.__call__

    def broken(batch):
        out = real(batch)
        out[0, 0] = np.nan
        return out

    monkeypatch.setattr(type(predictor.backend), "__call__", lambda self, batch: broken(batch))
    with pytest.raises(PredictionError, match=r"^the model computed non-finite probabilities for 1 of 2 text\(s\)"):
        predictor.predict(["i am happy", "i am sad"])


def test_an_mlflow_uri_never_creates_an_empty_store(tmp_path, monkeypatch):
    from mlflow.tracking._tracking_service import utils

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(utils, "_tracking_uri", None)  # as in a fresh process: MLflow's default store
    with pytest.raises(
        ModelLoadError,
        match=f"^cannot load runs:/abc/model: no MLflow store at {tmp_path}/mlflow.db "
        r"\(tracking URI sqlite:///",
    ):
        Predictor.load("runs:/abc/model")
    assert os.listdir(tmp_path) == []


class CountingTokenizer:
    """The predictor's tokenizer, counting the texts it tokenises (padding is not tokenising)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.texts = tokenizer, []

    def __call__(self, texts, **kwargs):
        self.texts.append(list(texts))
        return self.tokenizer(texts, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def test_one_text_is_tokenised_once_and_only_a_text_at_the_limit_is_counted_again(predictor, monkeypatch):
    texts = ["i am so happy today", "i " * 100, "wow"]
    expected = predictor.predict_proba(texts)
    counting = CountingTokenizer(predictor.tokenizer)
    monkeypatch.setattr(predictor, "tokenizer", counting)
    predictions = predictor.predict(texts)
    np.testing.assert_allclose([list(p.probabilities.values()) for p in predictions], expected, atol=1e-6)
    assert [p.truncated for p in predictions] == [False, True, False]
    clean = predictor.clean(texts)
    assert counting.texts == [clean, [clean[1]]]  # the long one again, untruncated, to know it was cut
    counting.texts.clear()
    predictor.predict(texts[:1])
    assert counting.texts == [clean[:1]]


def test_only_fp32_answers_are_the_same_whatever_shares_the_batch(predictor, trained):
    assert predictor.batch_invariant
    assert not Predictor.load(trained.model_dir, precision="bf16").batch_invariant
