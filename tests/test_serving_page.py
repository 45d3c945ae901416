"""The page at / and the API docs, in a real headless browser: Debian's chromium driven by Playwright.

A person types a sentence, submits, reads the label; the page, /docs and /redoc must render from
this server alone (no CDN, no font service), so every request the browser makes is checked.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from conftest import free_port, wait_http

from emoclf.inference import Predictor
from emoclf.serving import Limits, create_app, display_name

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
LABELS = ["anger", "fear", "joy", "love", "sadness", "surprise"]


@pytest.fixture(scope="module")
def predictor(trained) -> Predictor:
    return Predictor.load(trained.model_dir)


@pytest.fixture(scope="module")
def server(predictor):
    """The app served by uvicorn on a free loopback port, in a thread of this process."""
    import uvicorn

    port = free_port()
    app = create_app(predictor, Limits(max_texts=8), model_name="tiny")
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", timeout=30)
    yield url
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def guarded(predictor):
    """The app served with a token, as ``emoclf serve --token`` serves it."""
    import uvicorn

    port = free_port()
    app = create_app(predictor, model_name="tiny", token="s3cret")
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", timeout=30)
    yield url
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"no browser at {CHROMIUM}: apt-get install chromium (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (test extra)")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_page(browser, url: str):
    """A fresh page at ``url`` and the list of every URL it requests from then on."""
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    # Stopped inside the browser by the page's Content-Security-Policy: never sent.
    page.on("requestfailed", lambda request: request.failure == "csp" and requests.remove(request.url))
    response = page.goto(url)
    assert "default-src 'self'" in response.headers["content-security-policy"]
    return page, requests


def outside(requests: list[str], server: str) -> list[str]:
    return [u for u in requests if not u.startswith((server + "/", "data:", "blob:"))]


def test_the_page_classifies_a_typed_sentence_and_shows_the_model(server, browser, predictor, trained):
    page, requests = open_page(browser, server + "/")
    page.fill("#texts", "i am so happy today\nwhy would you do that to me")
    page.click("#classify")
    results = page.locator(".result")
    results.nth(1).wait_for(timeout=15_000)
    expected = predictor.predict(["i am so happy today", "why would you do that to me"])
    assert [results.nth(i).locator(".label").text_content() for i in range(2)] == [p.label for p in expected]
    first = results.nth(0)
    assert first.locator(".text").text_content() == "i am so happy today"
    assert sorted(first.locator(".cls").all_text_contents()) == LABELS  # one probability bar per class
    shown = first.locator(".bars .num").all_text_contents()
    assert shown[0] == f"{100 * expected[0].probability:.1f}%"  # the label's bar comes first
    meta = page.locator("#meta").text_content()
    assert "tiny" in meta and ", ".join(LABELS) in meta and "trained" in meta
    assert f"{trained.metrics['macro_f1']:.4f}" in meta
    assert page.locator("#scores tr").count() == len(LABELS) + 1  # test F1 per class
    assert outside(requests, server) == []
    assert {u.removeprefix(server) for u in requests} >= {"/", "/metadata", "/predict"}


def test_the_page_asks_once_for_the_token_of_a_guarded_server(guarded, browser, predictor):
    page = browser.new_page()
    asked = []

    def answer(dialog):
        asked.append(dialog.message)
        dialog.accept("s3cret")

    page.on("dialog", answer)
    assert "s3cret" not in page.goto(guarded + "/").text()  # the token is never in the page
    page.locator("#meta").get_by_text("tiny").first.wait_for(timeout=15_000)
    page.fill("#texts", "i am so happy today")
    page.click("#classify")
    page.locator(".result").first.wait_for(timeout=15_000)
    assert page.locator(".result .label").text_content() == predictor.predict(["i am so happy today"])[0].label
    assert asked == ["This server needs its access token:"]  # once, then kept for the tab


def test_the_page_shows_the_servers_error_in_one_line(server, browser):
    page, _ = open_page(browser, server + "/")
    page.fill("#texts", "\n".join(["a text"] * 9))  # over the limit of 8
    page.click("#classify")
    error = page.locator("#error")
    error.wait_for(state="visible", timeout=15_000)
    assert error.text_content() == "texts: 9 texts, the limit is 8 per request; split them over several requests"


@pytest.mark.parametrize(
    "path,rendered", [("/docs", ".swagger-ui .opblock-summary-path"), ("/redoc", "[data-section-id]")]
)
def test_api_docs_render_from_this_server_alone(server, browser, path, rendered):
    page, requests = open_page(browser, server + path)
    page.locator(rendered).first.wait_for(timeout=30_000)
    page.wait_for_load_state("networkidle")  # ReDoc's footer asks for Redocly's logo after rendering
    assert "/predict" in page.content()
    assert outside(requests, server) == []
    assert any(u.startswith(server + "/static-offline-docs/") for u in requests)


def test_metadata_names_the_model_without_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert display_name(tmp_path / "runs" / "x" / "model") == "runs/x/model"
    assert display_name("/elsewhere/run7/model") == "run7/model"
    assert display_name("runs:/abc/emoclf") == "runs:/abc/emoclf"
