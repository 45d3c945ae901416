"""The HTTP API: in process with FastAPI's test client, as a real uvicorn process, and via `mlflow models serve`."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import psutil
import pytest
from conftest import free_port, wait_http
from fastapi.testclient import TestClient

from emoclf import hardware
from emoclf.errors import ConfigError, ServeError
from emoclf.export import convert
from emoclf.inference import Predictor
from emoclf.serving import Limits, create_app, plan

LABELS = ["anger", "fear", "joy", "love", "sadness", "surprise"]
TEXTS = ["i am so happy today", "why would you do that to me", "i feel scared and alone tonight", "wow", "i " * 100]
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def predictor(trained) -> Predictor:
    return Predictor.load(trained.model_dir)


@pytest.fixture(scope="module")
def client(predictor) -> TestClient:
    return TestClient(create_app(predictor, Limits(max_texts=8, max_body_bytes=2_000), name="tiny"))


@pytest.fixture(scope="module")
def int8_export(trained, tmp_path_factory):
    return convert(trained.model_dir, tmp_path_factory.mktemp("serve") / "onnx-int8", precision="int8")


def test_predict_returns_label_its_probability_and_all_classes(client, predictor):
    response = client.post("/predict", json={"texts": TEXTS})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    expected = predictor.predict_proba(TEXTS)
    assert len(predictions) == len(TEXTS)
    for row, probs in zip(predictions, expected):
        assert set(row) == {"label", "probability", "probabilities", "truncated"}
        assert list(row["probabilities"]) == LABELS
        np.testing.assert_allclose([row["probabilities"][lab] for lab in LABELS], probs, atol=1e-6)
        assert row["label"] == LABELS[int(probs.argmax())]
        assert row["probability"] == row["probabilities"][row["label"]] == max(row["probabilities"].values())
    # Only the last text is longer than the model reads (its max_length tokens): only its start was classified.
    assert [row["truncated"] for row in predictions] == [False, False, False, False, True]


def test_a_text_with_nothing_to_classify_is_skipped_and_the_others_classified(client, predictor):
    texts = ["i am so happy today", "\U0001f621\U0001f621", "!!!", "why would you do that to me"]
    predictions = client.post("/predict", json={"texts": texts}).json()["predictions"]
    skipped = {
        "skipped": "empty after preprocessing: only emoji, punctuation or invisible characters, which the model's "
        "preprocessing removes; there is nothing to classify"
    }
    assert predictions[1] == predictions[2] == skipped
    assert [p["label"] for p in (predictions[0], predictions[3])] == [
        p.label for p in predictor.predict([texts[0], texts[3]])
    ]
    assert client.post("/predict", json={"texts": ["!!!"]}).json() == {"predictions": [skipped]}


def test_health_metadata_and_docs(client, trained):
    from emoclf.naming import source_name

    assert client.get("/health").json() == {"status": "ok"}
    meta = client.get("/metadata").json()
    saved = json.loads((trained.model_dir / "emoclf.json").read_text())
    assert meta["model"] == "tiny" and meta["backend"] == "pytorch" and meta["labels"] == LABELS
    assert meta["source"] == source_name(trained.model_dir) and not meta["source"].startswith("/")
    assert meta["examples"] == saved["examples"] and len(meta["examples"]) == len(LABELS)
    assert meta["links"] == {"card": "card", "report": "report/"}
    assert meta["preprocessing"] == saved["preprocess"] and meta["metrics"] == saved["metrics"]
    assert meta["max_length"] == saved["max_length"] and meta["export"] is None and meta["hierarchy"] is None
    assert meta["limits"] == {"max_texts": 8, "max_body_bytes": 2_000}
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) == {"/predict", "/health", "/metadata"}
    assert set(paths["/predict"]["post"]["responses"]) == {"200", "400", "401", "413", "422", "500"}


@pytest.mark.parametrize(
    "request_kwargs,status,detail",
    [
        (dict(content=b'{"texts": ["a",]}', headers=JSON), 400, "malformed JSON body at character 15: Expecting value"),
        (
            dict(content=b"{texts", headers=JSON),
            400,
            "malformed JSON body at character 1: Expecting property name enclosed in double quotes",
        ),
        (dict(json={"texts": "i am happy"}), 422, "texts: Input should be a valid list"),
        (dict(json={"texts": ["fine", 42]}), 422, "texts[1]: Input should be a valid string"),
        (dict(json={"text": ["a"]}), 422, "texts: Field required; text: Extra inputs are not permitted"),
        (dict(json=["a", "b"]), 422, 'body: expected a JSON object {"texts": [...]} sent as application/json'),
        (
            dict(content=b'{"texts": ["a"]}', headers={"content-type": "text/plain"}),
            422,
            'body: expected a JSON object {"texts": [...]} sent as application/json',
        ),
        (dict(json={"texts": []}), 422, "texts: the list is empty; send at least one text"),
        (dict(json={"texts": ["ok", "", "  \n"]}), 422, "texts[1]: empty text (2 empty in all); send non-blank texts"),
        (
            dict(content=b'{"texts": ["fine", "\\ud800 half an emoji"]}', headers=JSON),
            422,
            "texts[1]: not valid Unicode (a lone surrogate); send UTF-8 text",
        ),
        (
            dict(content=b'{"texts": ["fine", "caf\xe9"]}', headers=JSON),
            422,
            "body: not valid UTF-8 at byte 23; send UTF-8 text",
        ),
        (
            dict(json={"texts": ["a"] * 9}),
            413,
            "texts: 9 texts, the limit is 8 per request; split them over several requests",
        ),
        (dict(json={"texts": ["a" * 3_000]}), 413, "request body too large: 3014 bytes, the limit is 2000"),
        # No Content-Length: the body is counted as it streams in.
        (
            dict(content=iter([b'{"texts": ["', b"a" * 3_000, b'"]}']), headers=JSON),
            413,
            "request body too large: at least 3015 bytes, the limit is 2000",
        ),
    ],
)
def test_bad_input_is_a_clear_4xx(client, request_kwargs, status, detail):
    response = client.post("/predict", **request_kwargs)
    assert (response.status_code, response.json()) == (status, {"detail": detail})


def test_absurdly_nested_json_is_a_clear_400_naming_the_limit(predictor):
    client = TestClient(create_app(predictor))
    for depth in (33, 10_000):
        body = b'{"texts": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
        response = client.post("/predict", content=body, headers=JSON)
        assert (response.status_code, response.json()) == (
            400,
            {"detail": 'body: JSON nested deeper than 32 levels; send {"texts": [...]}'},
        )
    # Brackets inside texts are text, and {"texts": [...]} is two levels.
    response = client.post("/predict", json={"texts": ["[[[[{{{{" * 20 + " i am happy"]})
    assert response.status_code == 200


def test_a_token_guards_every_endpoint_but_health_and_the_page(predictor):
    client = TestClient(create_app(predictor, token="s3cret"))
    assert client.get("/health").json() == {"status": "ok"}
    page = client.get("/")
    assert page.status_code == 200 and "s3cret" not in page.text  # the page asks for the token, never holds it
    denied = {
        "detail": "missing or wrong token: send the header 'Authorization: Bearer <token>' with the token this "
        "server was started with (--token or $EMOCLF_TOKEN)"
    }
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "s3cret"}):
        for method, path in (("post", "/predict"), ("get", "/metadata"), ("get", "/docs"), ("get", "/openapi.json")):
            response = client.request(method, path, json={"texts": ["hi"]}, headers=headers)
            assert (response.status_code, response.json()) == (401, denied), (path, headers)
            assert response.headers["www-authenticate"] == "Bearer"
    good = {"authorization": "Bearer s3cret"}
    assert client.post("/predict", json={"texts": ["i am happy"]}, headers=good).status_code == 200
    assert client.get("/metadata", headers=good).json()["labels"] == LABELS


def test_serving_beyond_loopback_warns_unless_a_token_is_set(trained, monkeypatch, caplog):
    import uvicorn

    from emoclf.serving import serve

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: apps.append((app, kwargs["host"])))
    monkeypatch.delenv("EMOCLF_TOKEN", raising=False)
    warning = "serving on 0.0.0.0, which other machines can reach, without a token: anyone who reaches it can use"
    for host in ("127.0.0.1", "::1", "localhost"):
        serve(trained.model_dir, host=host, port=free_port(), workers=1)
    assert "without a token" not in caplog.text
    serve(trained.model_dir, host="0.0.0.0", port=free_port(), workers=1)
    assert warning in caplog.text and "set EMOCLF_TOKEN (or --token) to require one" in caplog.text
    caplog.clear()
    monkeypatch.setenv("EMOCLF_TOKEN", "from-env")
    serve(trained.model_dir, host="0.0.0.0", port=free_port(), workers=1)
    assert "without a token" not in caplog.text
    client = TestClient(apps[-1][0])
    assert client.get("/metadata").status_code == 401
    assert client.get("/metadata", headers={"authorization": "Bearer from-env"}).status_code == 200


def test_a_model_that_computes_nan_answers_500_never_null(predictor, monkeypatch):
    client = TestClient(create_app(predictor))
    monkeypatch.setattr(
        type(predictor.backend),
        "__call__",
        lambda self, batch: np.full((len(batch["input_ids"]), len(LABELS)), np.nan, dtype=np.float32),
    )
    response = client.post("/predict", json={"texts": ["i am happy"]})
    assert response.status_code == 500
    assert response.json() == {
        "detail": "the model computed non-finite probabilities for 1 of 1 text(s) (first: "
        "texts[0]); it is broken: retrain or re-export it"
    }


def test_the_model_card_and_the_training_report_are_served_beside_the_model(client, trained):
    card = client.get("/card")
    assert card.status_code == 200 and card.headers["content-type"].startswith("text/html")
    assert "<h2>Known weaknesses</h2>" in card.text and "<table>" in card.text
    assert '<code class="language-yaml">' in card.text and "<hr" not in card.text  # metadata as a YAML block
    report = client.get("/report/")
    assert report.status_code == 200 and report.text == (trained.output_dir / "report" / "report.html").read_text()
    csv = client.get("/report/misclassified.csv")  # the report's link, resolved from /report/
    assert csv.text == (trained.output_dir / "report" / "misclassified.csv").read_text()
    assert client.get("/report").status_code == 200  # redirected to /report/
    assert client.get("/report/metrics.json").status_code == 404  # nothing else of the folder


def test_an_export_has_its_card_but_no_training_report(int8_export):
    client = TestClient(create_app(Predictor.load(int8_export)))
    assert client.get("/metadata").json()["links"] == {"card": "card"}
    assert client.get("/card").status_code == 200 and client.get("/report/").status_code == 404


def test_limits_are_checked():
    with pytest.raises(ConfigError, match="max_texts must be at least 1, got 0"):
        Limits(max_texts=0)


MALFORMED = ['{"texts": "one string"}', '{"texts": [1]}', '{"texts": [', '{"text": ["wow"]}']


def same_answer(got: dict, alone: dict) -> None:
    """The same labels, flags and groups; every probability within 1e-5 (a text's padding in a shared batch moves
    its float sums in the last bits)."""
    assert len(got["predictions"]) == len(alone["predictions"])
    for a, b in zip(got["predictions"], alone["predictions"]):
        assert {k: v for k, v in a.items() if "probabilit" not in k} == {
            k: v for k, v in b.items() if "probabilit" not in k
        }
        assert list(a.get("probabilities", {})) == list(b.get("probabilities", {}))
        np.testing.assert_allclose(
            list(a.get("probabilities", {}).values()), list(b.get("probabilities", {}).values()), atol=1e-5
        )


@pytest.mark.parametrize("batching", [True, False], ids=["batching", "no-batching"])
@pytest.mark.parametrize("model", ["trained", "trained_multi"])
def test_concurrent_requests_get_the_one_at_a_time_answers(model, batching, request, monkeypatch):
    """64 concurrent requests of mixed lengths (one to four texts, up to past the model's limit), malformed ones
    among them: each answer is the one the request gets alone, and a malformed request fails alone."""
    predictor = Predictor.load(request.getfixturevalue(model).model_dir)
    calls = []
    scores = predictor.scores
    monkeypatch.setattr(predictor, "scores", lambda clean, progress=False: calls.append(len(clean)) or scores(clean))
    client = TestClient(create_app(predictor, batching=batching, max_wait_ms=20))
    bodies = [
        MALFORMED[i // 16]
        if i % 16 == 5
        else json.dumps({"texts": TEXTS[i % 5 : i % 5 + 1 + i % 4] + ["i " * (1 + i % 40)]})
        for i in range(64)
    ]

    def post(body: str):
        response = client.post("/predict", content=body, headers=JSON)
        return response.status_code, response.json()

    alone = [post(b) for b in bodies]
    calls.clear()
    with ThreadPoolExecutor(max_workers=64) as pool:
        together = list(pool.map(post, bodies))
    for (status, got), (status_alone, expected), body in zip(together, alone, bodies):
        assert status == status_alone == (200 if body not in MALFORMED else 400 if body.endswith("[") else 422), got
        if status == 200:
            same_answer(got, expected)
        else:
            assert got == expected
    if batching:  # requests shared model calls: fewer calls than requests (the 4 malformed ones never reach it)
        assert len(calls) < 60 and sum(calls) == sum(len(json.loads(b)["texts"]) for b in bodies if b not in MALFORMED)
    else:
        assert len(calls) == 60


def test_model_calls_at_once_are_limited_to_calls(predictor, monkeypatch):
    """Without batching each request has its own call; ``calls`` of them run at once (default: one per core; more
    would only take turns on the same cores), the others wait their turn and are answered."""
    running, most = [0], [0]
    lock = threading.Lock()
    scores = predictor.scores

    def counted(clean, progress=False):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        try:
            return scores(clean)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(predictor, "scores", counted)
    for calls, expected in ((1, 1), (3, 3), (None, hardware.detect().cores)):
        most[0] = 0
        client = TestClient(create_app(predictor, calls=calls))
        with ThreadPoolExecutor(max_workers=16) as pool:
            codes = list(pool.map(lambda t, c=client: c.post("/predict", json={"texts": [t]}).status_code, TEXTS * 4))
        assert codes == [200] * 20
        assert most[0] == expected


@pytest.mark.parametrize(
    "cores, gpus, workers, threads, batching, expected",
    [
        (2, (), None, None, False, (2, 1, 1)),  # the default: a worker per core, one call at a time on one thread
        (8, (), None, None, False, (8, 1, 1)),
        (8, (), 2, None, False, (2, 1, 4)),  # fewer workers: each runs as many one-thread calls as its cores
        (8, (), 2, 2, False, (2, 2, 2)),
        (8, (), 2, None, True, (2, 4, 1)),  # batching runs one call at a time: it gets the worker's cores
        (4, ("NVIDIA H200",), None, None, False, (1, 1, 4)),  # a GPU: one process, one copy of the model on it
        (1, (), 3, None, False, (3, 1, 1)),
    ],
)
def test_plan_of_workers_threads_and_calls(cores, gpus, workers, threads, batching, expected):
    here = dataclasses.replace(hardware.detect(), cores=cores, gpus=gpus)
    assert plan(here, workers, threads, batching) == expected


def test_plan_refuses_zero_workers():
    with pytest.raises(ConfigError, match="^--workers must be at least 1, got 0$"):
        plan(hardware.detect(), 0, None, False)


def test_a_taken_port_fails_in_one_line_before_the_model_loads(trained, capsys):
    from emoclf.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for workers in ("1", "2"):
            assert main(["serve", "--model", str(trained.model_dir), "--port", str(port), "--workers", workers]) != 0
            err = capsys.readouterr().err
            assert f"cannot serve on 127.0.0.1:{port}: Address already in use; choose another --port or --host" in err
            assert "serving" not in err


def test_serves_an_onnx_export(int8_export, trained):
    client = TestClient(create_app(Predictor.load(int8_export)))
    assert client.get("/metadata").json()["backend"] == "onnxruntime"
    assert client.get("/metadata").json()["export"]["precision"] == "int8"
    predictions = client.post("/predict", json={"texts": TEXTS}).json()["predictions"]
    probs = [list(p["probabilities"].values()) for p in predictions]
    np.testing.assert_allclose(probs, Predictor.load(trained.model_dir).predict_proba(TEXTS), atol=0.05)


def worker_processes(server: subprocess.Popen) -> list[psutil.Process]:
    """The worker processes of an ``emoclf serve`` (not multiprocessing's resource tracker, also a child)."""
    return [p for p in psutil.Process(server.pid).children() if "spawn_main" in " ".join(p.cmdline())]


def _stop(proc: subprocess.Popen) -> int:
    proc.terminate()
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


@pytest.mark.slow
def test_emoclf_serve_as_a_real_uvicorn_process(int8_export, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emoclf.cli",
            "serve",
            "--model",
            str(int8_export),
            "--port",
            str(port),
            "--max-texts",
            "4",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", timeout=60, proc=proc)
        with httpx.Client(base_url=url) as http:
            assert http.get("/metadata").json()["backend"] == "onnxruntime"
            ok = http.post("/predict", json={"texts": TEXTS[:3]})
            assert ok.status_code == 200 and [p["label"] in LABELS for p in ok.json()["predictions"]] == [True] * 3
            assert http.post("/predict", json={"texts": TEXTS}).status_code == 413
            bad = http.post("/predict", content=b"{", headers=JSON)
            assert bad.status_code == 400 and bad.json()["detail"].startswith("malformed JSON body")
            single = [{"texts": [t]} for t in TEXTS]
            serial = [http.post("/predict", json=r).json() for r in single]
            with ThreadPoolExecutor(max_workers=5) as pool:
                assert list(pool.map(lambda r: http.post("/predict", json=r).json(), single * 4)) == serial * 4
            workers = plan(hardware.detect(), None, None, False)[0]
            if workers > 1:  # a worker process per core, each answering
                assert len(worker_processes(proc)) == workers
    finally:
        code = _stop(proc)
    assert code == 0
    assert f"(onnxruntime, {workers} worker" in log.read_text()
    assert f"try it at http://127.0.0.1:{port}/ (API docs: /docs)" in log.read_text()


def _exits_at_once(spec, host, port):
    os._exit(3)


def test_the_supervisor_names_the_exit_code_of_a_worker_that_stopped(monkeypatch):
    # The exit code is read only once the process is reaped: its sentinel is ready a moment before (the race that
    # made a dead worker end the server with "StopIteration", exit 1).
    from emoclf import serving

    monkeypatch.setattr(serving, "_worker", _exits_at_once)
    with pytest.raises(ServeError, match=r"^a worker process stopped \(exit code 3\); the server stops with it$"):
        serving._supervise({}, "127.0.0.1", free_port(), workers=2)


@pytest.mark.slow
def test_a_worker_that_dies_stops_the_server_with_one_line(trained, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "emoclf.cli", "serve", "--model", str(trained.model_dir), "--port", str(port)]
    proc = subprocess.Popen([*command, "--workers", "2"], stdout=subprocess.DEVNULL, stderr=log.open("w"))
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=60, proc=proc)
        workers = worker_processes(proc)
        assert len(workers) == 2
        workers[0].kill()
        code = proc.wait(timeout=60)
    finally:
        _stop(proc)
    assert code == 2  # emoclf's errors
    assert "emoclf: error: a worker process stopped (exit code -9); the server stops with it" in log.read_text()
    assert not workers[1].is_running() or workers[1].status() == psutil.STATUS_ZOMBIE


@pytest.mark.slow
def test_mlflow_model_serves_with_mlflow_and_with_emoclf(trained, predictor, tmp_path):
    import mlflow

    from emoclf.mlflow_model import log_pyfunc

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(store)
    try:
        with mlflow.start_run():
            uri = log_pyfunc(trained.model_dir, ["i am happy"]).model_uri
        # emoclf's own server takes the same URI.
        served = TestClient(create_app(Predictor.load(uri))).post("/predict", json={"texts": TEXTS}).json()
    finally:
        mlflow.set_tracking_uri(previous)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            uri,
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        # MLflow execs `uvicorn` by name: this interpreter's scripts must be on PATH even without an activated venv.
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": store,
            "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
        },
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "mlflow-serve.log").open("w"),
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", timeout=120, proc=proc)
        response = httpx.post(
            f"http://127.0.0.1:{port}/invocations",
            timeout=30,
            json={"dataframe_split": {"columns": ["text"], "data": [[t] for t in TEXTS]}},
        )
    finally:
        _stop(proc)
    assert response.status_code == 200, response.text
    rows = response.json()["predictions"]
    expected = predictor.predict_proba(TEXTS)
    assert [r["predicted_label"] for r in rows] == [LABELS[i] for i in expected.argmax(axis=1)]
    assert [p["label"] for p in served["predictions"]] == [r["predicted_label"] for r in rows]
    assert [r["skipped"] for r in rows] == [""] * len(TEXTS)
    np.testing.assert_allclose([[r[f"prob_{lab}"] for lab in LABELS] for r in rows], expected, atol=1e-5)
