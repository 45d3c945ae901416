"""``emoclf report RUN_DIR ...``: finished runs side by side in one self-contained HTML page.

Like Ludwig's ``compare_performance``, for any runs: trainings with other models, data, settings or
seeds, ``emoclf compare``'s children, ``emoclf evaluate`` reports. Each run is read from the files its
report wrote (``metrics.json``, ``context.json``, ``history.json``), so no model is loaded. Runs are
grouped by the texts they were scored on, and only runs scored on the same texts are ranked; the page
fits a laptop screen (settings are a table of their own, one column per run) and names files and
folders relatively (``source_name``), never by a local absolute path.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import numpy as np

from emoclf.calibration import draw_reliability
from emoclf.errors import ConfigError
from emoclf.evaluation.context import data_origin, now, split_warnings
from emoclf.evaluation.html import image, page, table
from emoclf.evaluation.metrics import score
from emoclf.evaluation.report import draw_confusion, draw_training_curves, figure
from emoclf.layout import CONTEXT_JSON, HISTORY_JSON, METRICS_JSON
from emoclf.naming import source_name

SECTIONS = {
    "runs": "Runs",
    "settings": "Settings",
    "headline": "Headline metrics",
    "per-class": "F1 per class",
    "confusion-matrices": "Confusion matrices",
    "calibration": "Calibration",
    "training-curves": "Training curves",
}
PER_ROW = 3  # small multiples per figure row


@dataclass
class Run:
    name: str
    folder: Path
    metrics: dict
    context: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return list(self.metrics["per_class"])

    @property
    def scored_on(self) -> tuple[str, str, int]:
        """The texts its figures are on: source (named as ``source_name`` does, also in reports written before
        it did), split and count. Runs are ranked against each other only when these are the same."""
        seen = self.context.get("evaluated_on", {})
        return source_name(seen.get("source", "unknown")), str(seen.get("split", "?")), int(self.metrics["n"])


def read_run(path: str | Path) -> Run:
    """A run from a training's output folder (its ``report/``) or from a report folder itself."""
    folder = Path(path)
    report = folder / "report" if (folder / "report" / METRICS_JSON).is_file() else folder
    if not (report / METRICS_JSON).is_file():
        raise ConfigError(
            f"{folder}: no {METRICS_JSON} there or in {folder / 'report'}; give a training's output "
            "folder (emoclf train --output-dir) or a report folder (emoclf evaluate --out)"
        )

    def read(name: str, empty):
        return json.loads((report / name).read_text(encoding="utf-8")) if (report / name).is_file() else empty

    return Run(folder.name, folder, read(METRICS_JSON, {}), read(CONTEXT_JSON, {}), read(HISTORY_JSON, []))


def png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def describe(key: tuple[str, str, int]) -> str:
    source, split, n = key
    return f"{source} [{split}], {n:,} texts"


def runs_table(runs: list[Run]) -> str:
    """What each run is: its model's name, the data it learnt from and was scored on, when, its MLflow run (the
    first 8 characters, as MLflow's UI shows it); the base model and settings are in ``settings_table``."""
    rows = []
    for r in runs:
        c = r.context
        trained = c.get("training_data", {})
        rows.append(
            [
                r.name,
                c.get("model_name") or c.get("model", "unknown"),
                data_origin(trained) if trained else "not recorded",
                describe(r.scored_on),
                (c.get("trained_at") or "-")[:16].replace("T", " "),
                (c.get("run_id") or "-")[:8],
            ]
        )
    warnings = "".join(
        f'<p class="warning"><b>{escape(r.name)}:</b> {escape(w)}.</p>'
        for r in runs
        for w in split_warnings(r.metrics, r.context)
    )
    return table(["run", "model", "trained on", "scored on", "trained (UTC)", "MLflow run"], rows) + warnings


def settings_table(runs: list[Run]) -> str:
    """One row per setting, one column per run; rows where the runs differ come first, in bold."""
    per_run = [{"base model": r.context.get("model", "unknown"), **r.context.get("settings", {})} for r in runs]
    keys = list(dict.fromkeys(k for s in per_run for k in s))
    if not keys:
        return '<p class="note">No settings recorded in these runs.</p>'
    differ = [k for k in keys if len({s.get(k) for s in per_run}) > 1]
    rows = [[k, *(s.get(k, "-") for s in per_run)] for k in differ + [k for k in keys if k not in differ]]
    note = (
        f'<p class="note">{len(differ)} setting(s) differ between the runs: the first rows.</p>'
        if differ and len(runs) > 1
        else ""
    )
    html = table(["setting", *(r.name for r in runs)], rows)
    for k in differ:  # the cell of a differing setting's name, in bold (every cell is escaped by table)
        html = html.replace(f"<tr><td>{escape(k)}</td>", f"<tr><td><b>{escape(k)}</b></td>", 1)
    return note + html


def groups(runs: list[Run]) -> dict[tuple[str, str, int], list[Run]]:
    """Runs by the texts they were scored on, in the order first met."""
    out: dict[tuple[str, str, int], list[Run]] = {}
    for r in runs:
        out.setdefault(r.scored_on, []).append(r)
    return out


def headline(runs: list[Run]) -> str:
    """One table per set of texts scored on; "best" marks the highest macro-F1 within a table of two or more."""
    by_texts = groups(runs)
    parts = (
        [
            f'<p class="note">These runs were scored on {len(by_texts)} different sets of texts: each is a table of '
            "its own, and runs are ranked only against runs scored on the same texts.</p>"
        ]
        if len(by_texts) > 1
        else []
    )
    for key, members in by_texts.items():
        best = max(r.metrics["macro_f1"] for r in members)
        rows = [
            [
                r.name + (" (best)" if r.metrics["macro_f1"] == best and len(members) > 1 else ""),
                f"{r.metrics['accuracy']:.4f}",
                f"{r.metrics['macro_f1']:.4f}",
                f"{r.metrics['weighted_f1']:.4f}",
                r.metrics["n"],
                score(r.metrics.get("calibration", {}).get("ece_after")),
            ]
            for r in members
        ]
        title = f"<h3>Scored on {escape(describe(key))}</h3>" if len(by_texts) > 1 else ""
        parts.append(
            title + table(["run", "accuracy", "macro-F1", "weighted F1", "texts", "ECE"], rows, numeric={1, 2, 3, 4, 5})
        )
    return "".join(parts)


def per_class(runs: list[Run], labels: list[str]) -> str:
    f1 = [[(r.metrics["per_class"].get(lab) or {}).get("f1") for lab in labels] for r in runs]
    rows = [[lab, *(score(f1[i][j]) for i in range(len(runs)))] for j, lab in enumerate(labels)]
    fig = figure(2.5 + 0.45 * len(labels) * len(runs), 4.2)
    ax = fig.subplots()
    width = 0.8 / len(runs)
    x = np.arange(len(labels))
    for i, r in enumerate(runs):
        ax.bar(
            x + (i - (len(runs) - 1) / 2) * width,
            [v or 0.0 for v in f1[i]],
            width,
            label=f"{r.name} (macro-F1 {r.metrics['macro_f1']:.3f})",
        )
    ax.set(xticks=x, ylim=(0, 1.0), ylabel="F1", title="F1 per class")
    ax.set_xticklabels(labels, rotation=30, ha="right")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=min(len(runs), 3), frameon=False)
    table_html = table(["class", *(r.name for r in runs)], rows, numeric=set(range(1, len(runs) + 1)))
    return table_html + image(png(fig), "F1 per class, every run")


def small_multiples(runs: list[Run], draw, height: float, alt: str, legend: bool = False) -> str:
    """One panel per run, ``PER_ROW`` to a figure row; ``draw(ax, run)`` fills a panel; with ``legend``, one
    legend for the row, from its first panel."""
    parts = []
    for start in range(0, len(runs), PER_ROW):
        chunk = runs[start : start + PER_ROW]
        fig = figure(3.5 * len(chunk), height)
        axes = np.atleast_1d(fig.subplots(1, len(chunk)))
        for ax, run in zip(axes, chunk):
            draw(ax, run)
        if legend:
            fig.legend(
                *axes[0].get_legend_handles_labels(),
                loc="lower center",
                ncol=3,
                frameon=False,
                bbox_to_anchor=(0.5, -0.08),
            )
        parts.append(image(png(fig), f"{alt}: {', '.join(r.name for r in chunk)}"))
    return "".join(parts)


def confusion(runs: list[Run]) -> str:
    def draw(ax, run):
        draw_confusion(ax, np.asarray(run.metrics["confusion_matrix"]), run.labels, run.name, normalised=True)

    return '<p class="note">Share of each true class (rows) given each label (columns).</p>' + small_multiples(
        runs, draw, 3.8, "confusion matrices"
    )


def calibration(runs: list[Run]) -> str:
    rows = [
        [r.name, *(score(r.metrics.get("calibration", {}).get(k)) for k in ("temperature", "ece_before", "ece_after"))]
        for r in runs
    ]
    with_bins = [r for r in runs if r.metrics.get("calibration", {}).get("bins")]

    def draw(ax, run):
        bins = run.metrics["calibration"]["bins"]
        draw_reliability(ax, bins["before"], bins["after"], title=run.name, legend=False)

    plots = small_multiples(with_bins, draw, 4.2, "reliability diagrams", legend=True) if with_bins else ""
    return table(["run", "temperature", "ECE before", "ECE after"], rows, numeric={1, 2, 3}) + plots


def curves(runs: list[Run]) -> str:
    trained = [r for r in runs if r.history]
    if not trained:
        return '<p class="note">No training history in these runs (reports of emoclf evaluate have none).</p>'
    fig = figure(10, 4)
    ax1, ax2 = fig.subplots(1, 2)
    for r in trained:
        draw_training_curves(ax1, ax2, [h for h in r.history if "eval_loss" in h], r.name)
    ax2.legend(fontsize=9)
    ax1.set_title("validation loss")
    return image(png(fig), "validation loss and macro-F1 per epoch, every run")


def compare_runs(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Write the comparison page of ``run_dirs`` to ``out``; returns its path."""
    runs = [read_run(d) for d in run_dirs]
    if len({r.name for r in runs}) < len(runs):  # same folder names (compare's children of two batches)
        for r in runs:
            r.name = source_name(r.folder)
    labels = list(dict.fromkeys(lab for r in runs for lab in r.labels))
    bodies = {
        "runs": runs_table(runs),
        "settings": settings_table(runs),
        "headline": headline(runs),
        "per-class": per_class(runs, labels),
        "confusion-matrices": confusion(runs),
        "calibration": calibration(runs),
        "training-curves": curves(runs),
    }
    head = f'<p class="note">{len(runs)} run(s), compared {now()}.</p>'
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page("emoclf: runs compared", head, bodies, SECTIONS), encoding="utf-8")
    return out
