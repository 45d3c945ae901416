"""--exclude-label-issues: the audit's rows dropped or relabelled in the training split, never in validation or test."""

from __future__ import annotations

import logging
import re
from dataclasses import replace

import pandas as pd
import pytest

from emoclf.config import Config, DataConfig
from emoclf.data import load_data
from emoclf.data.issues import LabelIssuesMismatch
from emoclf.errors import DataError

SUGGEST = {"anger": "fear", "fear": "sadness", "joy": "love", "love": "joy", "sadness": "anger", "surprise": "joy"}


@pytest.fixture(scope="module")
def plain():
    return load_data(DataConfig())


def issues_file(path, *frames: pd.DataFrame):
    """An audit's label_issues.csv listing the rows of ``frames`` (each with another suggested label)."""
    rows = pd.concat(frames)
    pd.DataFrame(
        {
            "rank": range(1, len(rows) + 1),
            "row": rows["row"],
            "text": rows["text"],
            "raw_text": rows["raw_text"],
            "given_label": rows["label"],
            "suggested_label": rows["label"].map(SUGGEST),
            "label_quality": 0.01,
            "prob_given": 0.01,
            "prob_suggested": 0.9,
        }
    ).to_csv(path, index=False)
    return str(path)


def test_drop_removes_the_listed_training_rows_and_leaves_validation_and_test_alone(tmp_path, plain, caplog):
    train, val, test = (plain.splits[s] for s in ("train", "validation", "test"))
    # Two validation rows and a test row planted in the file: rows of those splits must never change.
    path = issues_file(tmp_path / "issues.csv", train.iloc[[3, 10, 50]], val.iloc[[0, 5]], test.iloc[[1]])
    with caplog.at_level(logging.INFO, logger="emoclf.data"):
        data = load_data(DataConfig(exclude_label_issues=path))
    assert data.report.label_issues == {"file": path, "action": "drop", "listed": 6, "not_in_train": 3, "changed": 3}
    assert len(data.splits["train"]) == len(train) - 3
    assert not set(train.iloc[[3, 10, 50]]["text"]) & set(data.splits["train"]["text"])
    for split in ("validation", "test"):
        pd.testing.assert_frame_equal(data.splits[split], plain.splits[split])
    assert (
        "data: the embedded demo set: train 365, validation 46, test 46 texts (3 training rows dropped as label "
        "issues)" in caplog.text
    )


def test_relabel_gives_the_listed_training_rows_their_suggested_label(tmp_path, plain):
    train, val, test = (plain.splits[s] for s in ("train", "validation", "test"))
    path = issues_file(tmp_path / "issues.csv", train.iloc[[3, 10]], val.iloc[[0]], test.iloc[[1]])
    data = load_data(DataConfig(exclude_label_issues=path, label_issues_action="relabel"))
    assert data.report.label_issues["changed"] == 2 and data.report.label_issues["not_in_train"] == 2
    new = data.splits["train"]
    assert len(new) == len(train)
    changed = new["label"] != train["label"]
    assert changed.sum() == 2
    assert new.loc[[3, 10], "label"].tolist() == train.iloc[[3, 10]]["label"].map(SUGGEST).tolist()
    assert (new["label_id"] == new["label"].map({lab: i for i, lab in enumerate(data.labels)})).all()
    for split in ("validation", "test"):
        pd.testing.assert_frame_equal(data.splits[split], plain.splits[split])


def test_an_issues_file_of_other_data_is_refused(tmp_path, plain):
    path = issues_file(tmp_path / "issues.csv", plain.splits["validation"].iloc[[0, 1]])
    with pytest.raises(LabelIssuesMismatch) as e:
        load_data(DataConfig(exclude_label_issues=path))
    assert str(e.value) == (
        f"{path}: none of its 2 rows is a training row (same text after preprocessing and same "
        "given label); run 'emoclf audit' on this data with the same data, preprocessing and "
        "split settings"
    )


def test_a_file_that_is_not_an_audit_is_refused(tmp_path):
    path = tmp_path / "other.csv"
    pd.DataFrame({"text": ["a"], "label": ["joy"]}).to_csv(path, index=False)
    with pytest.raises(
        DataError,
        match=r"other.csv: no column\(s\) given_label, "
        r"suggested_label; give the label_issues.csv written by "
        r"'emoclf audit'$",
    ):
        load_data(DataConfig(exclude_label_issues=str(path)))


def test_the_action_is_a_choice():
    with pytest.raises(ValueError, match="label_issues_action must be one of drop, relabel; got 'fix'"):
        Config().replace(label_issues_action="fix")


def test_label_issues_top_takes_only_the_files_first_rows(tmp_path, plain):
    train = plain.splits["train"]
    path = issues_file(tmp_path / "issues.csv", train.iloc[[3, 10, 50, 60]])
    data = load_data(DataConfig(exclude_label_issues=path, label_issues_top=2))
    assert data.report.label_issues["listed"] == 2 and data.report.label_issues["changed"] == 2
    kept = set(data.splits["train"]["text"])
    assert not {train.iloc[3]["text"], train.iloc[10]["text"]} & kept
    assert {train.iloc[50]["text"], train.iloc[60]["text"]} <= kept


@pytest.fixture(scope="module")
def multi(multi_csv):
    return DataConfig(data=str(multi_csv)), load_data(DataConfig(data=str(multi_csv)))


def multi_issues_file(path, rows: pd.DataFrame, suggested: list[str], given: list[str] | None = None) -> str:
    """An audit's label_issues.csv of multi-label ``rows``: label sets written as cells (``joy,sadness``)."""
    pd.DataFrame(
        {
            "rank": range(1, len(rows) + 1),
            "row": rows["row"],
            "text": rows["text"],
            "raw_text": rows["raw_text"],
            "given_label": given or [",".join(tags) for tags in rows["label"]],
            "suggested_label": suggested,
            "label_quality": 0.01,
        }
    ).to_csv(path, index=False)
    return str(path)


def test_multi_label_rows_are_matched_by_their_label_set_in_any_order(tmp_path, multi):
    cfg, plain = multi
    train = plain.splits["train"]
    two = train[train["label"].map(len) == 2].iloc[:2]
    # Written in another order than load_data keeps them: still the same sets.
    given = [",".join(reversed(tags)) for tags in two["label"]]
    path = multi_issues_file(tmp_path / "issues.csv", two, ["joy", "joy"], given)
    data = load_data(replace(cfg, exclude_label_issues=path))
    assert data.report.label_issues["changed"] == 2 and data.report.label_issues["not_in_train"] == 0
    assert len(data.splits["train"]) == len(train) - 2
    assert not set(two["text"]) & set(data.splits["train"]["text"])
    one = train[train["label"].map(len) == 1].iloc[:1]  # the same text with a set it was not given is no match
    wrong = multi_issues_file(tmp_path / "wrong.csv", one, ["joy"], ["anger,fear,love"])
    with pytest.raises(LabelIssuesMismatch, match="none of its 1 rows is a training row"):
        load_data(replace(cfg, exclude_label_issues=wrong))


def test_multi_label_relabel_gives_the_suggested_label_sets(tmp_path, multi):
    cfg, plain = multi
    train = plain.splits["train"]
    rows = train.iloc[[0, 1, 2]]
    path = multi_issues_file(tmp_path / "issues.csv", rows, ["sadness,joy", "fear", ",".join(rows.iloc[2]["label"])])
    data = load_data(replace(cfg, exclude_label_issues=path, label_issues_action="relabel"))
    new = data.splits["train"].set_index("text")["label"]
    assert new[rows.iloc[0]["text"]] == ("joy", "sadness") and new[rows.iloc[1]["text"]] == ("fear",)
    assert data.report.label_issues["changed"] == 2  # the third row's suggestion is its own set
    y = data.y("train")[data.splits["train"]["text"] == rows.iloc[0]["text"]][0]
    assert [lab for lab, v in zip(data.labels, y) if v] == ["joy", "sadness"]  # label ids follow the new set


@pytest.mark.parametrize(
    "suggested, message",
    [
        ("joy,glee", "suggested label(s) 'glee' are not among the training labels (anger, fear, joy, love, sadness, "),
        ("", "1 row(s) suggest no label, but every text must have one; give each a label, or pass --allow-no-label"),
    ],
)
def test_a_multi_label_suggestion_that_cannot_be_a_label_set_is_refused(tmp_path, multi, suggested, message):
    cfg, plain = multi
    path = multi_issues_file(tmp_path / "issues.csv", plain.splits["train"].iloc[[0]], [suggested])
    with pytest.raises(DataError, match=re.escape(f"{path}: {message}")):
        load_data(replace(cfg, exclude_label_issues=path, label_issues_action="relabel"))
