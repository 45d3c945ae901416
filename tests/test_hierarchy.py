"""--hierarchy: parsing and its errors, the hierarchy-aware loss, auto grouping, and one hierarchy used alike by
every prediction path (model folder, ONNX export, MLflow pyfunc, HTTP)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from sklearn.metrics import accuracy_score, f1_score

from emoclf.config import Config
from emoclf.data import PreparedData
from emoclf.errors import ConfigError
from emoclf.evaluation.metrics import group_metrics
from emoclf.hierarchy import Hierarchy, from_validation, label_confusion
from emoclf.imbalance import plan
from emoclf.inference import Predictor
from emoclf.layout import DENDROGRAM_PNG, HIERARCHY_JSON, META_FILE
from emoclf.losses import HierarchicalLoss, WeightedCrossEntropy, make_loss
from emoclf.predictions import predictions_frame

LABELS = ["anger", "fear", "joy", "love", "sadness", "surprise"]
SPEC = "positive=joy,love,surprise;negative=sadness,anger,fear"
TEXTS = ["i am so happy today", "why would you do that to me", "i feel scared and alone tonight", "wow", "i " * 100]


def test_inline_and_yaml_specs_give_the_same_groups_in_label_order(tmp_path):
    inline = Hierarchy.parse(SPEC, LABELS)
    assert inline.groups == {"positive": ["joy", "love", "surprise"], "negative": ["anger", "fear", "sadness"]}
    assert inline.group_ids(LABELS) == [1, 1, 0, 0, 1, 0]
    path = tmp_path / "groups.yaml"
    path.write_text("positive: [joy, love, surprise]\nnegative: [sadness, anger, fear]\n")
    assert Hierarchy.parse(str(path), LABELS) == inline
    assert Hierarchy.from_dict(json.loads(json.dumps(inline.to_dict())), LABELS) == inline
    assert inline.describe() == "positive: {joy, love, surprise} negative: {anger, fear, sadness}"


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            "positive=joy,love,surprize;negative=sadness,anger,fear",
            "hierarchy: unknown label 'surprize' in group 'positive'; the labels are anger, fear, joy, love, sadness, "
            "surprise",
        ),
        (
            "positive=joy,love,surprise;negative=sadness,anger,fear,joy",
            "hierarchy: label 'joy' is in two groups ('positive' and 'negative'); put each label in one group",
        ),
        (
            "positive=joy,love;fear=sadness,anger",
            "hierarchy: label 'fear' is in no group, but a group is named 'fear'; list it in that group or rename the "
            "group",
        ),
        (
            "a=joy;b=love",
            "hierarchy: every group holds one label, so it adds nothing to the flat loss; put labels that belong "
            "together in one group",
        ),
        (
            "all=" + ",".join(LABELS),
            "hierarchy: one group holds every label, so it adds nothing to the flat loss; give two or more groups",
        ),
        (
            "positive=joy;love",
            "hierarchy: cannot read 'love'; write groups as name=label,label;name=label, give a YAML file or 'auto'",
        ),
        ("a=joy;a=love", "hierarchy: group 'a' is given twice; give each group once"),
        ("a=;b=" + ",".join(LABELS), "hierarchy: group 'a' has no labels; list its labels or remove it"),
        ("missing.yaml", "hierarchy: file not found: missing.yaml; give a YAML file, name=label,label;... or 'auto'"),
    ],
)
def test_every_wrong_spec_is_one_line_saying_what_to_do(spec, message):
    with pytest.raises(ConfigError) as e:
        Hierarchy.parse(spec, LABELS)
    assert str(e.value) == message


def test_labels_in_no_group_become_groups_of_their_own_with_a_warning(tmp_path, caplog):
    path = tmp_path / "ekman.json"  # GoEmotions' ekman_mapping.json format: JSON, group -> labels, neutral left out
    path.write_text(json.dumps({"positive": ["joy", "love", "surprise"], "negative": ["fear", "anger"]}))
    with caplog.at_level(logging.WARNING, logger="emoclf"):
        found = Hierarchy.parse(str(path), LABELS)
    assert found.groups == {
        "positive": ["joy", "love", "surprise"],
        "negative": ["anger", "fear"],
        "sadness": ["sadness"],
    }
    assert caplog.messages == ["hierarchy: label(s) 'sadness' in no group, each kept as a group of its own"]
    assert found.group_ids(LABELS) == [1, 1, 0, 0, 2, 0]
    caplog.clear()  # read back from a model folder: the same groups, and nothing to warn about
    assert Hierarchy.from_dict(json.loads(json.dumps(found.to_dict())), LABELS) == found and not caplog.messages


def test_label_confusion_is_the_confusion_matrix_for_one_label_and_its_analogue_for_several():
    from sklearn.metrics import confusion_matrix

    rng = np.random.default_rng(2)
    y_true, y_pred = rng.integers(0, 6, 200), rng.integers(0, 6, 200)
    matrix, support = label_confusion(np.eye(6, dtype=int)[y_true], np.eye(6, dtype=int)[y_pred])
    np.testing.assert_array_equal(matrix, confusion_matrix(y_true, y_pred, labels=range(6)))
    np.testing.assert_array_equal(support, np.bincount(y_true, minlength=6))
    # Text 0 has labels 0 and 1 and got 0 and 2: label 2 wrongly given to a text of 0 and of 1; text 1 (label 0)
    # got 1 instead; text 2 is right.
    y = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1]])
    decided = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 1]])
    matrix, support = label_confusion(y, decided)
    assert matrix.tolist() == [[1, 1, 1], [0, 0, 1], [0, 0, 1]] and support.tolist() == [2, 1, 1]


def test_a_yaml_file_of_the_wrong_shape_is_refused(tmp_path):
    path = tmp_path / "h.yaml"
    path.write_text("- joy\n- love\n")
    with pytest.raises(ConfigError) as e:
        Hierarchy.parse(str(path), LABELS)
    assert str(e.value) == (
        f"hierarchy: {path} must map each group name to a list of labels, e.g. 'positive: [joy, love]'"
    )


def test_hierarchy_weight_must_not_be_negative():
    with pytest.raises(ConfigError, match="hierarchy_weight must be at least 0, got -1.0"):
        Config().replace(hierarchy_weight=-1.0)


def _batch(seed: int = 0):
    torch.manual_seed(seed)
    return {"logits": (torch.randn(8, 6) * 4).requires_grad_()}, torch.randint(0, 6, (8,))


def test_the_loss_is_the_fine_loss_at_weight_0_and_adds_the_group_nll():
    outputs, labels = _batch()
    fine = WeightedCrossEntropy()
    ids = Hierarchy.parse(SPEC, LABELS).group_ids(LABELS)
    assert torch.equal(HierarchicalLoss(fine, ids, 0.0)(outputs, labels), fine(outputs, labels))
    loss = HierarchicalLoss(fine, ids, 0.5)
    log_g = loss.group_log_probs(outputs["logits"])
    probs = outputs["logits"].softmax(-1)
    by_hand = torch.stack([probs[:, [i for i, g in enumerate(ids) if g == k]].sum(-1) for k in (0, 1)], -1)
    torch.testing.assert_close(log_g.exp(), by_hand)
    torch.testing.assert_close(log_g.exp().sum(-1), torch.ones(8))  # coarse probabilities sum to 1
    coarse = -by_hand.log()[torch.arange(8), torch.tensor(ids)[labels]].mean()
    total = loss(outputs, labels)
    torch.testing.assert_close(total, fine(outputs, labels) + 0.5 * coarse)
    total.backward()
    assert torch.isfinite(outputs["logits"].grad).all() and outputs["logits"].grad.abs().sum() > 0


def test_extreme_logits_keep_the_loss_and_gradient_finite():
    logits = torch.tensor([[1e4, -1e4, 0.0, 0.0, -1e4, 0.0]], requires_grad=True)
    loss = make_loss("ce", None, group_ids=Hierarchy.parse(SPEC, LABELS).group_ids(LABELS))
    value = loss({"logits": logits}, torch.tensor([1]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()


def test_group_weights_follow_the_imbalance_plan():
    ids = Hierarchy.parse("a=anger;b=fear,joy,love,sadness,surprise", LABELS).group_ids(LABELS)
    y = np.array([0] * 10 + [1] * 30 + [2] * 30 + [3] * 10 + [4] * 10 + [5] * 10)
    weighted = plan("class-weight", y, 6, 3.0, ids)
    assert weighted.group_weights == [5.0, pytest.approx(0.555556)]  # 10 of 100 rows vs 90: "balanced" weights
    assert plan("none", y, 6, 3.0, ids).group_weights is None
    assert (
        make_loss(
            "weighted-ce", weighted.class_weights, group_ids=ids, group_weights=weighted.group_weights
        ).group_weights
        is not None
    )
    focal_without_alpha = make_loss(
        "focal", weighted.class_weights, focal_alpha=False, group_ids=ids, group_weights=weighted.group_weights
    )
    assert focal_without_alpha.group_weights is None  # unweighted fine loss, unweighted group term


def _confusion(pairs: dict[tuple[str, str], int]) -> np.ndarray:
    cm = np.diag([100] * len(LABELS))
    for (true, pred), n in pairs.items():
        i, j = LABELS.index(true), LABELS.index(pred)
        cm[i, j] += n
        cm[i, i] -= n
    return cm


def test_auto_groups_the_classes_confused_more_than_the_mean_pair():
    cm = _confusion(
        {
            ("joy", "love"): 20,
            ("love", "joy"): 25,
            ("fear", "surprise"): 15,
            ("surprise", "fear"): 10,
            ("anger", "sadness"): 2,
            ("sadness", "fear"): 1,
        }
    )
    found, tree = Hierarchy.from_confusion(cm, LABELS)
    assert found.groups == {
        "anger": ["anger"],
        "fear+surprise": ["fear", "surprise"],
        "joy+love": ["joy", "love"],
        "sadness": ["sadness"],
    }
    assert found.source == "auto" and found.describe() == "{anger} {fear, surprise} {joy, love} {sadness}"
    assert tree["cut"] == pytest.approx(1 - tree["mean_rate"] / 0.225)


def test_auto_stays_flat_when_nothing_stands_out():
    assert Hierarchy.from_confusion(np.diag([50] * 6), LABELS)[0] is None  # no confusion at all
    even = np.full((6, 6), 5) + np.diag([50] * 6)  # every pair confused alike: none above the mean
    assert Hierarchy.from_confusion(even, LABELS)[0] is None


def test_auto_never_puts_every_class_in_one_group():
    rng = np.random.default_rng(0)
    for _ in range(200):
        found, _ = Hierarchy.from_confusion(rng.integers(0, 30, (6, 6)) + np.diag([60] * 6), LABELS)
        assert found is None or 2 <= len(found.groups) < 6


def test_group_metrics_equal_scikit_learn_on_the_grouped_labels():
    rng = np.random.default_rng(1)
    y_true, y_pred = rng.integers(0, 6, 300), rng.integers(0, 6, 300)
    hierarchy = Hierarchy.parse(SPEC, LABELS)
    cm = pd.crosstab(pd.Categorical(y_true, range(6)), pd.Categorical(y_pred, range(6)), dropna=False).to_numpy()
    got = group_metrics(cm, LABELS, hierarchy.groups)
    g = np.asarray(hierarchy.group_ids(LABELS))
    assert got["accuracy"] == pytest.approx(accuracy_score(g[y_true], g[y_pred]))
    assert got["macro_f1"] == pytest.approx(f1_score(g[y_true], g[y_pred], average="macro"))


@pytest.fixture(scope="module")
def hierarchical(tiny_model, tmp_path_factory):
    from emoclf.training import train

    out = tmp_path_factory.mktemp("hierarchical")
    cfg = Config().replace(
        model=str(tiny_model),
        epochs=8.0,
        learning_rate=3e-3,
        output_dir=str(out),
        tracking=False,
        batch_size=16,
        patience=4,
        hierarchy=SPEC,
    )
    return train(cfg)


def test_training_saves_the_hierarchy_and_scores_the_groups(hierarchical):
    meta = json.loads((hierarchical.model_dir / META_FILE).read_text())
    assert meta["hierarchy"] == {
        "groups": {"positive": ["joy", "love", "surprise"], "negative": ["anger", "fear", "sadness"]},
        "source": "given",
    }
    assert meta["training"]["hierarchy"] == "positive: {joy, love, surprise} negative: {anger, fear, sadness}"
    groups = hierarchical.metrics["groups"]
    assert (
        set(groups["per_group"]) == {"positive", "negative"} and groups["accuracy"] >= hierarchical.metrics["accuracy"]
    )
    saved = json.loads((hierarchical.output_dir / "report" / "metrics.json").read_text())
    assert saved["groups"]["macro_f1"] == groups["macro_f1"] and meta["metrics"]["groups"] == groups
    assert "| positive | joy, love, surprise |" in (hierarchical.output_dir / "report" / "report.md").read_text()
    card = (hierarchical.model_dir / "README.md").read_text()  # the model card names the groups and their scores
    assert "## Hierarchy" in card and f"group accuracy **{groups['accuracy']:.4f}**" in card
    assert "| positive | joy, love, surprise |" in card


def test_every_prediction_path_returns_the_same_labels_probabilities_and_groups(hierarchical, tmp_path):
    import mlflow

    from emoclf.export import convert
    from emoclf.mlflow_model import log_pyfunc
    from emoclf.serving import create_app

    folder = Predictor.load(hierarchical.model_dir)
    expected = folder.predict(TEXTS)
    group_of = {lab: g for g, m in folder.hierarchy.groups.items() for lab in m}
    for p in expected:
        assert p.group == group_of[p.label]
        assert p.group_probability == pytest.approx(
            sum(p.probabilities[lab] for lab in folder.hierarchy.groups[p.group])
        )
    frame = predictions_frame(folder, TEXTS)
    assert list(frame.columns[:4]) == [
        "predicted_label",
        "predicted_probability",
        "predicted_group",
        "group_probability",
    ]
    onnx = Predictor.load(convert(hierarchical.model_dir, tmp_path / "onnx", precision="fp32"))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run():
        uri = log_pyfunc(hierarchical.model_dir, ["i am happy"]).model_uri
    pyfunc = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"text": TEXTS}))
    client = TestClient(create_app(Predictor.load(uri)))
    served = client.post("/predict", json={"texts": TEXTS}).json()["predictions"]
    assert client.get("/metadata").json()["hierarchy"] == folder.meta.hierarchy
    assert set(served[0]) == {"label", "probability", "probabilities", "group", "group_probability", "truncated"}
    for got in (onnx.predict(TEXTS), [Predictor.load(uri).predict([t])[0] for t in TEXTS]):
        assert [(p.label, p.group) for p in got] == [(p.label, p.group) for p in expected]
        np.testing.assert_allclose(
            [p.group_probability for p in got], [p.group_probability for p in expected], atol=1e-5
        )
    assert pyfunc[["predicted_label", "predicted_group"]].values.tolist() == [[p.label, p.group] for p in expected]
    np.testing.assert_allclose(pyfunc["group_probability"], frame["group_probability"], atol=1e-6)
    assert [(s["label"], s["group"]) for s in served] == [(p.label, p.group) for p in expected]
    np.testing.assert_allclose([s["group_probability"] for s in served], frame["group_probability"], atol=1e-6)


def test_auto_trains_a_first_model_and_logs_the_tree_it_found(tiny_model, tmp_path, caplog):
    from emoclf.training import train

    cfg = Config().replace(
        model=str(tiny_model),
        epochs=2.0,
        learning_rate=3e-3,
        output_dir=str(tmp_path),
        tracking=False,
        batch_size=16,
        min_steps=30,
        hierarchy="auto",
    )
    with caplog.at_level(logging.INFO, logger="emoclf"):
        result = train(cfg)
    meta = json.loads((result.model_dir / META_FILE).read_text())
    found = [r.getMessage() for r in caplog.records if r.getMessage().startswith("hierarchy (auto")]
    assert not (tmp_path / "hierarchy-first-model").exists()  # the first model is not kept
    # Any uneven confusion has a pair above the mean, so the tiny model's first model yields groups on every CPU.
    assert meta["hierarchy"]["source"] == "auto" and (tmp_path / "report" / DENDROGRAM_PNG).is_file()
    hierarchy = Hierarchy.from_dict(meta["hierarchy"], LABELS)
    assert found == [f"hierarchy (auto, from validation confusion): {hierarchy.describe()}"]
    assert meta["training"]["hierarchy"] == hierarchy.describe() and "groups" in result.metrics
    assert json.loads((tmp_path / "report" / HIERARCHY_JSON).read_text()) == meta["hierarchy"]  # what --resume reads


@pytest.mark.parametrize(
    "recorded",
    [{"groups": {"a": ["anger", "sadness"], "b": ["fear", "joy", "love", "surprise"]}, "source": "auto"}, None],
)
def test_a_resumed_auto_training_keeps_the_groups_it_started_with(recorded, tmp_path, monkeypatch, caplog):
    from emoclf import training

    (tmp_path / HIERARCHY_JSON).write_text(json.dumps(recorded))
    monkeypatch.setattr(training, "first_model", lambda *a: pytest.fail("a resumed training trained a first model"))
    data = PreparedData({}, LABELS, None)
    with caplog.at_level(logging.INFO, logger="emoclf"):
        found = training.auto_hierarchy(Config().replace(hierarchy="auto"), data, tmp_path, resume=True)
    assert (found.to_dict() if found else None) == recorded
    said = "{anger, sadness} {fear, joy, love, surprise}" if recorded else "none, flat"
    assert caplog.messages == [f"hierarchy auto: resuming with the groups found when this training started: {said}"]


def test_auto_without_groups_says_the_training_is_flat(tmp_path, caplog):
    right = np.repeat(np.eye(6, dtype=int), 20, axis=0)  # every validation text's label predicted, nothing else
    with caplog.at_level(logging.INFO, logger="emoclf"):
        assert from_validation(right, right, LABELS, tmp_path) is None
    assert caplog.messages == [
        "hierarchy auto: no two classes are confused more than the mean pair (0.000) on "
        "validation: no groups found, this training is flat"
    ]
    assert not (tmp_path / DENDROGRAM_PNG).exists()


def test_a_multi_label_plan_with_groups_trains_the_multi_label_hierarchical_loss():
    from emoclf.losses import BinaryCrossEntropy, MultiLabelHierarchicalLoss
    from emoclf.task import MULTI, task_for

    found = Hierarchy.parse(SPEC, LABELS)
    y = np.eye(6, dtype=int)[np.arange(60) % 6]
    y[::4, 2] = 1  # a quarter of the texts have joy too
    p = plan("class-weight", y, 6, 3.0, found.group_ids(LABELS), task_for(MULTI))
    assert p.loss == "weighted-bce" and p.group_ids == [1, 1, 0, 0, 1, 0] and p.group_weights is None
    loss = make_loss(p.loss, p.class_weights, group_ids=p.group_ids, hierarchy_weight=0.5)
    assert isinstance(loss, MultiLabelHierarchicalLoss) and isinstance(loss.fine, BinaryCrossEntropy)
    logits, labels = torch.randn(8, 6), torch.tensor(y[:8], dtype=torch.float32)
    assert loss({"logits": logits}, labels) > loss.fine({"logits": logits}, labels)  # the group term is added


@pytest.fixture(scope="module")
def multi_hierarchical(tiny_model, multi_csv, tmp_path_factory):
    from emoclf.training import train

    out = tmp_path_factory.mktemp("multi-hierarchical")
    groups = out / "ekman.json"  # GoEmotions' ekman_mapping.json format, one label (sadness) left out as neutral is
    groups.write_text(json.dumps({"positive": ["joy", "love", "surprise"], "negative": ["anger", "fear"]}))
    cfg = Config().replace(
        data=str(multi_csv),
        model=str(tiny_model),
        epochs=8.0,
        learning_rate=3e-3,
        output_dir=str(out / "run"),
        tracking=False,
        batch_size=16,
        patience=4,
        precision="fp32",
        hierarchy=str(groups),
    )
    return train(cfg)


@pytest.mark.slow
def test_a_multi_label_model_with_groups_reports_them_and_predicts_them(multi_hierarchical):
    meta = json.loads((multi_hierarchical.model_dir / META_FILE).read_text())
    assert meta["task"] == "multi-label" and meta["hierarchy"]["groups"] == {
        "positive": ["joy", "love", "surprise"],
        "negative": ["anger", "fear"],
        "sadness": ["sadness"],
    }
    assert meta["training"]["hierarchy"] == "positive: {joy, love, surprise} negative: {anger, fear} sadness: {sadness}"
    groups = multi_hierarchical.metrics["groups"]
    assert set(groups["per_group"]) == {"positive", "negative", "sadness"} and 0 <= groups["macro_f1"] <= 1
    assert "| positive | joy, love, surprise |" in (multi_hierarchical.output_dir / "report" / "report.md").read_text()
    predictor = Predictor.load(multi_hierarchical.model_dir)
    for record in predictor.predict(["i feel so happy today", "i am scared and i feel angry about it"]):
        assert record.groups == [g for g, m in meta["hierarchy"]["groups"].items() if set(m) & set(record.labels)]
    frame = predictions_frame(predictor, ["i feel so happy today"])
    assert frame.loc[0, "predicted_groups"] == ",".join(predictor.predict(["i feel so happy today"])[0].groups)
