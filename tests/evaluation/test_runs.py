"""`emoclf report RUN_DIR ...`: runs side by side in one self-contained page, read from their report files."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from emoclf.calibration import reliability_bins
from emoclf.cli import main
from emoclf.errors import ConfigError
from emoclf.evaluation.metrics import classification_metrics
from emoclf.evaluation.report import write_report
from emoclf.evaluation.runs import compare_runs

LABELS = ["anger", "joy", "fear"]


def write_run(folder, seed: int, run_id: str):
    """A training's report folder with known scores: right answers get a skewed share depending on the seed."""
    rng = np.random.default_rng(seed)
    y_true = np.arange(90) % 3
    probs = rng.dirichlet([1, 1, 1], 90)
    probs[np.arange(90)[: 30 + 10 * seed], y_true[: 30 + 10 * seed]] += 2  # more right answers for higher seeds
    probs /= probs.sum(axis=1, keepdims=True)
    metrics = classification_metrics(y_true, probs.argmax(axis=1), LABELS)
    metrics["calibration"] = {
        "temperature": 1.0 + seed / 10,
        "ece_before": 0.2,
        "ece_after": 0.1,
        "bins": {"before": reliability_bins(probs, y_true), "after": reliability_bins(probs, y_true)},
    }
    history = [
        {"epoch": e, "step": 10 * e, "eval_loss": 1.0 / e, "eval_macro_f1": 0.3 + seed / 10 + e / 20}
        for e in (1.0, 2.0, 3.0)
    ]
    context = {
        "model": f"model-{seed}",
        "run_id": run_id,
        "evaluated_on": {"source": "demo", "split": "test", "texts": 90},
        "training_data": {"source": "demo", "texts": {"train": 300, "validation": 400, "test": 90}},
        "settings": {"imbalance": "focal"},
    }
    write_report(
        folder / "report",
        metrics,
        LABELS,
        [f"t{i}" for i in range(90)],
        y_true,
        probs,
        history,
        raw_probs=probs,
        context=context,
    )
    return metrics


def test_two_runs_on_one_page(tmp_path, capsys):
    a, b = write_run(tmp_path / "none-seed42", 1, "run-a"), write_run(tmp_path / "focal-seed42", 3, "run-b")
    out = tmp_path / "cmp.html"
    assert main(["report", str(tmp_path / "none-seed42"), str(tmp_path / "focal-seed42"), "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"2 run(s) compared: {out}\n"
    html = out.read_text(encoding="utf-8")
    for sid in ("runs", "headline", "per-class", "confusion-matrices", "calibration", "training-curves"):
        assert f'<section id="{sid}">' in html and f'href="#{sid}"' in html, sid
    runs = re.search(r'<section id="runs">(.*?)</section>', html, re.S).group(1)
    assert "run-a" in runs and "run-b" in runs and "model-1" in runs and "model-3" in runs
    assert "only 90 test texts" in runs  # each run's own warning
    headline = re.search(r'<section id="headline">(.*?)</section>', html, re.S).group(1)
    best = "focal-seed42" if b["macro_f1"] > a["macro_f1"] else "none-seed42"
    assert f"<td>{best} (best)</td>" in headline and headline.count("(best)") == 1
    assert f"{a['macro_f1']:.4f}" in headline and f"{b['macro_f1']:.4f}" in headline
    per_class = re.search(r'<section id="per-class">(.*?)</section>', html, re.S).group(1)
    assert f'<td>joy</td><td class="num">{a["per_class"]["joy"]["f1"]:.4f}</td>' in per_class
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]+)">', html)
    assert [alt.split(":")[0].split(",")[0] for _, alt in images] == [
        "F1 per class",
        "confusion matrices",
        "reliability diagrams",
        "validation loss and macro-F1 per epoch",
    ]
    assert all(base64.b64decode(data).startswith(b"\x89PNG") for data, _ in images)
    assert not re.search(r'(?:src|href)="(?!data:|#)', html)  # self-contained: nothing fetched


def test_a_folder_without_a_report_is_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match=f"^{tmp_path}: no metrics.json there or in {tmp_path}/report; give a"):
        compare_runs([tmp_path], tmp_path / "x.html")


def scored_elsewhere(folder, texts: int = 46):
    """A run scored on other texts (the demo set's 46), and perfectly: it must not outrank the others."""
    context_file = folder / "report" / "context.json"
    context = json.loads(context_file.read_text())
    context["evaluated_on"] = {"source": "the embedded demo set", "split": "test", "texts": texts}
    context_file.write_text(json.dumps(context))
    metrics_file = folder / "report" / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    metrics.update(accuracy=1.0, macro_f1=1.0, weighted_f1=1.0, n=texts)
    metrics_file.write_text(json.dumps(metrics))


def test_only_runs_scored_on_the_same_texts_are_ranked(tmp_path):
    a, b = write_run(tmp_path / "a", 1, "run-a"), write_run(tmp_path / "b", 3, "run-b")
    write_run(tmp_path / "demo", 2, "run-demo")
    scored_elsewhere(tmp_path / "demo")
    html = compare_runs([tmp_path / "a", tmp_path / "demo", tmp_path / "b"], tmp_path / "cmp.html").read_text()
    headline = re.search(r'<section id="headline">(.*?)</section>', html, re.S).group(1)
    assert "scored on 2 different sets of texts" in headline
    groups = re.split(r"<h3>", headline)[1:]
    assert [g.split("</h3>")[0] for g in groups] == [
        "Scored on demo [test], 90 texts",
        "Scored on the embedded demo set [test], 46 texts",
    ]
    best = "b" if b["macro_f1"] > a["macro_f1"] else "a"
    assert f"<td>{best} (best)</td>" in groups[0] and headline.count("(best)") == 1  # not the demo's 1.00
    assert "<td>demo</td>" in groups[1]


def test_the_runs_are_named_relatively_and_their_settings_compared(tmp_path, monkeypatch):
    for batch in ("first", "second"):  # two compare batches: the same folder names
        write_run(tmp_path / batch / "focal-seed42", 1, f"{batch}-run")
    monkeypatch.chdir(tmp_path / "first")
    html = compare_runs([tmp_path / b / "focal-seed42" for b in ("first", "second")], tmp_path / "x.html").read_text()
    assert str(tmp_path) not in html  # never an absolute path
    runs = re.search(r'<section id="runs">(.*?)</section>', html, re.S).group(1)
    assert "<td>focal-seed42</td>" in runs and "<td>second/focal-seed42</td>" in runs
    settings = re.search(r'<section id="settings">(.*?)</section>', html, re.S).group(1)
    assert "<td>imbalance</td><td>focal</td><td>focal</td>" in settings and "<b>" not in settings  # none differ
    assert "<td>base model</td><td>model-1</td><td>model-1</td>" in settings


def test_the_page_fits_a_laptop_screen(tmp_path, browser):
    for i, name in enumerate(("none-seed42", "focal-seed42", "class-weight-seed42", "demo")):
        write_run(tmp_path / name, i, f"{i}" * 32)
        context_file = tmp_path / name / "report" / "context.json"
        context = json.loads(context_file.read_text())
        context["training_data"]["splits"] = {
            "train": {"from": "emotion/train.txt", "carved": False},
            "validation": {"from": "emotion/train.txt", "carved": True},
            "test": {"from": "emotion/val.txt", "carved": False},
        }
        context["settings"] = {
            "epochs (at most)": "3",
            "batch size": "32",
            "learning rate": "0.0001",
            "imbalance": f"{name.rsplit('-', 1)[0]} (auto)",
            "loss": "weighted-ce",
            "max_length": "64",
            "precision": "bf16",
            "seed": "42",
            "temperature": "1.234",
            "class bias": "no",
        }
        context_file.write_text(json.dumps(context))
    out = compare_runs(
        [tmp_path / n for n in ("none-seed42", "focal-seed42", "class-weight-seed42", "demo")], tmp_path / "c.html"
    )
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(out.as_uri())
    sizes = page.evaluate(
        """() => [...document.querySelectorAll('table')].map(t => ({
            section: t.closest('section').id, width: t.getBoundingClientRect().width,
            room: t.closest('section').getBoundingClientRect().width,
            tallest: Math.max(...[...t.rows].map(r => r.getBoundingClientRect().height)),
            narrowest: Math.min(...[...t.rows[0].cells].map(c => c.getBoundingClientRect().width))}))"""
    )
    page.close()
    for table in sizes:
        assert table["width"] <= table["room"] + 1, table  # within the page's column
        assert table["tallest"] < 100, table  # rows of a few lines, not of one word each
        assert table["narrowest"] >= 60, table
