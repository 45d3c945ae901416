"""Multi-label data in every usual form, and each way it can be wrong, named by file, row and column."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from emoclf.config import DataConfig
from emoclf.data import load_data, load_labelled
from emoclf.data.labels import decide_task, describe
from emoclf.errors import DataError
from emoclf.preprocess import Preprocessor

NAMES = ["anger", "joy", "relief", "sadness"]
TEXTS = [f"text number {i} about something" for i in range(60)]


def _labels(i: int) -> list[str]:
    """Every text has 1-2 labels; each label has at least 10 texts, so splits can be carved."""
    first = NAMES[i % 4]
    return [first] if i % 3 else sorted({first, NAMES[(i + 1) % 4]})


def _frame(cell) -> pd.DataFrame:
    return pd.DataFrame({"text": TEXTS, "label": [cell(_labels(i), i) for i in range(len(TEXTS))]})


def _load(path, **settings):
    return load_data(DataConfig(data=str(path), **settings), Preprocessor())


def _sets(data) -> list[tuple]:
    every = pd.concat(list(data.splits.values()))
    return sorted(zip(every["raw_text"], every["label"]))


EXPECTED = sorted((t, tuple(_labels(i))) for i, t in enumerate(TEXTS))


@pytest.mark.parametrize(
    "name, write",
    [
        ("separated.csv", lambda p: _frame(lambda labs, i: ",".join(labs)).to_csv(p, index=False)),
        ("json-cells.csv", lambda p: _frame(lambda labs, i: json.dumps(labs)).to_csv(p, index=False)),
        ("lists.jsonl", lambda p: _frame(lambda labs, i: labs).to_json(p, orient="records", lines=True)),
        ("lists.parquet", lambda p: _frame(lambda labs, i: labs).to_parquet(p)),
        (
            "columns.csv",
            lambda p: pd.DataFrame(
                {"text": TEXTS, **{n: [int(n in _labels(i)) for i in range(len(TEXTS))] for n in NAMES}}
            ).to_csv(p, index=False),
        ),
    ],
)
def test_every_form_reads_the_same_label_sets(tmp_path, name, write):
    write(tmp_path / name)
    data = _load(tmp_path / name)
    assert data.task == "multi-label" and data.labels == NAMES
    assert _sets(data) == EXPECTED
    y = data.y("train")
    assert y.shape == (len(data.splits["train"]), 4) and set(np.unique(y)) == {0, 1}


def test_goemotions_as_published_headerless_tsv_with_ids_and_a_labels_file(tmp_path):
    ids = [",".join(str(NAMES.index(n)) for n in _labels(i)) for i in range(len(TEXTS))]
    rows = [f"{t}\t{i}\tid{k}" for k, (t, i) in enumerate(zip(TEXTS, ids))]
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (tmp_path / "labels.txt").write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    by_flag = _load(tmp_path / "train.tsv", label_names=str(tmp_path / "labels.txt"))
    assert by_flag.task == "multi-label" and _sets(by_flag) == EXPECTED
    # A folder holding labels.txt names its ids by itself, given as the folder or as the file in it (the README's
    # GoEmotions command names train.tsv alone).
    assert _sets(_load(tmp_path)) == EXPECTED
    assert _sets(_load(tmp_path / "train.tsv")) == EXPECTED


def test_the_data_line_says_what_multi_label_data_holds(tmp_path, caplog):
    _frame(lambda labs, i: ",".join(labs)).to_csv(tmp_path / "d.csv", index=False)
    with caplog.at_level("INFO", logger="emoclf.data"):
        data = _load(tmp_path / "d.csv")
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("data:"))
    assert re.search(r"; multi-label: 4 labels, 1\.\d\d labels per text, \d+% of texts with more than one$", line)
    assert describe(pd.Series([("a",), ("a", "b"), ()]), ["a", "b"]) == (
        "multi-label: 2 labels, 1.00 labels per text, 33% of texts with more than one, 33% with none"
    )
    assert data.summary("d.csv")["task"] == "multi-label"


def test_single_label_data_stays_single_label(tmp_path):
    pd.DataFrame({"text": TEXTS, "label": [NAMES[i % 4] for i in range(60)]}).to_csv(tmp_path / "s.csv", index=False)
    data = _load(tmp_path / "s.csv")
    assert data.task == "single-label" and data.y("train").ndim == 1
    assert decide_task("multi-label", [], ",") == "multi-label"


def _csv(tmp_path, cells: list, name: str = "bad.csv"):
    rows = [",".join(_labels(i)) for i in range(len(TEXTS))]
    rows[: len(cells)] = cells
    path = tmp_path / name
    pd.DataFrame({"text": TEXTS, "label": rows}).to_csv(path, index=False)
    return path


def test_an_id_out_of_range_is_refused_with_file_row_and_column(tmp_path):
    path = tmp_path / "ids.tsv"
    path.write_text("text\tlabel\nfirst text\t0,1\nsecond text\t0,7\nthird text\t1,9\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        _load(path, label_names=",".join(NAMES))
    assert str(err.value) == (
        f"{path}: row(s) 3, 4, column 'label': label '7' is not a label of --label-names (ids 0..3 and the names "
        "anger, joy, relief, sadness; 2 row(s)); fix the labels, or give the names of every label"
    )


def test_an_unknown_name_is_refused(tmp_path):
    path = _csv(tmp_path, ["joy,happiness"])
    with pytest.raises(DataError, match=re.escape(f"{path}: row(s) 2, column 'label': label 'happiness' is not a")):
        _load(path, label_names=",".join(NAMES))


def test_an_empty_label_set_is_refused_unless_texts_may_have_none(tmp_path):
    path = _csv(tmp_path, ["joy,relief", "[]"])
    with pytest.raises(DataError) as err:
        _load(path)
    assert str(err.value) == (
        f"{path}: row(s) 3, column 'label': no label (1 row(s)); give every text at least one label, or pass "
        "--allow-no-label if texts may have none"
    )
    data = _load(path, allow_no_label=True)
    assert () in set(pd.concat(list(data.splits.values()))["label"])


def test_a_zero_one_column_holding_two_is_refused(tmp_path):
    frame = pd.DataFrame({"text": TEXTS, **{n: [int(n in _labels(i)) for i in range(60)] for n in NAMES}})
    frame.loc[4, "joy"] = 2
    frame.to_csv(tmp_path / "cols.csv", index=False)
    with pytest.raises(DataError) as err:
        _load(tmp_path / "cols.csv")
    assert str(err.value) == (
        f"{tmp_path / 'cols.csv'}: row(s) 6, column 'joy': holds 2; a label column holds 1 (the text has the label) "
        "or 0"
    )


def test_carved_splits_hold_every_label_on_every_side(tmp_path):
    _frame(lambda labs, i: ",".join(labs)).to_csv(tmp_path / "d.csv", index=False)
    data = _load(tmp_path / "d.csv")
    for split in ("train", "validation", "test"):
        assert (data.y(split).sum(axis=0) > 0).all(), split
    # Iterative stratification keeps labels' shares before exact sizes: at most the rows asked for.
    assert 18 <= _load(tmp_path / "d.csv", max_samples=20).y("train").shape[0] <= 20


def test_a_model_scores_multi_label_files_as_it_was_trained(tmp_path):
    _frame(lambda labs, i: json.dumps(labs)).to_csv(tmp_path / "d.csv", index=False)
    labelled = load_labelled(DataConfig(data=str(tmp_path / "d.csv")), NAMES, Preprocessor(), "multi-label")
    assert labelled.y_true.shape == (60, 4) and labelled.y_true[0].tolist() == [1, 1, 0, 0]


def test_a_hugging_face_dataset_with_a_list_of_class_labels(tmp_path):
    import datasets

    features = datasets.Features(
        {"text": datasets.Value("string"), "labels": datasets.Sequence(datasets.ClassLabel(names=NAMES))}
    )
    ids = [[NAMES.index(n) for n in _labels(i)] for i in range(len(TEXTS))]
    datasets.Dataset.from_dict({"text": TEXTS, "labels": ids}, features=features).save_to_disk(str(tmp_path / "hf"))
    data = _load(f"hf:{tmp_path / 'hf'}", label_column="labels")
    assert data.task == "multi-label" and data.labels == NAMES and _sets(data) == EXPECTED


def test_a_config_with_test_data_is_scored_on_that_file_never_on_its_training_file(tmp_path):
    """A training config (data: train file, test_data: dev file) handed to scoring: the dev file's rows are scored.
    Before, every row of the training file was, and a benchmark reported its training texts as dev scores."""
    train_file, dev_file = tmp_path / "train.csv", tmp_path / "dev.csv"
    train_file.write_text("text,label\n" + "i am happy today,joy\ni am so sad,sadness\n" * 5, encoding="utf-8")
    dev_file.write_text("text,label\nwhat a lovely day,joy\nthis hurts so much,sadness\n", encoding="utf-8")
    cfg = DataConfig(data=str(train_file), test_data=str(dev_file))
    scored = load_labelled(cfg, ["joy", "sadness"], Preprocessor())
    assert scored.texts == ["what a lovely day", "this hurts so much"]
