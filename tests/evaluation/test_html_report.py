"""The HTML error-analysis page: every section, self-contained (no server, nothing fetched), texts escaped."""

from __future__ import annotations

import base64
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
        metrics["class_bias"] = {"bias": {"anger": 0.0, "joy": -0.4, "fear": 0.2}, "macro_f1_without": 0.41,
                                 "macro_f1_with": 0.44, "helped": True}
    # A plot left in the folder by an earlier evaluation: never shown unless this one draws its own.
    plot_reliability(probs, probs, y_true, tmp_path / "reliability.png")
    history = [{"epoch": 1.0, "loss": 1.1}, {"epoch": 1.0, "eval_loss": 1.0, "eval_macro_f1": 0.4}]
    paths = write_report(tmp_path, metrics, LABELS, texts, y_true, probs, history,
                         raw_probs=probs if calibrated else None)
    return paths, paths["html"].read_text(encoding="utf-8")


def test_every_section_present_and_earlier_outputs_kept(tmp_path):
    paths, html = write(tmp_path, calibrated=True)
    assert paths["html"] == tmp_path / "report.html"
    for name in ("metrics.json", "report.md", "confusion_matrix.png", "per_class_f1.png", "training_curves.png",
                 "misclassified.csv"):
        assert (tmp_path / name).is_file(), name
    for sid in ("headline", "class-distribution", "per-class", "confusion-matrix", "calibration", "confusion-pairs",
                "low-confidence-correct", "high-confidence-wrong"):
        assert f'<section id="{sid}">' in html and f'href="#{sid}"' in html, sid
    assert len(SECTIONS) == 8


def test_images_are_embedded_and_nothing_is_fetched(tmp_path):
    _, html = write(tmp_path, calibrated=True)
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]+)">', html)
    assert {alt for _, alt in images} == {"training curves", "F1 per class", "confusion matrix", "reliability diagram"}
    assert all(base64.b64decode(data).startswith(b"\x89PNG") for data, _ in images)
    assert "http://" not in html and "https://" not in html
    assert not re.search(r'(?:src|href)="(?!data:|#)', html)  # only data URIs and in-page anchors
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
