"""``emoclf audit``: training rows whose given label is likely wrong, found by confident learning (cleanlab).

Every training row gets class probabilities from a model that never saw it (out of fold, over
stratified folds); cleanlab's ``find_label_issues`` flags the rows whose given label those
probabilities contradict beyond what the class's own typical confidence explains, and
``get_label_quality_scores`` (self-confidence: the probability of the given label) ranks them.

The rows audited are the training split that ``load_data`` gives ``emoclf train`` with the same data
and split settings (validation and test carved out alike, duplicates and leaked texts dropped), so
``emoclf train --exclude-label-issues label_issues.csv`` finds every row the audit flagged.

The probabilities come from ``linear`` (a logistic regression on the base model's frozen, mean-pooled
embeddings, computed once: minutes on 2 cores), ``tfidf`` (a logistic regression on word 1-2-gram
TF-IDF: seconds, and on hashtag-labelled data the stronger of the two fast ones) or ``finetune``
(``training.train`` on the other folds, validated and calibrated on the validation split, predicting
the held-out fold: one fine-tuning per fold).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from emoclf import console, training
from emoclf.config import AuditOptions, Config
from emoclf.data import DEMO_SOURCE, PreparedData, load_data
from emoclf.errors import DataError
from emoclf.evaluation.html import page, table
from emoclf.evaluation.metrics import metric_label, metric_labels
from emoclf.hardware import detect
from emoclf.inference import Predictor
from emoclf.modeling import hub_id, load_encoder, model_max_length
from emoclf.preprocess import Preprocessor
from emoclf.tracking import ended_run, make_tracker

log = logging.getLogger(__name__)

ISSUES_CSV = "label_issues.csv"
ISSUES_HTML = "label_issues.html"
SUMMARY_JSON = "audit.json"
FOLDS_DIR = "folds"  # the finetune audit's fold trainings, removed once each has predicted its fold
TFIDF = "word 1-2-gram TF-IDF"  # what a tfidf audit's summary names as its model
HTML_ROWS = 500  # the page lists the lowest-quality rows; the CSV has them all
SECTIONS = {"summary": "Summary", "per-class": "Suspected errors per class", "issues": "Suspicious rows"}


@dataclass
class AuditResult:
    out: Path
    issues: pd.DataFrame  # the flagged rows, lowest label quality first (the CSV's rows)
    summary: dict  # audit.json
    paths: dict[str, Path]
    run_id: str | None


def embed(texts: list[str], model_name: str, batch_size: int, max_length: int | None = None) -> np.ndarray:
    """Mean-pooled last hidden states of the frozen base model (the pooling all-MiniLM-L6-v2 was trained with)."""
    import torch

    tokenizer, model = load_encoder(model_name)
    limit = min(max_length or 10**9, model_max_length(tokenizer, model.config))
    enc = tokenizer(texts, truncation=True, max_length=limit)
    order = np.argsort([len(ids) for ids in enc["input_ids"]], kind="stable")  # similar lengths share a batch
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    names = [n for n in tokenizer.model_input_names if n in enc]
    with torch.inference_mode():
        for start in console.progress(range(0, len(texts), batch_size), desc="embedding", unit="batch"):
            rows = order[start : start + batch_size]
            batch = tokenizer.pad({n: [enc[n][i] for i in rows] for n in names}, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out[rows] = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().numpy()
    return out


def linear_probabilities(cfg: Config, data: PreparedData, folds: StratifiedKFold) -> np.ndarray:
    """Out-of-fold probabilities of a logistic regression on frozen embeddings."""
    train = data.splits["train"]
    x = embed(train["text"].tolist(), cfg.model.model, cfg.train.eval_batch_size, cfg.model.max_length)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return cross_val_predict(clf, x, train["label_id"].to_numpy(), cv=folds, method="predict_proba")


def scorer(cfg: Config, opts: AuditOptions) -> str:
    """The model behind the probabilities, as the summary, the page and MLflow name it."""
    return TFIDF if opts.audit_model == "tfidf" else hub_id(cfg.model.model)


def tfidf_probabilities(data: PreparedData, folds: StratifiedKFold) -> np.ndarray:
    """Out-of-fold probabilities of a logistic regression on word 1-2-gram TF-IDF (vocabulary fitted per fold).

    C=10 (weak regularisation): on the emotion training split its out-of-fold accuracy is 0.86 against 0.79 at
    sklearn's C=1, measured on the training rows only."""
    train = data.splits["train"]
    clf = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True), LogisticRegression(C=10.0, max_iter=2000)
    )
    return cross_val_predict(
        clf, train["text"].tolist(), train["label_id"].to_numpy(), cv=folds, method="predict_proba"
    )


def fold_data(data: PreparedData, fit: np.ndarray) -> PreparedData:
    """What one fold of a finetune audit trains on: the training rows ``fit`` and the whole validation split."""
    return PreparedData(
        {"train": data.splits["train"].iloc[fit].reset_index(drop=True), "validation": data.splits["validation"]},
        data.labels,
        data.report,
    )


def finetune_probabilities(cfg: Config, data: PreparedData, folds: StratifiedKFold, work: Path) -> np.ndarray:
    """Out-of-fold probabilities of one fine-tuning per fold (``training.train`` with the config's settings)."""
    train = data.splits["train"]
    probs = np.zeros((len(train), len(data.labels)))
    for k, (fit, held) in enumerate(folds.split(train, train["label_id"])):
        log.info("audit: fine-tuning fold %d of %d on %d rows", k + 1, folds.get_n_splits(), len(fit))
        fold_cfg = cfg.replace(
            output_dir=str(work / f"fold-{k + 1}"), overwrite=True, tracking=False, register_name=None
        )
        result = training.train(fold_cfg, fold_data(data, fit), holdout=None)
        predictor = Predictor.load(result.model_dir, batch_size=cfg.train.eval_batch_size)
        probs[held] = predictor.probabilities(train["text"].iloc[held].tolist(), progress=False)
        shutil.rmtree(work / f"fold-{k + 1}")
    shutil.rmtree(work, ignore_errors=True)
    return probs


def find_issues(train: pd.DataFrame, labels: list[str], probs: np.ndarray, filter_by: str) -> pd.DataFrame:
    """The rows cleanlab flags, lowest label quality first, with the given and the suggested (most likely) label."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    given = train["label_id"].to_numpy()
    flagged = find_label_issues(given, probs, filter_by=filter_by, n_jobs=1)
    suggested = probs.argmax(axis=1)
    rows = np.arange(len(given))
    frame = pd.DataFrame(
        {
            "row": train["row"],
            "text": train["text"],
            "raw_text": train["raw_text"],
            "given_label": train["label"],
            "suggested_label": np.asarray(labels)[suggested],
            "label_quality": get_label_quality_scores(given, probs),
            "prob_given": probs[rows, given],
            "prob_suggested": probs[rows, suggested],
        }
    )
    issues = frame.loc[flagged].sort_values("label_quality", kind="stable").reset_index(drop=True)
    issues.insert(0, "rank", range(1, len(issues) + 1))
    return issues


def summarise(
    cfg: Config,
    opts: AuditOptions,
    data: PreparedData,
    probs: np.ndarray,
    issues: pd.DataFrame,
    seconds: dict[str, float],
) -> dict:
    """audit.json: counts per class, the out-of-fold accuracy, the settings, the time and the CPU it took."""
    import cleanlab

    train = data.splits["train"]
    per_class = {
        lab: {
            "rows": int((train["label"] == lab).sum()),
            "issues": int((issues["given_label"] == lab).sum()),
            "suggested": {
                k: int(v) for k, v in issues.loc[issues["given_label"] == lab, "suggested_label"].value_counts().items()
            },
        }
        for lab in data.labels
    }
    d = cfg.data
    return {
        "rows_audited": len(train),
        "issues": len(issues),
        "issue_share": len(issues) / len(train),
        "per_class": per_class,
        "out_of_fold_accuracy": float((probs.argmax(axis=1) == train["label_id"].to_numpy()).mean()),
        "settings": {
            "audit_model": opts.audit_model,
            "folds": opts.folds,
            "filter_by": opts.filter_by,
            "model": scorer(cfg, opts),
            "seed": cfg.train.seed,
            "data": d.data or DEMO_SOURCE,
            "val_data": d.val_data,
            "test_data": d.test_data,
            "val_size": d.val_size,
            "test_size": d.test_size,
            "split_seed": d.split_seed,
        },
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "cpu": detect().to_dict(),
        "cleanlab_version": cleanlab.__version__,
    }


def render(issues: pd.DataFrame, summary: dict) -> str:
    """label_issues.html: what was audited and how, the counts per class, the ranked rows."""
    s = summary["settings"]
    facts = {
        "data": f"{s['data']}, training split: {summary['rows_audited']} rows",
        "probabilities": f"{s['audit_model']} ({s['model']}), out of fold over {s['folds']} stratified folds, "
        f"seed {s['seed']}; accuracy {summary['out_of_fold_accuracy']:.4f}",
        "issues found by": f"cleanlab {summary['cleanlab_version']} find_label_issues ({s['filter_by']}), "
        "ranked by label quality (probability of the given label)",
        "took": f"{summary['seconds']['total']:.0f} s on {summary['cpu']['cpu']} ({summary['cpu']['cores']} cores)",
    }
    head = (
        "<header><dl>"
        + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts.items())
        + "</dl></header>"
    )
    cards = "".join(
        f'<div class="card">{escape(k)}<b>{escape(v)}</b></div>'
        for k, v in {
            "rows audited": str(summary["rows_audited"]),
            "suspected errors": str(summary["issues"]),
            "share": f"{summary['issue_share']:.2%}",
        }.items()
    )
    per_class = [
        [
            lab,
            c["rows"],
            c["issues"],
            f"{c['issues'] / max(c['rows'], 1):.2%}",
            ", ".join(f"{k} {v}" for k, v in c["suggested"].items()),
        ]
        for lab, c in summary["per_class"].items()
    ]
    shown = issues.head(HTML_ROWS)
    rows = [
        [
            r.rank,
            r.row,
            r.raw_text,
            r.given_label,
            r.suggested_label,
            f"{r.label_quality:.3f}",
            f"{r.prob_suggested:.3f}",
        ]
        for r in shown.itertuples()
    ]
    more = (
        f'<p class="note">The {HTML_ROWS} lowest-quality of {len(issues)} rows; {ISSUES_CSV} lists them all.</p>'
        if len(issues) > HTML_ROWS
        else ""
    )
    bodies = {
        "summary": f'<div class="cards">{cards}</div>',
        "per-class": table(
            ["given label", "rows", "suspected errors", "share", "suggested instead"], per_class, numeric={1, 2, 3}
        ),
        "issues": more
        + table(
            ["rank", "source row", "text", "given", "suggested", "label quality", "p(suggested)"],
            rows,
            numeric={0, 1, 5, 6},
            text={2},
        ),
    }
    return page("emoclf label audit", head, bodies, SECTIONS)


def write_audit(out: Path, issues: pd.DataFrame, summary: dict) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / ISSUES_CSV, "html": out / ISSUES_HTML, "json": out / SUMMARY_JSON}
    issues.to_csv(paths["csv"], index=False)
    paths["html"].write_text(render(issues, summary), encoding="utf-8")
    paths["json"].write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return paths


def stratified_folds(data: PreparedData, k: int, seed: int) -> StratifiedKFold:
    """The audit's seeded folds; refused when a class has fewer training rows than folds (a fold would lack it)."""
    counts = data.splits["train"]["label"].value_counts()
    if k < 2 or counts.min() < k:
        raise DataError(
            f"--folds {k}: every class needs at least that many training rows and k at least 2 "
            f"('{counts.idxmin()}' has {counts.min()}); give --folds between 2 and {max(counts.min(), 2)}"
        )
    return StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)


def audit(cfg: Config, opts: AuditOptions) -> AuditResult:
    """Out-of-fold probabilities for every training row, cleanlab's label issues, the files, the MLflow run."""
    started = time.perf_counter()
    out = Path(opts.out)
    data = load_data(cfg.data, Preprocessor(cfg.preprocess))
    folds = stratified_folds(data, opts.folds, cfg.train.seed)
    if cfg.tracking.tracking:
        metric_labels(data.labels)
    tracker = make_tracker(cfg.tracking, local_dir=out)
    tracker.start(cfg.tracking.run_name or f"audit-{opts.audit_model}")
    with ended_run(tracker):
        settings = cfg.to_dict()
        tracker.log_params(
            {
                "audit": {"audit_model": opts.audit_model, "folds": opts.folds, "filter_by": opts.filter_by},
                "data": settings["data"],
                "preprocess": settings["preprocess"],
                "model": {"model": scorer(cfg, opts)},
            }
        )
        fitted = time.perf_counter()
        if opts.audit_model == "linear":
            probs = linear_probabilities(cfg, data, folds)
        elif opts.audit_model == "tfidf":
            probs = tfidf_probabilities(data, folds)
        else:
            probs = finetune_probabilities(cfg, data, folds, out / FOLDS_DIR)
        seconds = {"probabilities": time.perf_counter() - fitted}
        issues = find_issues(data.splits["train"], data.labels, probs, opts.filter_by)
        seconds["total"] = time.perf_counter() - started
        summary = summarise(cfg, opts, data, probs, issues, seconds)
        paths = write_audit(out, issues, summary)
        tracker.log_metrics(
            {
                "audit/rows": summary["rows_audited"],
                "audit/issues": summary["issues"],
                "audit/issue_share": summary["issue_share"],
                "audit/out_of_fold_accuracy": summary["out_of_fold_accuracy"],
                "system/audit_seconds": seconds["total"],
                **{f"audit/issues.{metric_label(lab)}": c["issues"] for lab, c in summary["per_class"].items()},
            }
        )
        tracker.log_artifacts(out, "audit")
    log.info("audit: %d of %d training rows flagged", len(issues), len(data.splits["train"]))
    return AuditResult(out, issues, summary, paths, tracker.run_id)
