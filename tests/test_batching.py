"""Adaptive batching: shared model calls give each request its own answer, a lone request is not held, a request
waits for others at most its setting, and a request whose texts fail the model fails alone."""

from __future__ import annotations

import time

import numpy as np
import pytest

from emoclf.batching import Batcher
from emoclf.errors import ConfigError, PredictionError
from emoclf.inference import Predictor

TEXTS = ["i am so happy today", "why would you do that to me", "i feel scared and alone tonight", "wow"]


@pytest.fixture(scope="module")
def predictor(trained) -> Predictor:
    return Predictor.load(trained.model_dir)


class Spy:
    """Records the texts of every model call; a call holding ``poison`` raises as a broken model would."""

    def __init__(self, predictor: Predictor, poison: str | None = None) -> None:
        self.scores, self.poison, self.calls = predictor.scores, poison, []

    def __call__(self, clean: list[str], progress: bool = False):
        self.calls.append(list(clean))
        if self.poison in clean:
            raise PredictionError("the model computed non-finite probabilities for 1 of 1 text(s)")
        return self.scores(clean, progress)


def test_a_lone_request_is_not_held(predictor):
    batcher = Batcher(predictor, max_wait_ms=5_000)
    started = time.perf_counter()
    probs, cut = batcher.submit(predictor.clean(TEXTS[:1]), batcher.expect()).result(timeout=30)
    assert time.perf_counter() - started < 2.5  # nothing else on its way: answered at once, not after 5 s
    expected, expected_cut = predictor.scores(predictor.clean(TEXTS[:1]))
    np.testing.assert_array_equal(probs, expected)
    assert cut.tolist() == expected_cut.tolist() == [False]
    batcher.close()


def test_a_request_waits_for_one_on_its_way_at_most_its_setting(predictor):
    batcher = Batcher(predictor, max_wait_ms=300)
    batcher.submit(predictor.clean(TEXTS[:1])).result(timeout=30)  # warm: the worker thread is started
    started = time.perf_counter()
    predictor.scores(predictor.clean(TEXTS[:1]))
    alone = time.perf_counter() - started
    batcher.expect()  # a request whose body never comes
    started = time.perf_counter()
    batcher.submit(predictor.clean(TEXTS[:1]), batcher.expect()).result(timeout=30)
    waited = time.perf_counter() - started
    assert 0.29 <= waited <= 0.3 + alone + 0.5  # waits for it, but only its 300 ms (0.5 s: the machine's noise)
    batcher.close()


def test_requests_on_their_way_share_one_call_and_get_their_own_rows(predictor, monkeypatch):
    spy = Spy(predictor)
    monkeypatch.setattr(predictor, "scores", spy)
    batcher = Batcher(predictor, max_wait_ms=5_000)
    arrivals = [batcher.expect() for _ in range(3)]
    requests = [TEXTS[:2], TEXTS[2:3], ["i " * 100, TEXTS[3]]]
    futures = [batcher.submit(predictor.clean(r), a) for r, a in zip(requests, arrivals)]
    answers = [f.result(timeout=30) for f in futures]
    assert len(spy.calls) == 1 and len(spy.calls[0]) == 5  # one model call for the three requests
    monkeypatch.undo()
    for request, (probs, cut) in zip(requests, answers):
        expected, expected_cut = predictor.scores(predictor.clean(request))
        np.testing.assert_allclose(probs, expected, atol=1e-5)
        assert cut.tolist() == expected_cut.tolist()
    assert answers[2][1].tolist() == [True, False]  # the long text was cut, in its own request's rows
    batcher.close()


def test_a_request_whose_texts_fail_the_model_fails_alone(predictor, monkeypatch):
    poison = predictor.clean(["this text breaks the model"])[0]
    spy = Spy(predictor, poison)
    monkeypatch.setattr(predictor, "scores", spy)
    batcher = Batcher(predictor, max_wait_ms=5_000)
    arrivals = [batcher.expect() for _ in range(3)]
    requests = [predictor.clean(TEXTS[:2]), [poison], predictor.clean(TEXTS[2:3])]
    futures = [batcher.submit(r, a) for r, a in zip(requests, arrivals)]
    with pytest.raises(PredictionError, match="non-finite probabilities"):
        futures[1].result(timeout=30)
    assert [len(f.result(timeout=30)[0]) for f in (futures[0], futures[2])] == [2, 1]
    # The shared call failed, then each request ran alone: only the broken one's call failed.
    assert spy.calls == [requests[0] + requests[1] + requests[2], *requests]
    batcher.close()


def test_a_model_whose_answers_depend_on_the_batch_runs_each_request_alone(trained, monkeypatch):
    bf16 = Predictor.load(trained.model_dir, precision="bf16")
    spy = Spy(bf16)
    monkeypatch.setattr(bf16, "scores", spy)
    batcher = Batcher(bf16, max_wait_ms=5_000)
    arrivals = [batcher.expect() for _ in range(3)]
    futures = [batcher.submit(bf16.clean([t]), a) for t, a in zip(TEXTS, arrivals)]
    for f in futures:
        f.result(timeout=30)
    assert spy.calls == [bf16.clean([t]) for t in TEXTS[:3]]
    batcher.close()


def test_settings_are_checked(predictor):
    with pytest.raises(ConfigError, match="max_wait_ms must be at least 0, got -1"):
        Batcher(predictor, max_wait_ms=-1)
    batcher = Batcher(predictor, max_wait_ms=0)
    batcher.close()
    with pytest.raises(RuntimeError, match="the batcher is closed"):
        batcher.submit(["wow"])
