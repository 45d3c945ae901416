"""HTTP API over a ``Predictor``: ``create_app`` builds the FastAPI app, ``serve`` runs it with uvicorn.

``POST /predict`` with ``{"texts": [...]}`` returns, per text, the label, its probability, every class probability
(and, from a model trained with a hierarchy, the label's group and its probability) and whether the text was longer
than the model reads (``truncated``: only its start was classified); a text that preprocessing leaves empty (emoji
or punctuation only) gets ``skipped``, the reason, instead, and the others their labels. ``GET /health``; ``GET
/metadata`` (model name, labels, preprocessing, training metrics, example texts); ``GET /`` a page to type texts (or
click examples) and see labels and probabilities, linking ``/card`` (the model card) and ``/report/`` (the
training's report) when the model folder has them; OpenAPI docs at ``/docs`` and ``/redoc``. Every page works
offline and asks nothing of any other server: the page is self-contained, and the docs' scripts and styles are
served from the ``fastapi-offline`` package instead of a CDN (ReDoc's with its logo inline). Bad input is a 4xx with
a one-line ``detail``, never a 500: malformed JSON 400; wrong types, missing or extra fields, an empty list, an
empty text, invalid Unicode or a body that is not UTF-8 422; too many texts or too large a body 413; JSON nested
deeper than ``MAX_JSON_DEPTH`` 400. With a token (``--token`` or ``$EMOCLF_TOKEN``), every endpoint but ``/health``
and the page at ``/`` (which asks for it) wants ``Authorization: Bearer <token>``, else 401. Probabilities are
always finite: a model that computes NaN answers 500 and never a null. The model is whatever ``Predictor.load``
accepts: a saved folder, an ONNX export or an MLflow model URI.
"""

from __future__ import annotations

import asyncio
import codecs
import hmac
import ipaddress
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
from dataclasses import asdict, dataclass
from html import escape
from importlib import resources
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from emoclf import console, hardware
from emoclf.batching import Batcher
from emoclf.config import ServeOptions
from emoclf.errors import ConfigError, PredictionError, ServeError
from emoclf.inference import Predictor
from emoclf.layout import CARD_FILE, MISCLASSIFIED_CSV, MODEL_DIR, REPORT_DIR, REPORT_HTML, __version__
from emoclf.modeling import model_name
from emoclf.naming import source_name
from emoclf.predictions import SKIPPED_EMPTY

log = logging.getLogger(__name__)

EXAMPLE_TEXTS = ["i finally got the job and i cant stop smiling", "why does nobody ever listen to me"]
TOKEN_ENV = "EMOCLF_TOKEN"
MAX_WAIT_MS = ServeOptions.max_wait_ms  # adaptive batching's default wait (emoclf.batching)
ARRIVAL = "emoclf.arrival"  # the scope key of a /predict request's batching.Arrival
BACKLOG = 2048  # uvicorn's default listen queue
JSON_STYLE = {"ensure_ascii": False, "allow_nan": False, "separators": (",", ":")}  # as FastAPI's JSONResponse
OPEN_PATHS = ("/health", "/")  # the page holds nothing but the form, and asks for the token itself
# A request is {"texts": [...]}, two levels; Python's JSON parser would recurse into anything up to its stack
# limit and FastAPI answer "There was an error parsing the body".
MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def json_depth_over(body: bytes, limit: int) -> bool:
    """Whether the JSON ``body`` nests arrays and objects deeper than ``limit`` (brackets inside strings aside)."""
    depth = 0
    for c in _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS):
        depth += 1 if c in b"[{" else -1
        if depth > limit:
            return True
    return False


SKIPPED = (
    f"{SKIPPED_EMPTY}: only emoji, punctuation or invisible characters, which the model's preprocessing removes; "
    "there is nothing to classify"
)
ROUTES = {"card": "card", "report": "report/"}  # relative to the page, as it links them
OFFLINE_STATIC = "/static-offline-docs"  # where fastapi-offline serves Swagger UI and ReDoc from
REDOC_SCRIPT = "/static-emoclf/redoc.standalone.js"
# ReDoc draws Redocly's logo in its footer from Redocly's CDN, which offline fails (and the page's policy blocks):
# the script served here draws an empty inline image instead.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
EMPTY_IMAGE = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='1' height='1'/%3E"
CARD_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 960px; padding: 0 1rem; color: #1f2328;
       line-height: 1.5; }
table { border-collapse: collapse; margin: .5rem 0; } th, td { border: 1px solid #ddd; padding: .25rem .6rem; }
td:not(:first-child) { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; } code { font-size: .9em; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2rem; }
"""


@dataclass(frozen=True)
class Limits:
    """Per-request limits; requests over them get 413 before any model work."""

    max_texts: int = 256
    max_body_bytes: int = 1_000_000

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"texts": EXAMPLE_TEXTS}]})
    # StrictStr: 42 or true in the list is a client bug to report, not a text to classify.
    texts: list[StrictStr] = Field(description="Texts to classify, raw: the model applies its own preprocessing.")


class TextPrediction(BaseModel):
    label: str | None = Field(None, description="The most probable class; absent when the text was skipped.")
    probability: float | None = Field(None, description="Its probability.")
    probabilities: dict[str, float] | None = Field(None, description="Every class's probability (they sum to 1).")
    group: str | None = Field(None, description="The label's group; only from a model trained with a hierarchy.")
    group_probability: float | None = Field(
        None, description="The group's probability (the sum of its labels'); only with a hierarchy."
    )
    truncated: bool | None = Field(
        None, description="The text is longer than the model reads (max_length tokens): only its start was classified."
    )
    skipped: str | None = Field(
        None,
        description="Why the text has no label: it is empty after preprocessing (only emoji, punctuation or "
        "invisible characters). Only then present.",
    )


class PredictResponse(BaseModel):
    predictions: list[TextPrediction] = Field(description="One per input text, in input order.")


class MultiLabelTextPrediction(BaseModel):
    labels: list[str] | None = Field(
        None,
        description="Every label whose probability reaches its threshold, most probable first; absent when the "
        "text was skipped.",
    )
    probabilities: dict[str, float] | None = Field(
        None, description="Every label's own probability (each label is decided on its own: they need not sum to 1)."
    )
    groups: list[str] | None = Field(None, description="The groups of the labels; only with a hierarchy.")
    truncated: bool | None = TextPrediction.model_fields["truncated"]
    skipped: str | None = TextPrediction.model_fields["skipped"]


class MultiLabelPredictResponse(BaseModel):
    predictions: list[MultiLabelTextPrediction] = Field(description="One per input text, in input order.")


class Detail(BaseModel):
    detail: str


class BodyGuard:
    """Answers 413 to bodies over ``max_bytes`` (by Content-Length up front, or counted while chunks arrive),
    422 to bodies that are not UTF-8, which JSON must be (RFC 8259), checked as the chunks arrive, and 400 to
    JSON nested deeper than ``MAX_JSON_DEPTH``, checked once the body is complete."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def _too_large(self, size: str) -> HTTPException:
        return HTTPException(413, f"request body too large: {size} bytes, the limit is {self.max_bytes}")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            exc = self._too_large(declared.decode())
            return await JSONResponse({"detail": exc.detail}, exc.status_code)(scope, receive, send)
        received = 0
        decoder = codecs.getincrementaldecoder("utf-8")()
        chunks: list[bytes] = []

        async def counted():
            nonlocal received
            message = await receive()
            chunk = message.get("body", b"")
            final = not message.get("more_body", False)
            # Raised inside the route's body read, so FastAPI turns them into the response.
            if received + len(chunk) > self.max_bytes:
                raise self._too_large(f"at least {received + len(chunk)}")
            try:
                decoder.decode(chunk, final=final)
            except UnicodeDecodeError as e:
                raise HTTPException(
                    422, f"body: not valid UTF-8 at byte {received + e.start}; send UTF-8 text"
                ) from None
            received += len(chunk)
            chunks.append(chunk)
            if final and json_depth_over(b"".join(chunks), MAX_JSON_DEPTH):
                raise HTTPException(
                    400, f'body: JSON nested deeper than {MAX_JSON_DEPTH} levels; send {{"texts": [...]}}'
                )
            return message

        await self.app(scope, counted, send)


class BearerToken:
    """401 to a request without ``Authorization: Bearer <token>``, on every path but ``OPEN_PATHS``."""

    def __init__(self, app, token: str) -> None:
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):  # constant time: no timing says how much was right
                detail = (
                    "missing or wrong token: send the header 'Authorization: Bearer <token>' with the token this "
                    f"server was started with (--token or ${TOKEN_ENV})"
                )
                response = JSONResponse({"detail": detail}, 401, headers={"www-authenticate": "Bearer"})
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


class SameOriginPages:
    """Tells browsers to load nothing for the HTML pages from anywhere but this server (Content-Security-
    Policy): ReDoc's footer would otherwise fetch its logo from Redocly's CDN, and offline it must not try."""

    POLICY = (
        b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
    )

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        async def with_policy(message):
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                if headers.get(b"content-type", b"").startswith(b"text/html"):
                    message["headers"] = [*message.get("headers", []), (b"content-security-policy", self.POLICY)]
            await send(message)

        await self.app(scope, receive, with_policy if scope["type"] == "http" else send)


ERROR_RESPONSES = {
    code: {"model": Detail, "description": why}
    for code, why in (
        (400, f"Malformed JSON, or JSON nested deeper than {MAX_JSON_DEPTH} levels."),
        (401, "A token is required (the server was started with one) and was missing or wrong."),
        (413, "Too many texts or too large a body."),
        (422, "Wrong types, missing or unknown fields, an empty list, an empty text, or a body that is not UTF-8."),
        (500, "The model computed something that is not a probability; nothing is returned."),
    )
}


def check_texts(texts: list[str], limits: Limits) -> None:
    """Refuse, before any model work, a request the model cannot answer text by text."""
    if not texts:
        raise HTTPException(422, "texts: the list is empty; send at least one text")
    if len(texts) > limits.max_texts:
        raise HTTPException(
            413,
            f"texts: {len(texts)} texts, the limit is {limits.max_texts} per request; split them over several requests",
        )
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise HTTPException(422, f"texts[{empty[0]}]: empty text ({len(empty)} empty in all); send non-blank texts")
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")  # JSON admits lone surrogates ("\ud800"); the tokenizer would fail on them
        except UnicodeEncodeError:
            raise HTTPException(422, f"texts[{i}]: not valid Unicode (a lone surrogate); send UTF-8 text") from None


def _location(loc: tuple) -> str:
    parts = [str(p) for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    bad_json = next((e for e in errors if e["type"] == "json_invalid"), None)
    if bad_json is not None:
        reason = bad_json.get("ctx", {}).get("error", "cannot be parsed")
        return JSONResponse({"detail": f"malformed JSON body at character {bad_json['loc'][-1]}: {reason}"}, 400)
    if any(e["loc"] == ("body",) for e in errors):
        return JSONResponse({"detail": 'body: expected a JSON object {"texts": [...]} sent as application/json'}, 422)
    detail = "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in errors[:5])
    return JSONResponse({"detail": detail + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else "")}, 422)


class Arrivals:
    """Counts each ``POST /predict`` from the moment it reaches the app until its texts are submitted to the
    batcher (or it fails first), so the batcher waits only for requests that are really on their way."""

    def __init__(self, app, batcher: Batcher) -> None:
        self.app, self.batcher = app, batcher

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != "/predict":
            return await self.app(scope, receive, send)
        arrival = scope[ARRIVAL] = self.batcher.expect()
        try:
            await self.app(scope, receive, send)
        finally:
            arrival.done()


def create_app(
    predictor: Predictor,
    limits: Limits = Limits(),
    name: str | None = None,
    token: str | None = None,
    batching: bool = False,
    max_wait_ms: float = MAX_WAIT_MS,
    calls: int | None = None,
) -> FastAPI:
    """The app for one loaded model, called ``name`` (default: the name it was trained with). With ``batching``,
    concurrent requests share model calls, one call at a time, a request waiting at most ``max_wait_ms`` for others
    on their way (``emoclf.batching``); without, each request runs its own call. ``calls``: model calls at once
    (default: one per usable core; with ``batching``, 1), the other requests waiting their turn in order.
    With ``token``, every endpoint but ``OPEN_PATHS`` wants ``Authorization: Bearer <token>``."""
    meta = predictor.meta
    name = name or model_name(meta)
    app = FastAPIOffline(
        title=f"emoclf: {name}",
        version=__version__,
        description=f"Text classification with {name}: {', '.join(predictor.labels)}. Try it at [/](/).",
        swagger_ui_parameters={"validatorUrl": None},  # Swagger UI would send the spec to an online validator
        redoc_url=None,  # served below, with ReDoc's logo kept on this server
    )
    page = resources.files("emoclf").joinpath("resources", "index.html").read_text(encoding="utf-8")
    app.add_middleware(BodyGuard, max_bytes=limits.max_body_bytes)
    app.add_middleware(SameOriginPages)
    calls = calls or plan(hardware.detect(), 1, None, batching)[2]  # what one worker of `serve` runs
    batcher = Batcher(predictor, max_wait_ms, share=batching, calls=calls)
    if batching:
        app.add_middleware(Arrivals, batcher=batcher)
    if token:
        app.add_middleware(BearerToken, token=token)
    app.add_exception_handler(RequestValidationError, _validation_error)
    redoc = (Path(fastapi_offline.__file__).parent / "static" / "redoc.standalone.js").read_text(encoding="utf-8")
    redoc = redoc.replace(REDOC_LOGO, EMPTY_IMAGE)

    @app.get("/redoc", include_in_schema=False)
    def redoc_page(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{REDOC_SCRIPT}",
            with_google_fonts=False,
            redoc_favicon_url=f"{root}{OFFLINE_STATIC}/favicon.png",
        )

    @app.get(REDOC_SCRIPT, include_in_schema=False)
    def redoc_script() -> Response:
        return Response(redoc, media_type="text/javascript")

    # None only stands for the group fields of a flat model, which are left out rather than sent as null.
    # A multi-label model answers with its labels; the schema in /docs is the model's own.
    answer = MultiLabelPredictResponse if predictor.task.multi_label else PredictResponse

    @app.post("/predict", response_model=answer, response_model_exclude_none=True, responses=ERROR_RESPONSES)
    async def predict(request: PredictRequest, http: Request) -> Response:
        """Label, its probability and all class probabilities for each text, and whether it was cut at the model's
        token limit; for a text with nothing left to classify after preprocessing, why it was skipped."""
        texts = request.texts
        check_texts(texts, limits)
        clean = predictor.clean(texts)
        usable = [i for i, text in enumerate(clean) if text]
        predicted = {}
        if usable:
            kept = [clean[i] for i in usable]
            try:
                probs, cut = await asyncio.wrap_future(batcher.submit(kept, http.scope.get(ARRIVAL)))
            except PredictionError as e:
                raise HTTPException(500, str(e)) from None
            predicted = dict(zip(usable, predictor.records(probs, cut)))
        answers = [
            {k: v for k, v in vars(predicted[i]).items() if v is not None} if i in predicted else {"skipped": SKIPPED}
            for i in range(len(texts))
        ]
        # JSON written here, as FastAPI would from the response model, which would first validate what emoclf just
        # built: a tenth of the Python a request costs (docs/inference-speed.md, "Concurrent clients").
        return Response(json.dumps({"predictions": answers}, **JSON_STYLE).encode(), media_type="application/json")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    documents = model_documents(predictor)
    if "card" in documents:

        @app.get("/card", response_class=HTMLResponse, include_in_schema=False)
        def model_card() -> str:
            return card_page(documents["card"].read_text(encoding="utf-8"), name)

    if "report" in documents:

        @app.get("/report/", include_in_schema=False)
        def training_report() -> FileResponse:
            return FileResponse(documents["report"])

        @app.get(f"/report/{MISCLASSIFIED_CSV}", include_in_schema=False)
        def misclassified() -> FileResponse:  # linked from the report
            return FileResponse(documents["report"].with_name(MISCLASSIFIED_CSV), media_type="text/csv")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:  # asked for by every page without an icon of its own (the report): none, no 404
        return Response(status_code=204)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/metadata")
    def metadata() -> dict:
        """What is being served: model name and source, backend, labels, preprocessing, training metrics and
        data, example texts, links to the model card and report (when there), limits."""
        return {
            "model": name,
            "source": source_name(predictor.source) if predictor.source else None,
            "base_model": meta.base_model,
            "backend": predictor.backend.name,
            "labels": predictor.labels,
            "preprocessing": meta.preprocess,
            "max_length": meta.max_length,
            "temperature": meta.temperature,
            "metrics": meta.metrics,
            "trained_at": meta.trained_at,
            "run_id": meta.run_id,
            "training_data": meta.data or None,
            "export": meta.export or None,
            "hierarchy": meta.hierarchy,
            "task": predictor.task.name,
            "thresholds": dict(zip(predictor.labels, meta.thresholds)) if meta.thresholds else None,
            "examples": meta.examples,
            "links": {kind: ROUTES[kind] for kind in documents},
            "limits": asdict(limits),
        }

    return app


def model_documents(predictor: Predictor) -> dict[str, Path]:
    """The model card in the model's folder, and the report of the training that wrote a ``model`` folder (in
    ``report/`` beside it), when they are there: what the page links."""
    folder = predictor.folder
    if folder is None:
        return {}
    found = {"card": folder / CARD_FILE}
    if folder.name == MODEL_DIR:
        found["report"] = folder.parent / REPORT_DIR / REPORT_HTML
    return {kind: path for kind, path in found.items() if path.is_file()}


def card_page(card: str, name: str) -> str:
    """The model card as a self-contained page: its Markdown rendered (raw HTML in it escaped, not run), the
    Hugging Face metadata as a YAML block at the end."""
    from markdown_it import MarkdownIt

    from emoclf.modelcard import for_mlflow

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(for_mlflow(card))
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(name)}: model card</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<style>{CARD_CSS}</style></head>"
        f'<body><nav><a href="./">try the model</a></nav>{body}</body></html>'
    )


def loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.1, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any address
        return False


def serve(
    source: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: Limits = Limits(),
    batch_size: int = 64,
    num_threads: int | None = None,
    access_log: bool = True,
    precision: str = "fp32",
    threshold: float | None = None,
    token: str | None = None,
    batching: bool = False,
    max_wait_ms: float = MAX_WAIT_MS,
    workers: int | None = None,
) -> None:
    """Load ``source`` and serve it until interrupted (Ctrl-C or SIGTERM end it cleanly). ``token`` (default:
    ``$EMOCLF_TOKEN``) is required of every request but ``/health`` and the page; without one, an address
    other machines can reach is served with a warning. ``batching`` and ``max_wait_ms`` as for ``create_app``.

    ``workers`` processes (default: one per usable core on a Linux CPU, else one) each hold the model and answer
    requests, so the Python around each model call (HTTP, JSON, tokenising) runs on every core, not on one.
    ``num_threads`` per model call (default: 1; with ``batching``, which runs one call at a time, the worker's share
    of the cores); without batching a worker runs as many calls at once as its share of the cores holds
    (docs/inference-speed.md, "Concurrent clients")."""
    import uvicorn

    token = token or os.environ.get(TOKEN_ENV) or None
    if not token and not loopback(host):
        log.warning(
            "serving on %s, which other machines can reach, without a token: anyone who reaches it can use the "
            "model; set %s (or --token) to require one, or serve on 127.0.0.1",
            host,
            TOKEN_ENV,
        )
    workers, threads, calls = plan(hardware.detect(), workers, num_threads, batching)
    spec = {
        "source": str(source),
        "limits": asdict(limits),
        "batch_size": batch_size,
        "threads": threads,
        "calls": calls,
        "precision": precision,
        "threshold": threshold,
        "token": token,
        "batching": batching,
        "max_wait_ms": max_wait_ms,
        "verbosity": console.verbosity(),
        "access_log": access_log,
    }
    _socket(host, port, shared=False).close()  # a taken address fails now, in one line, before the model loads
    # Loaded here in any case: a model that cannot load fails now, in one line, before any worker starts.
    app = _app(spec)
    log.info(
        "serving %s (%s, %d worker%s): try it at http://%s:%d/ (API docs: /docs)",
        source,
        app.state.backend,
        workers,
        "s" if workers > 1 else "",
        host,
        port,
    )
    if workers == 1:
        uvicorn.run(app, host=host, port=port, access_log=access_log, log_config=None)
        return
    del app
    _supervise(spec, host, port, workers)


def plan(here: hardware.Hardware, workers: int | None, threads: int | None, batching: bool) -> tuple[int, int, int]:
    """Worker processes, threads per model call and model calls at once per worker for ``serve``'s settings (None:
    the default) on ``here``. Measured with MiniLM on 2 cores (docs/inference-speed.md, "Concurrent clients"): one
    text on one thread costs a core no more than in a batch, while the Python around each request runs on one core
    per process; so a worker per core, one call at a time on one thread each, answered the most texts per second."""
    spread = sys.platform.startswith("linux")  # only Linux spreads connections over sockets sharing a port
    if workers is None:
        workers = here.cores if spread and not here.gpus else 1
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if workers > 1 and not spread:
        raise ConfigError(f"--workers {workers}: several worker processes need Linux (SO_REUSEPORT); use --workers 1")
    share = max(1, here.cores // workers)
    threads = threads or (share if batching else 1)
    return workers, threads, max(1, share // threads)


def _app(spec: dict) -> FastAPI:
    predictor = Predictor.load(
        spec["source"],
        batch_size=spec["batch_size"],
        precision=spec["precision"],
        num_threads=spec["threads"],
        threshold=spec["threshold"],
    )
    predictor.predict_proba(EXAMPLE_TEXTS)  # first-call allocations happen now, not in the first request
    app = create_app(
        predictor,
        Limits(**spec["limits"]),
        token=spec["token"],
        batching=spec["batching"],
        max_wait_ms=spec["max_wait_ms"],
        calls=spec["calls"],
    )
    app.state.backend = predictor.backend.name
    return app


def _socket(host: str, port: int, shared: bool = True) -> socket.socket:
    """A socket bound to ``host:port``; ``shared``: one that shares the port with the other workers' (SO_REUSEPORT),
    and the kernel spreads new connections evenly over them. One socket for all would let whichever worker wakes
    first accept a whole burst of connections (32 keep-alive clients on one worker, the other idle:
    docs/inference-speed.md)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ServeError(f"cannot serve on {host}:{port}: {e.strerror}; choose another --port or --host") from None
    return sock


def _worker(spec: dict, host: str, port: int) -> None:
    """One worker process of ``serve(..., workers=N)``: the model, the app, and uvicorn on a socket of its own."""
    import uvicorn
    from tqdm import tqdm

    # Log lines go through tqdm.write, whose default lock is a multiprocessing one that a worker leaves behind
    # (a "leaked semaphore" warning at every stop); one process needs only a thread lock.
    tqdm.set_lock(threading.RLock())
    console.configure(spec["verbosity"])
    app = _app(spec)
    sock = _socket(host, port)
    sock.listen(BACKLOG)
    uvicorn.Server(uvicorn.Config(app, access_log=spec["access_log"], log_config=None)).run(sockets=[sock])


def _supervise(spec: dict, host: str, port: int, workers: int) -> None:
    """Run ``workers`` worker processes until SIGINT or SIGTERM, then stop them all; a worker that dies stops the
    server with an error rather than serving on with fewer. The port is held meanwhile (bound, not listening): a
    second server on it fails to bind, where SO_REUSEPORT alone would let it share the connections."""
    import multiprocessing
    from multiprocessing.connection import wait

    _socket(host, port, shared=False).close()  # taken since serve() looked
    held = _socket(host, port)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads or ONNX sessions forked
    processes = [context.Process(target=_worker, args=(spec, host, port), daemon=True) for _ in range(workers)]
    try:
        for process in processes:
            process.start()
        while not stop.is_set():
            # Ctrl-C reaches the workers too: a worker that stops once the server is told to stop is no failure.
            ready = wait([p.sentinel for p in processes], timeout=0.5)
            if ready and not stop.is_set():
                dead = next(p for p in processes if p.sentinel in ready)
                dead.join()  # its sentinel is ready a moment before its exit code: is_alive() may still say True
                raise ServeError(f"a worker process stopped (exit code {dead.exitcode}); the server stops with it")
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()  # uvicorn's graceful shutdown: requests in flight are answered
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        held.close()
