"""The HTML error-analysis page: every section, self-contained (no server, nothing fetched), texts escaped."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from emoclf.calibration import plot_reliability
from emoclf.evaluation.html import SECTIONS
from emoclf.evaluation.metrics import classification_metrics
from emoclf.evaluation.report import write_report

LABELS = ["anger", "joy", "fear"]
EVIL = "<script>alert('x')</script> i am furious & \"done\""


def evaluation(n: int = 60, seed: int = 0):
    """Texts, labels and probabilities with right and wrong answers at known confidences."""
    rng = np.random.default_rng(seed)
    y_true = np.arange(n) % 3
    probs = rng.dirichlet([1, 1, 1], n)
    texts = [f"text number {i}" for i in range(n)]
    # Row 0: the surest wrong prediction (anger read as joy); row 1: the least sure correct one.
    probs[0], texts[0] = [0.01, 0.98, 0.01], EVIL
    probs[1], texts[1] = [0.32, 0.34, 0.34], "barely right"
    y_true[1] = 1
    return texts, y_true, probs


def section(html: str, sid: str) -> str:
    return re.search(rf'<section id="{sid}">(.*?)</section>', html, re.S).group(1)


def write(tmp_path, calibrated: bool):
    texts, y_true, probs = evaluation()
    metrics = classification_metrics(y_true, probs.argmax(axis=1), LABELS)
    if calibrated:
        metrics["calibration"] = {"temperature": 1.734, "ece_before": 0.2101, "ece_after": 0.0456}
        metrics["class_bias"] = {
            "bias": {"anger": 0.0, "joy": -0.4, "fear": 0.2},
            "macro_f1_without": 0.41,
            "macro_f1_with": 0.44,
            "helped": True,
        }
    # A plot left in the folder by an earlier evaluation: never shown unless this one draws its own.
    plot_reliability(probs, probs, y_true, tmp_path / "reliability.png")
    history = [{"epoch": 1.0, "loss": 1.1}, {"epoch": 1.0, "eval_loss": 1.0, "eval_macro_f1": 0.4}]
    paths = write_report(
        tmp_path, metrics, LABELS, texts, y_true, probs, history, raw_probs=probs if calibrated else None
    )
    return paths, paths["html"].read_text(encoding="utf-8")


def test_every_section_present_and_earlier_outputs_kept(tmp_path):
    paths, html = write(tmp_path, calibrated=True)
    assert paths["html"] == tmp_path / "report.html"
    for name in (
        "metrics.json",
        "report.md",
        "confusion_matrix.png",
        "per_class_f1.png",
        "training_curves.png",
        "misclassified.csv",
    ):
        assert (tmp_path / name).is_file(), name
    for sid in (
        "headline",
        "class-distribution",
        "per-class",
        "confusion-matrix",
        "calibration",
        "confusion-pairs",
        "low-confidence-correct",
        "high-confidence-wrong",
    ):
        assert f'<section id="{sid}">' in html and f'href="#{sid}"' in html, sid
    assert len(SECTIONS) == 8


def test_images_are_embedded_and_nothing_is_fetched(tmp_path):
    _, html = write(tmp_path, calibrated=True)
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]+)">', html)
    assert {alt for _, alt in images} == {"training curves", "F1 per class", "confusion matrix", "reliability diagram"}
    assert all(base64.b64decode(data).startswith(b"\x89PNG") for data, _ in images)
    assert "http://" not in html and "https://" not in html
    # Only data URIs, in-page anchors, and the file of every wrong prediction written beside the page.
    assert re.findall(r'(?:src|href)="(?!data:|#)([^"]*)"', html) == ["misclassified.csv"]
    assert not re.search(r"<(?:script|link|iframe|object)\b|@import|url\(", html, re.I)


def test_texts_are_escaped(tmp_path):
    _, html = write(tmp_path, calibrated=True)
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; i am furious &amp; &quot;done&quot;" in html


def test_calibration_numbers_and_plot(tmp_path):
    _, html = write(tmp_path, calibrated=True)
    cal = section(html, "calibration")
    assert all(s in cal for s in ("1.734", "0.2101", "0.0456", "joy -0.40", "0.4100 / 0.4400"))
    assert 'alt="reliability diagram"' in cal


def test_without_calibration_says_so_and_hides_stale_plot(tmp_path):
    _, html = write(tmp_path, calibrated=False)
    cal = section(html, "calibration")
    assert "No calibration figures in this evaluation" in cal and "<img" not in cal


def test_examples_and_confusion_pairs(tmp_path):
    texts, y_true, probs = evaluation()
    _, html = write(tmp_path, calibrated=False)
    wrong = section(html, "high-confidence-wrong")
    assert wrong.index("&lt;script&gt;") < wrong.index("text number")  # surest wrong first
    assert wrong.count("<tr>") == 1 + 10
    correct = section(html, "low-confidence-correct")
    assert correct.index("barely right") < correct.index("text number")  # least sure correct first
    pairs = section(html, "confusion-pairs")
    y_pred = probs.argmax(axis=1)
    counts = {(t, p): int(((y_true == t) & (y_pred == p)).sum()) for t in range(3) for p in range(3) if t != p}
    true, pred, n = re.search(r"<h3>true (\w+) &rarr; predicted (\w+): (\d+) text", pairs).groups()
    assert int(n) == counts[LABELS.index(true), LABELS.index(pred)] == max(counts.values())  # most frequent first
    assert pairs.count("<h3>") == min(5, sum(c > 0 for c in counts.values()))


@pytest.mark.slow
def test_evaluate_command_writes_html(trained, tmp_path):
    from emoclf.cli import main
    from emoclf.data.io import demo_path

    assert main(["evaluate", "--model", str(trained.model_dir), str(demo_path()), "--out", str(tmp_path)]) == 0
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    # The saved model's own temperature, and ECE with and without it, on these texts.
    cal = section(html, "calibration")
    assert "ECE before temperature scaling" in cal and 'alt="reliability diagram"' in cal
    assert (trained.output_dir / "report" / "report.html").is_file()


def context_for(n_validation: int = 46) -> dict:
    from emoclf.data import Labelled
    from emoclf.evaluation.context import report_context
    from emoclf.modeling import BundleMeta

    texts, y_true, _ = evaluation()
    meta = BundleMeta(
        labels=LABELS,
        preprocess={},
        max_length=24,
        base_model="sentence-transformers/all-MiniLM-L6-v2",
        temperature=1.25,
        trained_at="2026-11-27T05:12:18+00:00",
        run_id="abc123",
        emoclf_version="0.1.0",
        config={
            "train": {
                "epochs": 3.0,
                "batch_size": 32,
                "learning_rate": 1e-4,
                "imbalance": "auto",
                "seed": 42,
                "precision": "auto",
            }
        },
        data={
            "source": "the embedded demo set",
            "texts": {"train": 368, "validation": n_validation, "test": 60},
            "class_counts": {
                "train": {"anger": 120, "joy": 130, "fear": 118},
                "validation": {"anger": 15, "joy": 16, "fear": 15},
                "test": {"anger": 20, "joy": 20, "fear": 20},
            },
        },
        training={"imbalance_strategy": "class-weight", "loss": "weighted-ce", "precision": "fp32"},
    )
    return report_context(meta, Labelled(texts, y_true, "demo.csv", "test"), "runs/latest/model")


def test_the_header_says_what_the_figures_describe(tmp_path):
    texts, y_true, probs = evaluation()
    metrics = classification_metrics(y_true, probs.argmax(axis=1), LABELS)
    paths = write_report(tmp_path, metrics, LABELS, texts, y_true, probs, context=context_for())
    html = paths["html"].read_text(encoding="utf-8")
    head = re.search(r"<header>(.*?)</header>", html, re.S).group(1)
    for fact in (
        "sentence-transformers/all-MiniLM-L6-v2 (runs/latest/model)",
        "2026-11-27T05:12:18+00:00",
        "with emoclf 0.1.0",
        "in MLflow run abc123",
        "the embedded demo set: train 368, validation 46, test 60",
        "demo.csv, test: 60 texts",
        "imbalance class-weight (auto)",
        "epochs (at most) 3",
        "temperature 1.250",
        "learning rate 0.0001",
        "by emoclf",
    ):
        assert fact in head, fact
    # Too small to trust, and said so where it is read.
    assert head.count('class="warning"') == 2
    assert "only 60 test texts (fewest: 20 anger)" in head and "only 46 validation texts" in head
    assert '<div class="card">test texts<b>60</b></div>' in html
    dist = section(html, "class-distribution")
    assert '<td>anger</td><td class="num">120 (33%)</td>' in dist and "scored (test)" in dist
    assert json.loads((tmp_path / "context.json").read_text())["run_id"] == "abc123"


def test_no_warning_when_the_splits_are_large_enough():
    from emoclf.evaluation.context import split_warnings

    metrics = {"n": 2000, "accuracy": 0.93, "per_class": {lab: {"support": 300} for lab in LABELS}}
    assert split_warnings(metrics, context_for(n_validation=1600)) == []
    metrics["per_class"]["fear"]["support"] = 12  # a rare class is too few to trust its F1
    assert split_warnings(metrics, context_for(n_validation=1600)) == [
        "only 2000 test texts (fewest: 12 fear): accuracy is known to ±0.01 (95% interval) and one text moves a "
        "class's recall by up to 0.08; smaller differences between models are noise"
    ]


def test_the_curves_star_the_kept_checkpoint_on_an_axis_that_does_not_magnify_noise():
    from matplotlib.figure import Figure

    from emoclf.evaluation.report import draw_training_curves, kept_checkpoint

    history = [
        {"epoch": 1.0, "loss": 0.9},
        {"epoch": 1.0, "eval_loss": 0.30, "eval_macro_f1": 0.8825},
        {"epoch": 2.0, "eval_loss": 0.25, "eval_macro_f1": 0.9025},
        {"epoch": 3.0, "eval_loss": 0.26, "eval_macro_f1": 0.9025},  # as good, not better: the Trainer keeps epoch 2
    ]
    assert kept_checkpoint(history)["epoch"] == 2.0
    ax1, ax2 = Figure().subplots(1, 2)
    draw_training_curves(ax1, ax2, history)
    low, high = ax2.get_ylim()
    assert (round(low, 2), round(high, 2)) == (0.85, 0.95)  # 0.1 wide on round ticks, not 0.8825-0.9025
    star = [line for line in ax2.get_lines() if line.get_marker() == "*"]
    assert [(line.get_xdata()[0], line.get_label()) for line in star] == [(2.0, "kept checkpoint: epoch 2, 0.902")]


def test_the_header_names_each_splits_file_and_the_pairs_link_every_wrong_prediction(tmp_path):
    texts, y_true, probs = evaluation()
    metrics = classification_metrics(y_true, probs.argmax(axis=1), LABELS)
    context = context_for(1600)
    context["training_data"]["splits"] = {
        "train": {"from": "emotion/train.txt", "carved": False},
        "validation": {"from": "emotion/train.txt", "carved": True},
        "test": {"from": "emotion/val.txt", "carved": False},
    }
    html = write_report(tmp_path, metrics, LABELS, texts, y_true, probs, context=context)["html"].read_text()
    head = re.search(r"<header>(.*?)</header>", html, re.S).group(1)
    assert "train 368 and validation 1,600 (carved out) from emotion/train.txt; test 60 from emotion/val.txt" in head
    pairs = section(html, "confusion-pairs")
    assert '<a href="misclassified.csv">misclassified.csv</a>' in pairs
    biggest = pairs.split("<h3>")[1]
    n = int(re.match(r"true \w+ &rarr; predicted \w+: (\d+) text", biggest).group(1))
    shown = biggest.split("<details>")[0].count("<tr>") - 1
    assert shown == min(n, 5)
    if n > 5:  # the rest behind a click, up to 25 more
        assert f"<summary>{min(n - 5, 25)} more</summary>" in biggest
