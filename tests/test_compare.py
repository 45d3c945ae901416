"""emoclf compare: one split for all strategies, untouched evaluation rows, table, chart, verdict, MLflow runs."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from emoclf.cli import main
from emoclf.compare import check_strategies, compare, decide, markdown, summarise
from emoclf.config import Config
from emoclf.errors import ConfigError

LABELS = ["anger", "fear", "joy", "love", "sadness", "surprise"]
# One thread: on a shared 2-core machine, torch's default threads spin against each other.
QUICK = ["compare", "--quick", "--learning-rate", "3e-3", "--batch-size", "16", "--num-threads", "1"]
PM = re.compile(r"\d\.\d{4} ± \d\.\d{4}")


def table_of(rows: list[tuple[str, int, float]]) -> pd.DataFrame:
    runs = pd.DataFrame(
        [
            {
                "strategy": s,
                "seed": seed,
                "accuracy": f,
                "macro_f1": f,
                "weighted_f1": f,
                "train_seconds": 1.0,
                "optimizer_steps": 120,
                "examples_seen": 1920,
                "run_id": None,
            }
            for s, seed, f in rows
        ]
    )
    return summarise(runs, list(dict.fromkeys(runs["strategy"])))


def test_verdict_lead_beyond_spread():
    table = table_of([("none", 1, 0.50), ("none", 2, 0.52), ("focal", 1, 0.60), ("focal", 2, 0.62)])
    assert list(table.index) == ["none", "focal"]  # the order given, not the ranking
    assert table.loc["focal", "macro_f1_std"] == pytest.approx(np.std([0.60, 0.62], ddof=1))
    v = decide(table, seeds=2)
    assert (v.best, v.runner_up, v.exceeds_spread) == ("focal", "none", True)
    assert v.lead == pytest.approx(0.10)
    assert "exceeds the seed-to-seed spread" in v.text


def test_verdict_lead_within_spread_may_be_noise():
    v = decide(table_of([("none", 1, 0.50), ("none", 2, 0.60), ("focal", 1, 0.54), ("focal", 2, 0.58)]), seeds=2)
    assert (v.best, v.exceeds_spread) == ("focal", False)
    assert "does not exceed the seed-to-seed spread, so it may be noise" in v.text


def test_verdict_with_one_seed_says_spread_unknown():
    v = decide(table_of([("none", 1, 0.50), ("focal", 1, 0.60)]), seeds=1)
    assert (v.best, v.spread, v.exceeds_spread) == ("focal", None, None)
    assert "spread is unknown" in v.text


def test_markdown_shows_mean_and_std_and_the_rule():
    table = table_of([("none", 1, 0.50), ("none", 2, 0.52), ("focal", 1, 0.60), ("focal", 2, 0.62)])
    md = markdown(table, decide(table, seeds=2), [], seeds=2, quick=True, n_test=46)
    assert "| focal | 0.6100 ± 0.0141 | 0.6100 ± 0.0141 | 0.6100 ± 0.0141 | 120 ± 0 | 1920 ± 0 | 1.0 ± 0.0 |" in md
    assert "untouched test split (46 texts, never resampled); mean ± sample std over seeds" in md
    assert "Rule: the lead counts as real when" in md


def test_unknown_or_repeated_strategies_are_refused():
    with pytest.raises(ConfigError, match="unknown strategy.*'smote'; choose from auto, none"):
        check_strategies(["none", "smote"])
    with pytest.raises(ConfigError, match="distinct strategies"):
        check_strategies(["none", "none"])


def test_quick_cuts_budget_and_evaluation_rows_alike_for_every_strategy(tmp_path, monkeypatch):
    from pathlib import Path

    from emoclf import compare as compare_module
    from emoclf import training
    from emoclf.evaluation.metrics import classification_metrics

    seen, evaluated_every = [], []

    def fake_train(variant, data):  # no model: this checks what every strategy is given
        seen.append(
            (
                variant.train.imbalance,
                (variant.train.epochs, variant.train.batch_size),
                variant.data.max_samples,
                {s: df.copy() for s, df in data.splits.items()},
            )
        )
        evaluated_every.append(variant.train.checkpoint_steps)
        y = data.splits["test"]["label_id"]
        metrics = {
            **classification_metrics(y, y, data.labels),
            "training": {"optimizer_steps": variant.train.max_steps, "examples_seen": 1},
        }
        return training.TrainResult(
            Path(variant.train.output_dir), Path(variant.train.output_dir) / "model", metrics, {}, None, 1.0, 1.0
        )

    monkeypatch.setattr(compare_module, "QUICK_EVAL_ROWS", 30)
    monkeypatch.setattr(training, "train", fake_train)
    result = compare(Config().replace(output_dir=str(tmp_path), tracking=False), ["none", "focal"], quick=True)
    assert [(s, budget, cap) for s, budget, cap, _ in seen] == [("none", (1.0, 16), 4000), ("focal", (1.0, 16), 4000)]
    rows = len(seen[0][3]["train"])
    assert result.runs["optimizer_steps"].tolist() == [120, 120]  # the demo's rows, 1 epoch: raised to the floor
    # Evaluated at the same steps, those of an unresampled epoch, whatever a strategy does to the rows.
    assert evaluated_every == [math.ceil(rows / 16)] * 2
    (_, _, _, first), (_, _, _, second) = seen
    for split in ("train", "validation", "test"):
        pd.testing.assert_frame_equal(first[split], second[split])  # the very same rows for both strategies
    assert len(first["validation"]) == len(first["test"]) == 30
    assert set(first["test"]["label"]) == set(LABELS)  # stratified: every class kept
    md = result.paths["markdown"].read_text()
    assert "1 epoch in batches of 16, stratified subsets of at most 30 validation and test rows" in md
    assert "(30 texts, never resampled)" in md


@pytest.mark.slow
def test_compare_quick_without_tracking(tiny_model, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main([*QUICK, "--model", str(tiny_model), "--output-dir", str(out), "--no-tracking"]) == 0
    printed = capsys.readouterr().out
    folder = out / "comparison"
    for name in (
        "comparison.md",
        "comparison.csv",
        "comparison_runs.csv",
        "comparison.json",
        "per_class_f1_by_strategy.png",
    ):
        assert (folder / name).is_file(), name
    strategies = ["none", "oversample", "undersample", "class-weight", "focal", "logit-adjust"]
    table = pd.read_csv(folder / "comparison.csv")
    assert table["strategy"].tolist() == strategies
    metric_cols = [
        "accuracy",
        "macro_f1",
        "weighted_f1",
        *(f"f1_{lab}" for lab in LABELS),
        "optimizer_steps",
        "examples_seen",
        "train_seconds",
    ]
    expected = ["strategy", "n_seeds", *(f"{m}_{stat}" for m in metric_cols for stat in ("mean", "std"))]
    assert table.columns.tolist() == expected
    assert table["n_seeds"].eq(1).all() and table["macro_f1_std"].isna().all()  # one seed: no spread
    md = (folder / "comparison.md").read_text()
    assert "| strategy | accuracy | macro-F1 | weighted F1 | F1 anger |" in md and "| train s |" in md
    assert "one seed, so no spread" in md and not PM.search(md)
    summary = json.loads((folder / "comparison.json").read_text())
    assert summary["verdict"]["best"] in strategies and summary["verdict"]["spread"] is None
    assert "spread is unknown" in summary["verdict"]["text"] and summary["verdict"]["text"] in md
    assert "Best strategy:" in printed and "comparison:" in printed and "MLflow" not in printed
    for s in strategies:  # each strategy a full training of its own, with the HTML report
        html = (out / f"{s}-seed42" / "report" / "report.html").read_text()
        assert 'alt="reliability diagram"' in html
    # Run again into the same folder: refused before any training, unless --overwrite.
    assert main([*QUICK, "--model", str(tiny_model), "--output-dir", str(out), "--no-tracking"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"emoclf: error: {out} holds an earlier comparison (none-seed42, oversample-seed42, undersample-seed42, ...); "
        "pass --overwrite to replace it, or choose another --output-dir"
    )


@pytest.mark.slow
def test_compare_logs_parent_with_child_runs(mlflow_server, tiny_model, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "cmp"
    assert (
        main(
            [
                *QUICK,
                "--model",
                str(tiny_model),
                "--output-dir",
                str(out),
                "--strategies",
                "none,oversample",
                "--tracking-uri",
                mlflow_server,
                "--experiment",
                "cmp",
            ]
        )
        == 0
    )
    client = MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("cmp").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 == len(runs) - 1
    assert sorted(r.info.run_name for r in children) == ["none-seed42", "oversample-seed42"]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.params["train.imbalance"] for r in children} == {"none", "oversample"}
    assert f"MLflow parent run: {parent.info.run_id}" in capsys.readouterr().out

    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "comparison")}
    assert {
        "comparison/comparison.md",
        "comparison/comparison.csv",
        "comparison/comparison.json",
        "comparison/per_class_f1_by_strategy.png",
    } <= artifacts
    assert parent.data.params["compare.strategies"] == "none,oversample"
    assert {"none.macro_f1_mean", "oversample.f1_joy_mean"} <= set(parent.data.metrics)
    assert parent.data.tags["emoclf.best_strategy"] in {"none", "oversample"}
    assert "report/report.html" in {a.path for a in client.list_artifacts(children[0].info.run_id, "report")}


@pytest.mark.slow
def test_no_strategy_sees_resampled_validation_or_test_rows(tiny_model, tmp_path, monkeypatch):
    from emoclf import imbalance, training
    from emoclf.data import load_data
    from emoclf.preprocess import Preprocessor

    cfg = Config().replace(
        model=str(tiny_model),
        output_dir=str(tmp_path),
        tracking=False,
        learning_rate=3e-3,
        batch_size=16,
        num_threads=1,
    )
    original = load_data(cfg.data, Preprocessor(cfg.preprocess))
    trained_on, resampled = [], []
    real_train, real_resample = training.train, imbalance.resample_indices

    def spy_train(variant, data):
        for split in ("validation", "test"):
            pd.testing.assert_frame_equal(data.splits[split], original.splits[split])
        trained_on.append(data)
        return real_train(variant, data)

    def spy_resample(strategy, label_ids, seed):
        resampled.append((strategy, seed, np.array(label_ids)))
        return real_resample(strategy, label_ids, seed)

    monkeypatch.setattr(training, "train", spy_train)
    monkeypatch.setattr(imbalance, "resample_indices", spy_resample)
    strategies = ["oversample", "undersample"]
    result = compare(cfg, strategies, seeds=2, quick=True)

    assert len(trained_on) == 4 and all(d is trained_on[0] for d in trained_on)  # loaded and split once
    for split in ("validation", "test"):  # and never changed by any training
        pd.testing.assert_frame_equal(trained_on[0].splits[split], original.splits[split])
    assert [(s, seed) for s, seed, _ in resampled] == [(s, seed) for seed in (42, 43) for s in strategies]
    train_labels = original.splits["train"]["label_id"].to_numpy()
    assert all(np.array_equal(labels, train_labels) for _, _, labels in resampled)
    test_support = original.splits["test"]["label"].value_counts().to_dict()
    for s in strategies:  # scored on the real test rows, at real class frequencies
        for seed in (42, 43):
            metrics = json.loads((tmp_path / f"{s}-seed{seed}" / "report" / "metrics.json").read_text())
            assert metrics["n"] == len(original.splits["test"])
            assert {lab: row["support"] for lab, row in metrics["per_class"].items()} == test_support
    assert result.table["n_seeds"].tolist() == [2, 2]
    assert PM.search(result.paths["markdown"].read_text())


@pytest.mark.slow
def test_budget_steps_gives_every_strategy_the_same_optimizer_steps(tiny_model, tmp_path):
    """Without a matched budget, over-sampling trains more steps per epoch and under-sampling fewer."""
    cfg = Config().replace(
        model=str(tiny_model),
        tracking=False,
        learning_rate=3e-3,
        batch_size=16,
        num_threads=1,
        max_samples=120,
        epochs=2.0,
        min_steps=0,
    )
    strategies = ["none", "oversample", "undersample"]
    matched = compare(cfg.replace(output_dir=str(tmp_path / "steps")), strategies)
    expected = int(np.ceil(120 / 16)) * 2  # whole batches per epoch, as the Trainer counts
    assert matched.runs["optimizer_steps"].tolist() == [expected] * 3
    for s in strategies:  # read back from each run
        metrics = json.loads((tmp_path / "steps" / f"{s}-seed42" / "report" / "metrics.json").read_text())
        assert metrics["training"]["optimizer_steps"] == expected
    assert matched.verdict.text.startswith(f"Budget: {expected} optimizer steps each, without early stopping")
    assert json.loads(matched.paths["json"].read_text())["budget"] == "steps"
    by_epochs = compare(
        cfg.replace(output_dir=str(tmp_path / "epochs"), early_stopping=False), strategies, budget="epochs"
    )
    steps = dict(zip(by_epochs.runs["strategy"], by_epochs.runs["optimizer_steps"]))
    assert steps["undersample"] < steps["none"] == expected < steps["oversample"]
    assert by_epochs.verdict.text.startswith("Budget: 2 epoch(s) each, so resampling changes the number of steps")


def test_the_hierarchical_arm_needs_a_hierarchy(tmp_path):
    cfg = Config().replace(output_dir=str(tmp_path), tracking=False)
    with pytest.raises(ConfigError) as e:
        compare(cfg, ["flat", "hierarchical"], quick=True)
    assert str(e.value) == (
        "the hierarchical arm needs --hierarchy (groups such as 'positive=joy,love;negative=anger,"
        "fear', a YAML file, or auto)"
    )
    assert check_strategies(["flat", "hierarchical", "focal"]) == ["flat", "hierarchical", "focal"]


@pytest.mark.slow
def test_compare_flat_and_hierarchical_with_auto_groups(tiny_model, tmp_path):
    """auto is found once (the same groups for every seed), and both arms are scored by group."""
    from emoclf.hierarchy import Hierarchy

    cfg = Config().replace(
        model=str(tiny_model),
        tracking=False,
        learning_rate=3e-3,
        batch_size=16,
        num_threads=1,
        output_dir=str(tmp_path),
        min_steps=40,
        hierarchy="auto",
        imbalance="class-weight",
    )
    result = compare(cfg, ["flat", "hierarchical"], seeds=2)
    saved = tmp_path / "comparison" / "hierarchy.yaml"
    groups = Hierarchy.parse(str(saved), LABELS).groups
    assert (tmp_path / "comparison" / "hierarchy_dendrogram.png").is_file()
    for seed in (42, 43):
        flat = json.loads((tmp_path / f"flat-seed{seed}" / "model" / "emoclf.json").read_text())
        hier = json.loads((tmp_path / f"hierarchical-seed{seed}" / "model" / "emoclf.json").read_text())
        assert flat["hierarchy"] is None and flat["training"]["imbalance_strategy"] == "class-weight"
        assert hier["hierarchy"]["groups"] == groups and hier["training"]["imbalance_strategy"] == "class-weight"
    assert result.table.index.tolist() == ["flat", "hierarchical"]
    assert result.runs["group_macro_f1"].notna().all() and "group_accuracy_mean" in result.table
    md = result.paths["markdown"].read_text()
    assert "| strategy | accuracy | macro-F1 | weighted F1 | group accuracy | group macro-F1 |" in md
    assert result.verdict.best in ("flat", "hierarchical")


def fake_multilabel_train(seen: list):
    """training.train without a model: records each arm's settings and data, scores the test split as right."""
    from pathlib import Path

    from emoclf import training
    from emoclf.evaluation.multilabel import multilabel_metrics

    def train(variant, data):
        seen.append((variant.train.imbalance, variant.train.max_steps, data))
        y = data.y("test")
        f = {"none": 0.5, "class-weight": 0.7, "focal": 0.6, "asl": 0.65}[variant.train.imbalance]
        metrics = {
            **multilabel_metrics(y, y, y.astype(float), data.labels, None),
            "macro_f1": f,
            "micro_f1": f + 0.1,
            "training": {"optimizer_steps": variant.train.max_steps, "examples_seen": 1},
        }
        out = Path(variant.train.output_dir)
        return training.TrainResult(out, out / "model", metrics, {}, None, 1.0, 1.0)

    return train


def test_multi_label_data_compares_its_own_strategies_on_matched_steps(multi_csv, tmp_path, monkeypatch):
    from emoclf import training

    seen = []
    monkeypatch.setattr(training, "train", fake_multilabel_train(seen))
    cfg = Config().replace(data=str(multi_csv), output_dir=str(tmp_path), tracking=False)
    result = compare(cfg)  # no strategies given: every strategy of the data's task
    assert [s for s, _, _ in seen] == ["none", "class-weight", "focal", "asl"]
    assert len({steps for _, steps, _ in seen}) == 1 and all(d is seen[0][2] for _, _, d in seen)
    assert seen[0][2].task == "multi-label"
    assert result.table.index.tolist() == ["none", "class-weight", "focal", "asl"]
    assert result.verdict.best == "class-weight" and "mean test macro-F1 0.7000" in result.verdict.text
    assert result.table.loc["class-weight", "micro_f1_mean"] == pytest.approx(0.8)
    md = result.paths["markdown"].read_text()
    assert "| strategy | subset accuracy | macro-F1 | micro-F1 | weighted F1 | F1 anger |" in md
    assert "| class-weight | 1.0000 | 0.7000 | 0.8000 | 1.0000 |" in md


@pytest.mark.parametrize(
    "strategies, settings, message",
    [
        (
            ["none", "oversample", "logit-adjust"],
            {},
            "imbalance 'oversample', 'logit-adjust' do not apply to multi-label data; choose from auto, none, "
            "class-weight, focal, asl",
        ),
        (
            ["flat", "hierarchical"],
            {"imbalance": "undersample", "hierarchy": "a=joy,love;b=anger,fear"},
            "imbalance 'undersample' does not apply to multi-label data; choose from auto, none, class-weight, "
            "focal, asl",
        ),
    ],
)
def test_strategies_multi_label_data_has_no_use_for_are_refused_before_anything(
    multi_csv, tmp_path, monkeypatch, strategies, settings, message
):
    from emoclf import training

    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("a strategy was trained"))
    out = tmp_path / "cmp"
    cfg = Config().replace(data=str(multi_csv), output_dir=str(out), tracking=False, **settings)
    with pytest.raises(ConfigError) as e:
        compare(cfg, strategies)
    assert str(e.value) == message and not out.exists()


@pytest.mark.slow
def test_multi_label_flat_and_hierarchical_arms_with_auto_groups(tiny_model, multi_csv, tmp_path):
    """auto finds the labels the first model gives texts of one another; both arms are scored by group, the flat
    one from its own test decisions."""
    from emoclf.evaluation.multilabel import group_metrics as multilabel_group_metrics
    from emoclf.hierarchy import Hierarchy
    from emoclf.inference import Predictor

    cfg = Config().replace(
        data=str(multi_csv),
        model=str(tiny_model),
        tracking=False,
        learning_rate=3e-3,
        batch_size=16,
        num_threads=1,
        output_dir=str(tmp_path),
        min_steps=150,
        hierarchy="auto",
        precision="fp32",
    )
    result = compare(cfg, ["flat", "hierarchical"], quick=True)
    saved = tmp_path / "comparison" / "hierarchy.yaml"
    groups = Hierarchy.parse(str(saved), LABELS).groups
    assert (tmp_path / "comparison" / "hierarchy_dendrogram.png").is_file()
    flat = json.loads((tmp_path / "flat-seed42" / "model" / "emoclf.json").read_text())
    hier = json.loads((tmp_path / "hierarchical-seed42" / "model" / "emoclf.json").read_text())
    assert flat["hierarchy"] is None and hier["hierarchy"]["groups"] == groups
    assert flat["task"] == hier["task"] == "multi-label" and hier["training"]["loss"] == flat["training"]["loss"]
    # The flat arm's group scores: its own test decisions grouped, as evaluate groups the hierarchical arm's.
    from emoclf.data import Labelled, load_data

    test = load_data(cfg.data).splits["test"]
    predictor = Predictor.load(tmp_path / "flat-seed42" / "model")
    labelled = Labelled.from_split(test, "test")
    expected = multilabel_group_metrics(
        labelled.y_true, predictor.decide(predictor.predict_proba(labelled.texts)), LABELS, groups
    )
    flat_row = result.runs.set_index("strategy").loc["flat"]
    assert flat_row["group_macro_f1"] == pytest.approx(expected["macro_f1"])
    assert result.runs["micro_f1"].notna().all()
    md = result.paths["markdown"].read_text()
    assert "| strategy | subset accuracy | macro-F1 | micro-F1 | weighted F1 | group accuracy | group macro-F1 |" in md


def test_cli_compare_refuses_a_strategy_of_the_other_task_in_one_line(multi_csv, tmp_path, capsys):
    out = tmp_path / "cmp"
    flags = ["compare", str(multi_csv), "--strategies", "none,oversample", "--output-dir", str(out), "--no-tracking"]
    assert main(flags) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "emoclf: error: imbalance 'oversample' does not apply to multi-label data; choose from auto, none, "
        "class-weight, focal, asl"
    )
    assert not out.exists()
