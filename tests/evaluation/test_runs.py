"""`emoclf report RUN_DIR ...`: runs side by side in one self-contained page, read from their report files."""

from __future__ import annotations

import base64
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
