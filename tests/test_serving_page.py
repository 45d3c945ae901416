"""The page at / and the API docs, in a real headless browser: Debian's chromium driven by Playwright.

A person types a sentence, submits, reads the label; the page, /docs and /redoc must render from
this server alone (no CDN, no font service), so every request the browser makes is checked.
"""

from __future__ import annotations

import threading

import pytest
from conftest import free_port, wait_http

from emoclf.inference import Predictor
from emoclf.serving import Limits, create_app

LABELS = ["anger", "fear", "joy", "love", "sadness", "surprise"]


@pytest.fixture(scope="module")
def predictor(trained) -> Predictor:
    return Predictor.load(trained.model_dir)


def serve_in_thread(app):
    """``app`` served by uvicorn on a free loopback port, in a thread of this process: yields its URL."""
    import uvicorn

    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", timeout=30)
    yield url
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(predictor):
    """The app served by uvicorn on a free loopback port, in a thread of this process."""
    yield from serve_in_thread(create_app(predictor, Limits(max_texts=8), name="tiny"))


@pytest.fixture(scope="module")
def guarded(predictor):
    """The app served with a token, as ``emoclf serve --token`` serves it."""
    yield from serve_in_thread(create_app(predictor, name="tiny", token="s3cret"))


def open_page(browser, url: str):
    """A fresh page at ``url``, the list of every URL it requests from then on, and of every error its console
    shows. A request that the page's Content-Security-Policy stops is listed too: it is a console error, and a
    sign that the page meant to fetch something from elsewhere."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    response = page.goto(url)
    assert "default-src 'self'" in response.headers["content-security-policy"]
    return page, requests, errors


def outside(requests: list[str], server: str) -> list[str]:
    return [u for u in requests if not u.startswith((server + "/", "data:", "blob:"))]


def classify(page, texts: str, count: int):
    """Type ``texts`` (lines), submit, and wait for ``count`` results."""
    page.fill("#texts", texts)
    page.click("#classify")
    results = page.locator(".result")
    results.nth(count - 1).wait_for(timeout=15_000)
    return results


def test_the_page_classifies_a_typed_sentence_and_shows_the_model(server, browser, predictor, trained):
    page, requests, errors = open_page(browser, server + "/")
    results = classify(page, "i am so happy today\nwhy would you do that to me", 2)
    expected = predictor.predict(["i am so happy today", "why would you do that to me"])
    assert [results.nth(i).locator(".label").text_content() for i in range(2)] == [p.label for p in expected]
    first = results.nth(0)
    assert first.locator(".text").text_content() == "i am so happy today"
    assert sorted(first.locator(".cls").all_text_contents()) == LABELS  # one probability bar per class
    shown = first.locator(".bars .num").all_text_contents()
    assert shown[0] == f"{100 * expected[0].probability:.1f}%"  # the label's bar comes first
    assert page.locator("#title").text_content() == "tiny" and page.title() == "tiny: try the model"
    meta = page.locator("#meta").text_content()
    assert "tiny" in meta and ", ".join(LABELS) in meta and "trained" in meta
    assert f"{trained.metrics['macro_f1']:.4f}" in meta and "loaded from" in meta and "/tmp/" not in meta
    assert page.locator("#scores tr").count() == len(LABELS) + 1  # test F1 per class
    assert outside(requests, server) == [] and errors == []
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


def test_an_error_replaces_the_last_results_in_one_line(server, browser):
    page, _, _ = open_page(browser, server + "/")
    classify(page, "i am so happy today", 1)
    page.fill("#texts", "\n".join(["a text"] * 9))  # over the limit of 8
    page.click("#classify")
    error = page.locator("#error")
    error.wait_for(state="visible", timeout=15_000)
    assert error.text_content() == "texts: 9 texts, the limit is 8 per request; split them over several requests"
    assert page.locator(".result").count() == 0  # no answer of the earlier request shown under it


def test_a_line_with_nothing_to_classify_is_marked_and_the_others_classified(server, browser, predictor):
    page, _, _ = open_page(browser, server + "/")
    results = classify(page, "\U0001f621\U0001f621\ni am so happy today", 2)
    assert page.locator("#error").is_hidden()
    skipped = results.nth(0)
    assert "skipped" in skipped.get_attribute("class") and skipped.locator(".text").text_content() == "😡😡"
    assert skipped.locator(".label").text_content().startswith("not classified: empty after preprocessing: only emoji")
    assert results.nth(1).locator(".label").text_content() == predictor.predict(["i am so happy today"])[0].label


def test_a_text_longer_than_the_model_reads_is_said_to_be_cut(server, browser, predictor):
    page, _, _ = open_page(browser, server + "/")
    results = classify(page, "i am so happy today\n" + "i feel " * 60, 2)
    assert results.nth(0).locator(".note").count() == 0
    assert results.nth(1).locator(".note").text_content() == (
        f"Longer than the model reads: only the first {predictor.meta.max_length} tokens of this text were classified."
    )


def test_an_example_classifies_itself_when_clicked(server, browser, predictor):
    page, _, _ = open_page(browser, server + "/")
    examples = page.locator("#examples button")
    examples.first.wait_for(timeout=15_000)
    assert examples.all_text_contents() == [e["text"] for e in predictor.meta.examples]
    examples.nth(1).click()
    page.locator(".result").first.wait_for(timeout=15_000)
    text = predictor.meta.examples[1]["text"]
    assert page.locator("#texts").input_value() == text
    assert page.locator(".result .label").text_content() == predictor.predict([text])[0].label


def test_the_page_links_the_model_card_and_the_training_report(server, browser):
    page, requests, errors = open_page(browser, server + "/")
    page.locator("#links a", has_text="model card").click()
    page.wait_for_url(server + "/card")
    assert page.locator("h1").first.text_content() == "tiny-bert0-finetuned-emoclf-demo"
    assert page.locator("h2", has_text="Known weaknesses").count() == 1
    page.go_back()
    page.locator("#links a", has_text="training report").click()
    page.wait_for_url(server + "/report/")
    assert page.locator("h1").text_content() == "emoclf evaluation report"
    with page.expect_download() as download:
        page.locator("a", has_text="misclassified.csv").click()
    assert download.value.url == server + "/report/misclassified.csv"
    assert outside(requests, server) == [] and errors == []


@pytest.mark.parametrize(
    "path,rendered", [("/docs", ".swagger-ui .opblock-summary-path"), ("/redoc", "[data-section-id]")]
)
def test_api_docs_render_from_this_server_alone(server, browser, path, rendered):
    page, requests, errors = open_page(browser, server + path)
    page.locator(rendered).first.wait_for(timeout=30_000)
    page.wait_for_load_state("networkidle")  # ReDoc's footer draws Redocly's logo after rendering
    assert "/predict" in page.content()
    assert outside(requests, server) == [] and errors == []  # no logo asked of Redocly's CDN
    assert any(u.startswith(server + "/static-offline-docs/") for u in requests)


@pytest.fixture(scope="module")
def multi_server(trained_multi):
    """A multi-label model served as ``emoclf serve`` serves it."""
    yield from serve_in_thread(create_app(Predictor.load(trained_multi.model_dir), name="tiny-multi"))


def test_a_multi_label_model_shows_every_label_chosen_and_each_threshold(multi_server, browser, trained_multi):
    page, requests, errors = open_page(browser, multi_server + "/")
    page.locator("#meta").get_by_text("multi-label: every label over its own threshold").wait_for(timeout=15_000)
    results = classify(page, "i feel so happy today\ni am scared and i feel angry about it", 2)
    expected = Predictor.load(trained_multi.model_dir).predict(
        ["i feel so happy today", "i am scared and i feel angry about it"]
    )
    for i, record in enumerate(expected):
        result = results.nth(i)
        assert result.locator(".label").text_content() == ", ".join(record.labels)
        assert result.locator(".cls.best").all_text_contents() == sorted(
            record.labels, key=lambda lab: -record.probabilities[lab]
        )
        assert result.locator(".tick").count() == 6  # every label's bar marks its threshold
    assert not errors and all(url.startswith(multi_server) for url in requests)
