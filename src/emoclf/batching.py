"""Model calls for concurrent requests: a queue, oldest first, and ``calls`` threads that run the model.

``emoclf serve`` submits each request's preprocessed texts here and waits for its answer. Each worker thread takes
the oldest waiting request; more calls at once than the cores would only take turns on them, and a queue answers
in order where threads woken at random let some requests wait far longer (p99 128 against 55 ms at 32 clients:
docs/inference-speed.md, "Concurrent clients").

With ``share`` (adaptive batching), a thread also takes every request waiting behind the oldest (until the call
holds ``Predictor.batch_size`` texts); while requests the server has received are still on their way (their body
being read, not yet submitted: ``Batcher.expect``) it waits for them, at most ``max_wait_ms`` milliseconds. A lone
request is never held: nothing is on its way. The call's probabilities are split back by request. Only a model
that computes each text independently of its batch (``Predictor.batch_invariant``: fp32) shares a call between
requests; any other runs one call per request, so every request gets the answer it would get alone. A request
whose texts fail the model fails alone: a shared call that raises is run again request by request, and each gets
its own answer or its own error.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from emoclf.errors import ConfigError
from emoclf.inference import Predictor

log = logging.getLogger(__name__)


@dataclass
class _Job:
    clean: list[str]
    future: Future = field(default_factory=Future)


class Arrival:
    """A request on its way to the batcher; ``done`` (idempotent) once it is submitted or has failed."""

    def __init__(self, batcher: Batcher) -> None:
        self._batcher, self._open = batcher, True

    def done(self) -> None:
        with self._batcher._changed:
            self._settle()

    def _settle(self) -> None:
        """``done`` with the batcher's lock held."""
        if self._open:
            self._open = False
            self._batcher._on_the_way -= 1
            self._batcher._changed.notify_all()


class Batcher:
    """At most ``calls`` model calls at once for concurrent requests, in the order they came, shared between
    requests with ``share``; ``submit`` returns a future of ``Predictor.scores``."""

    def __init__(self, predictor: Predictor, max_wait_ms: float = 0.0, share: bool = True, calls: int = 1) -> None:
        if not max_wait_ms >= 0:
            raise ConfigError(f"max_wait_ms must be at least 0, got {max_wait_ms}")
        if calls < 1:
            raise ConfigError(f"calls must be at least 1, got {calls}")
        self.predictor, self.max_wait, self.calls = predictor, max_wait_ms / 1000, calls
        self.shared = share and predictor.batch_invariant
        self._jobs: collections.deque[_Job] = collections.deque()
        self._on_the_way = 0
        self._changed = threading.Condition()
        self._closed = False
        self._workers: list[threading.Thread] = []

    def expect(self) -> Arrival:
        """Count a request the server has started to receive; the worker waits for it while it is on its way."""
        with self._changed:
            self._on_the_way += 1
        return Arrival(self)

    def submit(self, clean: list[str], arrival: Arrival | None = None) -> Future:
        """The future (probabilities, truncated) of ``clean``, preprocessed texts none of which is empty."""
        job = _Job(list(clean))
        with self._changed:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._jobs.append(job)
            if arrival is not None:  # in the same step: the worker never waits for the request it already holds
                arrival._settle()
            if not self._workers:
                for _ in range(self.calls):
                    self._workers.append(threading.Thread(target=self._run, name="emoclf-batcher", daemon=True))
                    self._workers[-1].start()
            self._changed.notify_all()
        return job.future

    def close(self) -> None:
        """Stop the workers once the calls they hold are answered; later submits are refused."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        for worker in self._workers:
            worker.join()

    def _take(self) -> list[_Job] | None:
        """The requests of the next call, oldest first; None once closed and drained."""
        with self._changed:
            while not self._jobs:
                if self._closed:
                    return None
                self._changed.wait()
            taken = [self._jobs.popleft()]
            if not self.shared:
                return taken
            texts = len(taken[0].clean)
            deadline = time.monotonic() + self.max_wait
            while texts < self.predictor.batch_size:
                if self._jobs:
                    taken.append(self._jobs.popleft())
                    texts += len(taken[-1].clean)
                    continue
                left = deadline - time.monotonic()
                if self._on_the_way <= 0 or left <= 0 or self._closed:
                    break
                self._changed.wait(left)
            return taken

    def _run(self) -> None:
        while (jobs := self._take()) is not None:
            if len(jobs) == 1:
                self._answer(jobs[0])
                continue
            try:
                probs, cut = self.predictor.scores([t for job in jobs for t in job.clean])
            except Exception:  # noqa: BLE001 - one request's texts must not fail the others: each alone
                log.debug("a shared call of %d requests failed; answering them one by one", len(jobs), exc_info=True)
                for job in jobs:
                    self._answer(job)
                continue
            start = 0
            for job in jobs:
                end = start + len(job.clean)
                job.future.set_result((probs[start:end], cut[start:end]))
                start = end

    def _answer(self, job: _Job) -> None:
        try:
            job.future.set_result(self.predictor.scores(job.clean))
        except Exception as e:  # noqa: BLE001 - handed to the request that sent these texts
            job.future.set_exception(e)
