"""load_data: every dropped row counted, every refusal naming file/row/column, splits seeded and honest."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pandas as pd
import pytest

from emoclf.config import DataConfig, PreprocessConfig
from emoclf.data import SPLITS, load_data, read_file
from emoclf.data.validate import DataReport, label_order, label_strings
from emoclf.errors import DataError
from emoclf.preprocess import Preprocessor

LABELS = ("anger", "joy", "sadness")


def balanced(n_per: int = 20, labels=LABELS, tag: str = "train") -> list[tuple]:
    return [(f"{tag} {lab} sample {i}", lab) for lab in labels for i in range(n_per)]


def write_csv(path: Path, rows: list[tuple]) -> Path:
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return path


def three_files(tmp_path: Path, train: list, val: list | None = None, test: list | None = None, **kw) -> DataConfig:
    """A DataConfig with explicit train/validation/test files, so nothing is carved."""
    val = val if val is not None else balanced(2, tag="val")
    test = test if test is not None else balanced(2, tag="test")
    return DataConfig(
        data=str(write_csv(tmp_path / "train.csv", train)),
        val_data=str(write_csv(tmp_path / "val.csv", val)),
        test_data=str(write_csv(tmp_path / "test.csv", test)),
        **kw,
    )


def test_output_frames_have_expected_columns(tmp_path):
    data = load_data(three_files(tmp_path, balanced(4)))
    assert list(data.splits) == list(SPLITS)
    for df in data.splits.values():
        assert list(df.columns) == ["text", "label", "row", "raw_text", "label_id"]
        assert list(df.index) == list(range(len(df)))
        assert df["label_id"].tolist() == [data.labels.index(lab) for lab in df["label"]]
    assert data.report.split_created == []


def test_text_preprocessed_raw_text_kept(tmp_path):
    train = balanced(4) + [("Hello @Bob see https://x.y NOW", "joy")]
    data = load_data(three_files(tmp_path, train))
    row = data.splits["train"].loc[data.splits["train"]["raw_text"] == "Hello @Bob see https://x.y NOW"].iloc[0]
    assert row["text"] == "hello user see http now"


def test_empty_and_missing_texts_dropped_and_counted(tmp_path):
    train = balanced(4) + [("", "joy"), ("   ", "anger"), (None, "sadness"), ("\t", "joy")]
    test = balanced(2, tag="test") + [("  ", "joy")]
    data = load_data(three_files(tmp_path, train, test=test))
    rep = data.report
    assert rep.rows_read == {"train": 16, "validation": 6, "test": 7}
    assert rep.empty_texts_dropped == {"train": 4, "validation": 0, "test": 1}
    assert len(data.splits["train"]) == 12 and len(data.splits["test"]) == 6
    for df in data.splits.values():
        assert (df["text"].str.strip() != "").all()


def test_text_empty_after_preprocessing_is_dropped(tmp_path):
    train = balanced(4) + [("https://only.a.url", "joy"), ("@someone", "anger")]
    pre = Preprocessor(PreprocessConfig(urls="remove", users="remove"))
    data = load_data(three_files(tmp_path, train), pre)
    assert data.report.empty_texts_dropped["train"] == 2
    assert len(data.splits["train"]) == 12


def test_strict_refuses_empty_texts_naming_file_row_column(tmp_path):
    # Rows: header is line 1, so the empty texts at positions 2 and 4 of the data are rows 3 and 5.
    train = [("fine a", "joy"), ("", "joy"), ("fine b", "anger"), (None, "anger")] + balanced(4)
    cfg = three_files(tmp_path, train, strict=True)
    with pytest.raises(
        DataError,
        match="^"
        + re.escape(
            f"{tmp_path / 'train.csv'}: row(s) 3, 5, column 'text': empty or missing text "
            "(--strict refuses these; drop --strict to skip and count them)"
        )
        + "$",
    ):
        load_data(cfg)


def test_strict_lists_at_most_five_rows(tmp_path):
    train = [("", "joy")] * 7 + balanced(4)
    cfg = three_files(tmp_path, train, strict=True)
    with pytest.raises(DataError, match=re.escape("row(s) 2, 3, 4, 5, 6 and 2 more, column 'text'")):
        load_data(cfg)


def test_missing_label_refused_naming_row(tmp_path):
    train = balanced(4) + [("no label here", None)]
    cfg = three_files(tmp_path, train)
    with pytest.raises(
        DataError, match="^" + re.escape(f"{tmp_path / 'train.csv'}: row(s) 14, column 'label': missing label") + "$"
    ):
        load_data(cfg)


def test_missing_label_in_test_file_refused(tmp_path):
    test = balanced(2, tag="test") + [("unlabelled", "  ")]
    cfg = three_files(tmp_path, balanced(4), test=test)
    with pytest.raises(
        DataError, match="^" + re.escape(f"{tmp_path / 'test.csv'}: row(s) 8, column 'label': missing label") + "$"
    ):
        load_data(cfg)


@pytest.mark.parametrize("split", ["validation", "test"])
def test_unseen_labels_refused_naming_them(tmp_path, split):
    extra = [("something new", "zeal"), ("more new", "awe")]
    kw = {"val": balanced(2, tag="val") + extra} if split == "validation" else {"test": balanced(2, tag="test") + extra}
    cfg = three_files(tmp_path, balanced(4), **kw)
    source = tmp_path / ("val.csv" if split == "validation" else "test.csv")
    with pytest.raises(
        DataError,
        match="^"
        + re.escape(
            f"{source}: label(s) 'awe', 'zeal' in the {split} split never occur in the training data; "
            "the model cannot learn them (fix the labels or add training examples)"
        )
        + "$",
    ):
        load_data(cfg)


def test_exact_duplicates_counted_and_dropped_from_train(tmp_path):
    train = balanced(4) + [("train joy sample 0", "joy")] * 2 + [("train anger sample 1", "anger")]
    val = balanced(2, tag="val") + [("val joy sample 0", "joy")]
    data = load_data(three_files(tmp_path, train, val=val))
    rep = data.report
    assert rep.duplicates == {"train": 3, "validation": 1, "test": 0}
    assert rep.duplicates_dropped == 3
    assert len(data.splits["train"]) == 12 and not data.splits["train"].duplicated(["text", "label"]).any()
    # The first occurrence is kept (its original row number).
    assert data.splits["train"].loc[data.splits["train"]["text"] == "train joy sample 0", "row"].tolist() == [6]
    assert len(data.splits["validation"]) == 7  # evaluation splits are counted, never deduplicated


def test_duplicates_detected_after_preprocessing(tmp_path):
    train = balanced(4) + [("Train JOY sample 0", "joy"), ("train   joy sample 0 ", "joy")]
    data = load_data(three_files(tmp_path, train))
    assert data.report.duplicates["train"] == 2 and data.report.duplicates_dropped == 2


def test_duplicates_kept_when_not_dropping(tmp_path):
    train = balanced(4) + [("train joy sample 0", "joy")] * 2
    data = load_data(three_files(tmp_path, train, drop_duplicates=False))
    assert data.report.duplicates["train"] == 2 and data.report.duplicates_dropped == 0
    assert len(data.splits["train"]) == 14


def test_conflicting_duplicates_counted_with_examples(tmp_path):
    train = balanced(4) + [
        ("same words", "joy"),
        ("other", "anger"),
        ("same words", "anger"),
        ("other", "joy"),
        ("same words", "joy"),
    ]
    data = load_data(three_files(tmp_path, train))
    rep = data.report
    assert rep.conflicting_duplicates == {"train": 2, "validation": 0, "test": 0}
    assert rep.duplicates["train"] == 1  # only the exact repeat of ("same words", "joy")
    assert rep.conflict_examples == [
        {"split": "train", "text": "other", "labels": ["anger", "joy"], "rows": [15, 17]},
        {"split": "train", "text": "same words", "labels": ["anger", "joy"], "rows": [14, 16, 18]},
    ]


def test_leakage_counted_and_dropped_from_train(tmp_path):
    train = balanced(4) + [("leaky one", "joy"), ("leaky one", "anger"), ("leaky two", "sadness")]
    val = balanced(2, tag="val") + [("leaky two", "sadness")]
    test = balanced(2, tag="test") + [("Leaky   One", "joy")]  # the same text once preprocessed
    data = load_data(three_files(tmp_path, train, val=val, test=test))
    rep = data.report
    assert rep.leakage == {"validation_test": 0, "validation": 1, "test": 1}
    assert rep.leakage_dropped == 3  # every training row holding a leaked text
    assert not data.splits["train"]["text"].isin(["leaky one", "leaky two"]).any()
    assert len(data.splits["train"]) == 12
    assert len(data.splits["validation"]) == 7 and len(data.splits["test"]) == 7


def test_leakage_kept_when_not_dropping(tmp_path):
    train = balanced(4) + [("leaky one", "joy")]
    test = balanced(2, tag="test") + [("leaky one", "joy")]
    data = load_data(three_files(tmp_path, train, test=test, drop_leakage=False))
    assert data.report.leakage == {"validation_test": 0, "validation": 0, "test": 1}
    assert data.report.leakage_dropped == 0
    assert data.splits["train"]["text"].tolist().count("leaky one") == 1


def test_leakage_drop_that_empties_a_class_is_refused(tmp_path):
    train = balanced(4) + [("only fear text", "fear")]
    test = balanced(2, tag="test") + [("only fear text", "fear")]
    with pytest.raises(DataError, match="'fear'"):
        load_data(three_files(tmp_path, train, test=test))


def test_singleton_class_refused_with_clear_message(tmp_path):
    path = write_csv(tmp_path / "all.csv", balanced(10) + [("lonely text", "fear")])
    with pytest.raises(
        DataError,
        match="^"
        + re.escape(
            f"{path}: class(es) with fewer than 3 examples: 'fear' (1); carving a test split and a validation split "
            "out of the training data (one row for each split) needs at least 3 per class: add examples, remove the "
            "class, or give --test-data and --val-data"
        )
        + "$",
    ):
        load_data(DataConfig(data=str(path)))


def test_class_too_small_for_validation_split_names_it(tmp_path):
    # A test file is given, so only the validation split is carved out of train.
    train = write_csv(tmp_path / "train.csv", balanced(10) + [("lonely fear", "fear")])
    test = write_csv(tmp_path / "test.csv", balanced(2, tag="test"))
    with pytest.raises(
        DataError,
        match="^"
        + re.escape(
            f"{train}: class(es) with fewer than 2 examples: 'fear' (1); carving a validation split out of the "
            "training data (one row for each split) needs at least 2 per class: add examples, remove the class, or "
            "give --val-data"
        )
        + "$",
    ):
        load_data(DataConfig(data=str(train), test_data=str(test)))


def test_classes_too_small_for_two_carved_splits_are_named(tmp_path):
    path = write_csv(tmp_path / "tiny.csv", balanced(2))
    with pytest.raises(
        DataError,
        match="^"
        + re.escape(
            f"{path}: class(es) with fewer than 3 examples: 'anger' (2), 'joy' (2), 'sadness' (2); carving a test "
            "split and a validation split"
        ),
    ):
        load_data(DataConfig(data=str(path)))


def test_a_rare_class_gets_a_row_in_every_carved_split(tmp_path, caplog):
    # 3 rows of 'fear' among 120: stratification alone gives it 0 test and 0 validation rows (10% of 3 rounds to 0).
    path = write_csv(tmp_path / "all.csv", balanced(40) + [(f"rare fear {i}", "fear") for i in range(3)])
    for seed in (1, 2, 3):
        data = load_data(DataConfig(data=str(path), split_seed=seed))
        counts = {split: int((df["label"] == "fear").sum()) for split, df in data.splits.items()}
        assert counts == {"train": 1, "validation": 1, "test": 1}, seed
        assert data.report.absent_classes == {"validation": [], "test": []}
        texts = [t for df in data.splits.values() for t in df["text"]]
        assert len(texts) == len(set(texts)) == 123  # moved, never copied
    assert "has no rows of class" not in caplog.text


def test_a_class_missing_from_a_given_test_file_is_named_and_left_out_of_macro_f1(tmp_path, caplog):
    test = balanced(2, ("anger", "joy"), tag="test")  # no sadness
    data = load_data(three_files(tmp_path, balanced(4), test=test))
    assert data.report.absent_classes == {"validation": [], "test": ["sadness"]}
    assert (
        "the test split has no rows of class(es) 'sadness': their F1 cannot be measured there, and its "
        "macro-F1 is over the other 2 classes; add test examples of them"
    ) in caplog.text


def test_validation_texts_also_in_test_are_counted_and_dropped_from_validation(tmp_path):
    val = balanced(2, tag="val") + [("shared one", "joy"), ("shared two", "anger"), ("Shared   ONE", "joy")]
    test = balanced(2, tag="test") + [("shared one", "joy"), ("shared two", "anger")]
    data = load_data(three_files(tmp_path, balanced(4), val=val, test=test))
    assert data.report.leakage["validation_test"] == 2 and data.report.validation_leakage_dropped == 3
    assert not data.splits["validation"]["text"].isin(["shared one", "shared two"]).any()
    assert len(data.splits["test"]) == 8  # the test split is never touched
    # A carved validation split is checked against a given test file the same way.
    rows = balanced(20) + [("also in test", "joy")] * 1
    test = balanced(2, tag="test") + [("also in test", "joy")]
    data = load_data(
        DataConfig(data=str(write_csv(tmp_path / "all.csv", rows)), test_data=str(write_csv(tmp_path / "t.csv", test)))
    )
    assert "also in test" not in set(data.splits["validation"]["text"]) | set(data.splits["train"]["text"])
    with pytest.raises(DataError, match="every validation text also occurs in the test split"):
        load_data(three_files(tmp_path, balanced(4), val=balanced(2, tag="test"), test=balanced(2, tag="test")))


def test_too_few_rows_for_split(tmp_path):
    path = write_csv(tmp_path / "tiny.csv", balanced(3, ("a", "b")))
    with pytest.raises(
        DataError,
        match="^" + re.escape(f"{path}: 6 rows are too few for a stratified test split of 80% over 2 classes") + "$",
    ):
        load_data(DataConfig(data=str(path), test_size=0.8))


def test_carved_split_sizes_and_stratification(tmp_path):
    path = write_csv(tmp_path / "all.csv", balanced(20))
    data = load_data(DataConfig(data=str(path)))
    assert data.report.split_created == ["test", "validation"]
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 48, "validation": 6, "test": 6}
    for split in ("validation", "test"):
        assert data.splits[split]["label"].value_counts().to_dict() == {lab: 2 for lab in LABELS}
    all_texts = [t for df in data.splits.values() for t in df["text"]]
    assert len(all_texts) == len(set(all_texts)) == 60


def _split_texts(data) -> dict[str, list[str]]:
    return {k: v["text"].tolist() for k, v in data.splits.items()}


def test_stratified_split_reproducible_and_seeded(tmp_path):
    path = write_csv(tmp_path / "all.csv", balanced(30))
    first = _split_texts(load_data(DataConfig(data=str(path), split_seed=7)))
    again = _split_texts(load_data(DataConfig(data=str(path), split_seed=7)))
    other = _split_texts(load_data(DataConfig(data=str(path), split_seed=8)))
    assert first == again
    assert set(first["test"]) != set(other["test"])
    assert set(first["validation"]) != set(other["validation"])


def test_test_split_rows_never_modified(tmp_path):
    train = balanced(6) + [("shared text", "joy"), ("train joy sample 1", "joy")]
    test = balanced(2, tag="test") + [
        ("shared text", "joy"),
        ("twice", "anger"),
        ("twice", "anger"),
        ("twice", "joy"),
        ("Mixed CASE", "sadness"),
    ]
    cfg = three_files(tmp_path, train, test=test, max_samples=9)
    before = read_file(cfg.test_data, cfg)
    data = load_data(cfg)
    after = data.splits["test"]
    assert after["raw_text"].tolist() == before["text"].tolist()
    assert after["label"].tolist() == before["label"].tolist()
    assert after["row"].tolist() == before["row"].tolist()
    assert data.report.duplicates["test"] == 1 and data.report.conflicting_duplicates["test"] == 1
    assert data.report.leakage["test"] == 1 and data.report.leakage_dropped == 1


def test_max_samples_subsamples_train_only(tmp_path):
    path = write_csv(tmp_path / "all.csv", balanced(30))
    full = load_data(DataConfig(data=str(path)))
    small = load_data(DataConfig(data=str(path), max_samples=12))
    assert len(full.splits["train"]) == 72 and len(small.splits["train"]) == 12
    assert small.splits["train"]["label"].value_counts().to_dict() == {lab: 4 for lab in LABELS}
    assert set(small.splits["train"]["text"]) < set(full.splits["train"]["text"])
    for split in ("validation", "test"):
        assert small.splits[split]["text"].tolist() == full.splits[split]["text"].tolist()
    # More than available: train is left as it is.
    big = load_data(DataConfig(data=str(path), max_samples=1000))
    assert big.splits["train"]["text"].tolist() == full.splits["train"]["text"].tolist()


def test_max_samples_below_class_count_is_a_data_error(tmp_path):
    path = write_csv(tmp_path / "all.csv", balanced(30))
    with pytest.raises(DataError, match="max_samples"):
        load_data(DataConfig(data=str(path), max_samples=2))


def test_max_samples_with_singleton_class_is_a_data_error(tmp_path):
    train = balanced(10) + [("lonely fear", "fear")]
    cfg = three_files(tmp_path, train, max_samples=10)
    with pytest.raises(DataError, match="'fear'"):
        load_data(cfg)


def test_label_order_alphabetical_for_strings(tmp_path):
    labels = ("sadness", "Anger", "joy", "fear")
    data = load_data(three_files(tmp_path, balanced(4, labels), balanced(1, labels, "val"), balanced(1, labels, "t")))
    assert data.labels == ["Anger", "fear", "joy", "sadness"]  # plain sorted(): case-sensitive
    train = data.splits["train"]
    assert dict(zip(train["label"], train["label_id"])) == {"Anger": 0, "fear": 1, "joy": 2, "sadness": 3}


def test_label_order_numeric_for_integers(tmp_path):
    labels = ("10", "2", "0", "1")
    data = load_data(three_files(tmp_path, balanced(4, labels), balanced(1, labels, "val"), balanced(1, labels, "t")))
    assert data.labels == ["0", "1", "2", "10"]
    assert data.splits["train"].loc[data.splits["train"]["label"] == "10", "label_id"].unique().tolist() == [3]


def test_integer_labels_from_jsonl_and_float_columns(tmp_path):
    rows = [{"text": f"t{i}", "label": i % 3} for i in range(30)]
    path = tmp_path / "ints.jsonl"
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    data = load_data(DataConfig(data=str(path)))
    assert data.labels == ["0", "1", "2"]
    # A float column of whole numbers (what pandas makes of ints next to NaN) also gives "0", "1", ...
    labels = label_strings(pd.DataFrame({"text": ["a", "b"], "label": [1.0, 0.0], "row": [1, 2]}))
    assert labels.tolist() == ["1", "0"] and label_order(set(labels), None) == ["0", "1"]


def test_label_order_keeps_given_names_order():
    # Names not in train are left out; labels not in names come after, sorted.
    assert label_order({"joy", "anger", "extra"}, ["sadness", "joy", "anger"]) == ["joy", "anger", "extra"]


def test_demo_set_loads_with_six_labels():
    data = load_data(DataConfig())
    assert data.labels == ["anger", "fear", "joy", "love", "sadness", "surprise"]
    assert data.report.split_created == ["test", "validation"]
    assert data.report.rows_read == {"train": 460}
    sizes = {k: len(v) for k, v in data.splits.items()}
    assert (
        sum(sizes.values())
        == 460 - data.report.duplicates_dropped - data.report.leakage_dropped - data.report.empty_texts_dropped["train"]
    )
    for split in SPLITS:
        assert set(data.splits[split]["label"]) == set(data.labels)


def test_report_to_dict_is_plain():
    rep = DataReport(rows_read={"train": 3}, duplicates_dropped=1)
    assert rep.to_dict()["rows_read"] == {"train": 3} and rep.to_dict()["duplicates_dropped"] == 1


def test_max_val_samples_caps_validation_stratified_and_leaves_test_alone():
    full = load_data(DataConfig())
    capped = load_data(DataConfig(max_val_samples=12))
    assert len(capped.splits["validation"]) == 12 < len(full.splits["validation"])
    assert set(capped.splits["validation"]["label"]) == set(full.splits["validation"]["label"])  # every class kept
    pd.testing.assert_frame_equal(capped.splits["test"], full.splits["test"])
    pd.testing.assert_frame_equal(capped.splits["train"], full.splits["train"])


@pytest.mark.parametrize("normalize", [True, False])
def test_the_same_text_in_nfd_is_leakage_whether_or_not_preprocessing_normalises(tmp_path, normalize):
    # Without normalising, keep the combining accents (strip_non_word would split them off): the check compares
    # the NFC forms of what preprocessing left.
    accented = [(f"un café très naïve numéro {i}", lab) for i, lab in enumerate(LABELS * 10)]
    nfd = [(unicodedata.normalize("NFD", text), lab) for text, lab in accented]
    assert nfd[0][0] != accented[0][0]
    cfg = three_files(tmp_path, balanced(10) + accented, test=balanced(2, tag="test") + nfd)
    data = load_data(cfg, Preprocessor(PreprocessConfig(normalize_unicode=normalize, strip_non_word=normalize)))
    assert data.report.leakage["test"] == 30 and data.report.leakage_dropped == 30
    assert len(data.splits["train"]) == 30
    if normalize:  # the model sees one text, as a reader does
        assert set(data.splits["test"]["text"]) >= {t.lower() for t, _ in accented}


def test_conflicts_are_counted_in_linear_time_and_listed_first_five(tmp_path):
    train = balanced(4) + [(f"shared {i}", lab) for i in range(8) for lab in ("joy", "anger")]
    data = load_data(three_files(tmp_path, train, drop_duplicates=False))
    rep = data.report
    assert rep.conflicting_duplicates["train"] == 8
    assert [c["text"] for c in rep.conflict_examples] == [f"shared {i}" for i in range(5)]
    assert rep.conflict_examples[0] == {
        "split": "train",
        "text": "shared 0",
        "labels": ["anger", "joy"],
        "rows": [14, 15],
    }


def test_labels_that_differ_only_in_case_or_spacing_are_refused_naming_each_spelling(tmp_path):
    train = balanced(4) + [("more joy", "Joy"), ("even more", "JOY")]
    cfg = three_files(tmp_path, train)
    with pytest.raises(
        DataError,
        match="^"
        + re.escape(
            f"labels 'joy' ({cfg.data} row 6), 'Joy' ({cfg.data} row 14), 'JOY' ({cfg.data} row 15) differ only in "
            "case or spacing: they would train as 3 separate classes; spell each class one way in every file"
        )
        + "$",
    ):
        load_data(cfg)
    test = balanced(2, tag="test") + [("shouting", "ANGER ")]  # across files too; the ends are stripped
    with pytest.raises(DataError, match=r"^labels 'anger' \(.*train\.csv row 2\), 'ANGER' \(.*test\.csv row 8\) "):
        load_data(three_files(tmp_path, balanced(4), test=test))
    nfd = balanced(4) + [("accent", unicodedata.normalize("NFD", "café"))] * 3  # one label, two encodings
    data = load_data(three_files(tmp_path, nfd + [("accent 2", "café")] * 3, val=balanced(2) + [("a", "café")]))
    assert "café" in data.labels and unicodedata.normalize("NFD", "café") not in data.labels


def test_label_names_name_integer_labels_everywhere_and_set_the_class_order(tmp_path):
    ids = {"anger": 2, "joy": 0, "sadness": 1}
    rows = lambda tag, n: [(t, ids[lab]) for t, lab in balanced(n, tag=tag)]  # noqa: E731
    cfg = three_files(tmp_path, rows("train", 4), rows("val", 2), rows("test", 2), label_names="joy,sadness,anger")
    data = load_data(cfg)
    assert data.labels == ["joy", "sadness", "anger"]  # id order, as saved with the model
    for df in data.splits.values():
        assert set(df["label"]) == {"joy", "sadness", "anger"}
        assert (df["label_id"] == df["label"].map({"joy": 0, "sadness": 1, "anger": 2})).all()
    assert data.splits["test"]["raw_text"].str.contains("test").all()


def test_the_summary_names_where_each_split_came_from_never_by_an_absolute_path(tmp_path, monkeypatch):
    folder = tmp_path / "emotion"
    folder.mkdir()
    train = write_csv(folder / "train.csv", balanced(20))
    held_out = write_csv(folder / "val.csv", balanced(3, tag="held-out"))
    summary = load_data(DataConfig(data=str(train), test_data=str(held_out))).summary(str(train))
    assert summary["source"] == "emotion/train.csv" and summary["name"] == "emotion" and summary["hub_id"] is None
    assert summary["splits"] == {
        "train": {"from": "emotion/train.csv", "carved": False},
        "validation": {"from": "emotion/train.csv", "carved": True},
        "test": {"from": "emotion/val.csv", "carved": False},
    }
    assert summary["texts"] == {"train": 54, "validation": 6, "test": 9}
    monkeypatch.chdir(tmp_path)  # below the working folder: relative to it
    assert load_data(DataConfig(data=str(train))).summary(str(train))["splits"]["test"] == {
        "from": "emotion/train.csv",
        "carved": True,
    }
    demo = load_data(DataConfig()).summary("demo")
    assert (demo["source"], demo["name"], demo["splits"]["test"]) == (
        "the embedded demo set",
        "emoclf-demo",
        {"from": "the embedded demo set", "carved": True},
    )
