"""Readers: every format into text/label/row, format detection, and errors that name file, line and fix."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from emoclf.config import DataConfig
from emoclf.data.io import demo_path, detect_format, read_file, read_hf, read_source, read_table
from emoclf.errors import DataError

TEXTS = ["i feel great", "so angry, really", "tears; again"]
LABELS = ["joy", "anger", "sadness"]


def _records(df: pd.DataFrame) -> list[tuple]:
    return list(zip(df["text"], df["label"], df["row"]))


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _err(match: str):
    return pytest.raises(DataError, match=match)


# --- each format -------------------------------------------------------------------------------


def test_csv(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"text": TEXTS, "label": LABELS}).to_csv(path, index=False)
    df = read_file(path, DataConfig())
    assert list(df.columns) == ["text", "label", "row"]
    # Header is line 1, so data rows are numbered from 2.
    assert _records(df) == [(t, lab, i) for i, (t, lab) in enumerate(zip(TEXTS, LABELS), start=2)]
    assert df.attrs["source"] == str(path)


def test_tsv(tmp_path):
    path = _write(tmp_path / "d.tsv", "text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in zip(TEXTS, LABELS)))
    df = read_file(path, DataConfig())
    assert _records(df) == [(t, lab, i) for i, (t, lab) in enumerate(zip(TEXTS, LABELS), start=2)]


def test_tsv_written_by_pandas_round_trips_quotes(tmp_path):
    texts = ['"quoted" start', 'has "inner" quotes', "comma, kept"]
    path = tmp_path / "d.tsv"
    pd.DataFrame({"text": texts, "label": ["a", "b", "c"]}).to_csv(path, sep="\t", index=False)
    assert read_file(path, DataConfig())["text"].tolist() == texts


def test_jsonl(tmp_path):
    lines = [json.dumps({"text": t, "label": lab, "extra": 1}) for t, lab in zip(TEXTS, LABELS)]
    path = _write(tmp_path / "d.jsonl", "\n".join(lines[:1] + [""] + lines[1:]) + "\n")
    df = read_file(path, DataConfig())
    assert list(df.columns) == ["text", "label", "row"]
    # row is the line number; the blank line 2 is skipped but still counted.
    assert _records(df) == [(TEXTS[0], LABELS[0], 1), (TEXTS[1], LABELS[1], 3), (TEXTS[2], LABELS[2], 4)]


def test_json_extension_is_jsonl(tmp_path):
    path = _write(tmp_path / "d.json", json.dumps({"text": "x", "label": "y"}) + "\n")
    assert _records(read_file(path, DataConfig())) == [("x", "y", 1)]


def test_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"text": TEXTS, "label": LABELS, "other": [1, 2, 3]}).to_parquet(path)
    df = read_file(path, DataConfig())
    assert list(df.columns) == ["text", "label", "row"]
    assert _records(df) == [(t, lab, i) for i, (t, lab) in enumerate(zip(TEXTS, LABELS), start=1)]


def test_txt_splits_on_last_semicolon_and_skips_blank_lines(tmp_path):
    path = _write(tmp_path / "d.txt", "\ni feel great;joy\n\nwell; no; maybe;sadness \r\n   \nx;;anger\n")
    df = read_file(path, DataConfig())
    assert list(df.columns) == ["text", "label", "row"]
    assert _records(df) == [("i feel great", "joy", 2), ("well; no; maybe", "sadness", 4), ("x;", "anger", 6)]


def test_txt_line_without_semicolon_names_line(tmp_path):
    path = _write(tmp_path / "d.txt", "ok;joy\n\nno separator here\n")
    with _err("^" + re.escape(f"{path}: line 3: expected 'text;label' (no ';' found): 'no separator here'") + "$"):
        read_file(path, DataConfig())


def test_txt_to_predict_is_one_text_per_line_unless_every_line_ends_in_a_label(tmp_path):
    model_labels = ["joy", "sadness"]
    plain = _write(tmp_path / "plain.txt", "first; with semicolon\n\nsecond\n  \nfifth\n")
    df = read_table(plain, DataConfig(), txt_labels=model_labels)
    assert list(df.columns) == ["text"] and df.index.name == "row"
    # Every line is a row, blank ones too (they get no prediction, marked skipped): output row k is line k.
    assert list(zip(df["text"], df.index)) == [
        ("first; with semicolon", 1),
        ("", 2),
        ("second", 3),
        ("  ", 4),
        ("fifth", 5),
    ]
    # The training format: the label goes to its own column and never into the text.
    labelled = _write(tmp_path / "labelled.txt", "i feel great;joy\n\nso low; today;sadness\n")
    df = read_table(labelled, DataConfig(), txt_labels=model_labels)
    assert list(zip(df["text"], df["label"].fillna("-"), df.index)) == [
        ("i feel great", "joy", 1),
        ("", "-", 2),
        ("so low; today", "sadness", 3),
    ]
    mixed = _write(tmp_path / "mixed.txt", "i feel great;joy\nno label here\n")
    with _err(
        "^"
        + re.escape(
            f"{mixed}: line 2: some lines end in ';<label>' (line 1) and some do not; a .txt "
            "file to predict is either 'text;label' on every line or one text per line: fix the "
            "file, or use a CSV with a text column"
        )
        + "$"
    ):
        read_table(mixed, DataConfig(), txt_labels=model_labels)


def test_read_table_keeps_every_column_in_order_even_one_named_row(tmp_path):
    path = _write(
        tmp_path / "d.jsonl",
        "".join(json.dumps({"id": i, "row": f"r{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)),
    )
    df = read_table(path, DataConfig())
    assert list(df.columns) == ["id", "row", "text"] and df["row"].tolist() == ["r0", "r1", "r2"]
    assert df.index.tolist() == [1, 2, 3]


def test_numbers_in_the_text_column_are_refused_naming_file_rows_and_column(tmp_path):
    ppath = tmp_path / "ints.parquet"
    pd.DataFrame({"text": [12345, 678], "label": ["joy", "anger"]}).to_parquet(ppath)
    with _err(
        "^"
        + re.escape(
            f"{ppath}: row(s) 1, 2, column 'text': expected text, found int 12345 (2 row(s)); "
            "fix the column, or point --text-column at the right one"
        )
        + "$"
    ):
        read_file(ppath, DataConfig())
    jpath = _write(tmp_path / "one.jsonl", '{"text": "fine", "label": "joy"}\n{"text": 12345, "label": "joy"}\n')
    with _err("^" + re.escape(f"{jpath}: row(s) 2, column 'text': expected text, found int 12345 (1 row(s))")):
        read_file(jpath, DataConfig())
    # The column's own name is the one quoted.
    custom = _write(tmp_path / "c.jsonl", '{"body": ["a", "list"], "emotion": "joy"}\n')
    with _err(re.escape("row(s) 1, column 'body': expected text, found list ['a', 'list']")):
        read_file(custom, DataConfig(text_column="body", label_column="emotion"))


@pytest.mark.parametrize("label", [True, 1.5, {"a": 1}])
def test_labels_must_be_class_names_or_integers(tmp_path, label):
    path = _write(
        tmp_path / "l.jsonl",
        json.dumps({"text": "ok", "label": "joy"}) + "\n" + json.dumps({"text": "fine", "label": label}) + "\n",
    )
    with _err(
        "^"
        + re.escape(
            f"{path}: row(s) 2, column 'label': expected a class name, an integer or a list of labels, found "
            f"{type(label).__name__} {label!r} (1 row(s)); fix the column, or point --label-column "
            "at the right one"
        )
        + "$"
    ):
        read_file(path, DataConfig())


# --- format detection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.csv", "csv"),
        ("a.TSV", "tsv"),
        ("a.jsonl", "jsonl"),
        ("a.json", "jsonl"),
        ("a.parquet", "parquet"),
        ("a.Txt", "txt"),
    ],
)
def test_detect_format(name, fmt):
    assert detect_format(Path(name)) == fmt


def test_detect_format_forced_overrides_extension():
    assert detect_format(Path("a.csv"), "TSV") == "tsv"
    assert detect_format(Path("a.data"), ".txt") == "txt"


def test_detect_format_unknown_forced():
    with _err("^" + re.escape("unknown format 'xml'; choose one of csv, jsonl, parquet, tsv, txt") + "$"):
        detect_format(Path("a.csv"), "xml")


def test_unknown_extension(tmp_path):
    path = _write(tmp_path / "data.dat", "text,label\na,b\n")
    with _err(
        "^"
        + re.escape(
            f"{path}: cannot tell the format from the extension '.dat'; "
            "use one of .csv, .json, .jsonl, .parquet, .tsv, .txt or pass --format"
        )
        + "$"
    ):
        read_file(path, DataConfig())


def test_forced_format_reads_unknown_extension(tmp_path):
    path = _write(tmp_path / "data.dat", "hello there;joy\n")
    assert _records(read_file(path, DataConfig(format="txt"))) == [("hello there", "joy", 1)]
    # Forcing wins over a misleading extension too: a ';' file named .csv.
    path = _write(tmp_path / "really_txt.csv", "a, b;joy\n")
    assert _records(read_file(path, DataConfig(format="txt"))) == [("a, b", "joy", 1)]


# --- file-level errors ----------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with _err("^" + re.escape(f"{path}: no such file") + "$"):
        read_file(path, DataConfig())


@pytest.mark.parametrize("name", ["e.csv", "e.tsv", "e.jsonl", "e.txt"])
@pytest.mark.parametrize("content", [b"", b"  \n\n \t\n"])
def test_empty_file(tmp_path, name, content):
    path = _write(tmp_path / name, content)
    with _err("^" + re.escape(f"{path}: the file is empty") + "$"):
        read_file(path, DataConfig())


@pytest.mark.parametrize(("name", "header"), [("h.csv", "text,label\n"), ("h.tsv", "text\tlabel\n")])
def test_header_only(tmp_path, name, header):
    path = _write(tmp_path / name, header)
    with _err("^" + re.escape(f"{path}: no data rows (header only)") + "$"):
        read_file(path, DataConfig())


def test_empty_parquet(tmp_path):
    path = tmp_path / "e.parquet"
    pd.DataFrame({"text": pd.Series([], dtype=str), "label": pd.Series([], dtype=str)}).to_parquet(path)
    with _err("^" + re.escape(f"{path}: no data rows") + "$"):
        read_file(path, DataConfig())


def test_corrupt_parquet(tmp_path):
    path = _write(tmp_path / "c.parquet", b"this is not parquet at all")
    with _err("^" + re.escape(f"{path}: cannot read as Parquet: ")):
        read_file(path, DataConfig())


def test_missing_columns_names_expected_and_found(tmp_path):
    path = _write(tmp_path / "m.csv", "sentence,emotion\nhi,joy\n")
    with _err(
        "^"
        + re.escape(
            f"{path}: missing column(s) 'text', 'label'; expected text column 'text' and label column 'label', "
            "found 'sentence', 'emotion'; use --text-column / --label-column"
        )
        + "$"
    ):
        read_file(path, DataConfig())


def test_misnamed_label_column(tmp_path):
    path = _write(tmp_path / "m.jsonl", json.dumps({"text": "hi", "emotion": "joy"}) + "\n")
    with _err(re.escape("missing column(s) 'label'") + ".*" + re.escape("found 'text', 'emotion'")):
        read_file(path, DataConfig())


def test_custom_column_names(tmp_path):
    path = _write(tmp_path / "m.csv", "id,sentence,emotion\n1,hi there,joy\n2,bye,sadness\n")
    df = read_file(path, DataConfig(text_column="sentence", label_column="emotion"))
    assert list(df.columns) == ["text", "label", "row"]
    assert _records(df) == [("hi there", "joy", 2), ("bye", "sadness", 3)]


def test_non_utf8_bytes(tmp_path):
    raw = "text,label\ncafé,joy\n".encode("latin-1")
    path = _write(tmp_path / "l.csv", raw)
    pos = raw.index(b"\xe9")
    with _err(
        "^"
        + re.escape(
            f"{path}: not valid utf-8 at byte {pos} (line 2): {raw[pos : pos + 4]!r}; "
            "pass --encoding with the file's encoding (for example --encoding latin-1)"
        )
        + "$"
    ):
        read_file(path, DataConfig())
    df = read_file(path, DataConfig(encoding="latin-1"))
    assert _records(df) == [("café", "joy", 2)]


def test_non_utf8_bytes_after_bom_reports_true_position(tmp_path):
    raw = b"\xef\xbb\xbftext,label\ncaf\xe9,joy\n"
    path = _write(tmp_path / "bl.csv", raw)
    pos = raw.index(b"\xe9")
    with _err(re.escape(f"not valid utf-8 at byte {pos} (line 2): {raw[pos : pos + 4]!r}")):
        read_file(path, DataConfig())


def test_unknown_encoding(tmp_path):
    path = _write(tmp_path / "u.csv", "text,label\na,b\n")
    with _err("^" + re.escape("unknown encoding 'klingon-8'") + "$"):
        read_file(path, DataConfig(encoding="klingon-8"))


@pytest.mark.parametrize("encoding", ["utf-8", "UTF8", "utf_8"])
def test_utf8_bom_is_read_cleanly(tmp_path, encoding):
    path = _write(tmp_path / "bom.csv", "\ufefftext,label\nhéllo,joy\n".encode("utf-8"))
    df = read_file(path, DataConfig(encoding=encoding))
    assert _records(df) == [("héllo", "joy", 2)]
    jpath = _write(tmp_path / "bom.jsonl", ("\ufeff" + json.dumps({"text": "a", "label": "b"}) + "\n").encode())
    assert _records(read_file(jpath, DataConfig(encoding=encoding))) == [("a", "b", 1)]
    tpath = _write(tmp_path / "bom.txt", "\ufeffi feel;joy\n".encode())
    assert _records(read_file(tpath, DataConfig(encoding=encoding))) == [("i feel", "joy", 1)]


def test_utf8_bom_first_column_name_is_text(tmp_path):
    # Without BOM handling the first column would be '\ufefftext' and 'text' would be "missing".
    path = _write(tmp_path / "bom.csv", "\ufefftext,label\nhi,joy\n".encode("utf-8"))
    assert read_file(path, DataConfig())["text"].tolist() == ["hi"]


def test_csv_quoted_separators_and_embedded_newlines(tmp_path):
    texts = ["a, b, and c", "line one\nline two", 'she said "hi", then left', "  padded  ", "NA", "null"]
    path = tmp_path / "q.csv"
    pd.DataFrame({"text": texts, "label": ["x"] * len(texts)}).to_csv(path, index=False)
    df = read_file(path, DataConfig())
    assert df["text"].tolist() == texts  # 'NA'/'null' stay strings, whitespace kept
    assert df["row"].tolist() == list(range(2, 2 + len(texts)))


def test_csv_empty_field_is_missing(tmp_path):
    path = _write(tmp_path / "e.csv", "text,label\n,joy\nok,\n")
    df = read_file(path, DataConfig())
    assert df["text"].isna().tolist() == [True, False]
    assert df["label"].isna().tolist() == [False, True]


def test_malformed_csv(tmp_path):
    path = _write(tmp_path / "bad.csv", "text,label\na,b\nc,d,e,f\n")
    with _err("^" + re.escape(f"{path}: malformed CSV: ")):
        read_file(path, DataConfig())


def test_jsonl_malformed_line_named(tmp_path):
    path = _write(tmp_path / "bad.jsonl", '{"text": "a", "label": "b"}\n\n{"text": "c", "label": }\n')
    with _err("^" + re.escape(f"{path}: line 3: not valid JSON (Expecting value at column 24)") + "$"):
        read_file(path, DataConfig())


def test_jsonl_non_object_line_named(tmp_path):
    path = _write(tmp_path / "arr.jsonl", '{"text": "a", "label": "b"}\n["c", "d"]\n')
    with _err("^" + re.escape(f"{path}: line 2: expected a JSON object, got list") + "$"):
        read_file(path, DataConfig())


def test_integer_labels(tmp_path):
    csv_path = _write(tmp_path / "i.csv", "text,label\na,0\nb,1\nc,10\n")
    assert read_file(csv_path, DataConfig())["label"].tolist() == ["0", "1", "10"]  # CSV reads strings
    jpath = _write(
        tmp_path / "i.jsonl", "".join(json.dumps({"text": t, "label": i}) + "\n" for t, i in [("a", 0), ("b", 2)])
    )
    assert read_file(jpath, DataConfig())["label"].tolist() == [0, 2]
    ppath = tmp_path / "i.parquet"
    pd.DataFrame({"text": ["a", "b"], "label": [3, 1]}).to_parquet(ppath)
    assert read_file(ppath, DataConfig())["label"].tolist() == [3, 1]
    tpath = _write(tmp_path / "i.txt", "a;0\nb; 5\n")
    assert read_file(tpath, DataConfig())["label"].tolist() == ["0", "5"]


def test_label_names_name_integer_labels_in_every_format(tmp_path):
    names_file = _write(tmp_path / "labels.txt", "admiration\namusement\nanger\n\n")  # a trailing blank line
    csv_path = _write(tmp_path / "i.csv", "text,label\na,0\nb,2\nc,1\n")
    splits, names = read_source(DataConfig(data=str(csv_path), label_names=str(names_file)))
    assert names == ["admiration", "amusement", "anger"]
    assert splits["train"]["label"].tolist() == ["admiration", "anger", "amusement"]
    jpath = _write(tmp_path / "i.jsonl", "".join(json.dumps({"text": t, "label": i}) + "\n" for t, i in [("a", 2)]))
    ppath = tmp_path / "i.parquet"
    pd.DataFrame({"text": ["a", "b"], "label": [1, 0]}).to_parquet(ppath)
    assert read_source(DataConfig(data=str(jpath), label_names="x, y ,z"))[0]["train"]["label"].tolist() == ["z"]
    assert read_source(DataConfig(data=str(ppath), label_names="x,y,z"))[0]["train"]["label"].tolist() == ["y", "x"]


def test_a_label_id_without_a_name_is_refused_naming_file_row_column_and_range(tmp_path):
    path = _write(tmp_path / "i.csv", "text,emotion\na,0\nb,3\nc,1\nd,joy\n")
    cfg = DataConfig(data=str(path), label_column="emotion", label_names="x,y,z")
    with _err(
        "^"
        + re.escape(
            f"{path}: row(s) 3, 5, column 'emotion': label '3' is not a label id of --label-names x,y,z (3 names: "
            "ids 0..2; 2 row(s)); fix the labels, or give the names of every id"
        )
        + "$"
    ):
        read_source(cfg)


@pytest.mark.parametrize(
    "content,message",
    [
        ("a\n\nb\n", "line 2 is empty; every id from 0 on needs a name"),
        ("a\nb\na\n", "'a' named twice; each id needs its own name"),
    ],
)
def test_label_names_files_that_cannot_name_every_id_are_refused(tmp_path, content, message):
    path = _write(tmp_path / "labels.txt", content)
    with _err(re.escape(message) + "$"):
        read_source(DataConfig(data=str(demo_path()), label_names=str(path)))
    with _err(r"^--label-names nowhere\.txt: no such file; give a file with one name per line, or the names "):
        read_source(DataConfig(data=str(demo_path()), label_names="nowhere.txt"))


# --- read_source ----------------------------------------------------------------------------------


def test_read_source_demo():
    splits, names = read_source(DataConfig())
    assert names is None and list(splits) == ["train"]
    assert splits["train"].attrs["source"] == "the embedded demo set"  # how errors and reports name it
    assert len(splits["train"]) == 460
    assert sorted(splits["train"]["label"].unique()) == ["anger", "fear", "joy", "love", "sadness", "surprise"]
    same, _ = read_source(DataConfig(data="demo"))
    assert same["train"].equals(splits["train"])


def test_read_source_single_file(tmp_path):
    path = _write(tmp_path / "one.csv", "text,label\na,x\n")
    splits, names = read_source(DataConfig(data=str(path)))
    assert names is None and list(splits) == ["train"] and _records(splits["train"]) == [("a", "x", 2)]


def test_read_source_missing_path(tmp_path):
    path = tmp_path / "missing"
    with _err("^" + re.escape(f"{path}: no such file or folder") + "$"):
        read_source(DataConfig(data=str(path)))


def test_read_source_folder_with_splits(tmp_path):
    _write(tmp_path / "train.txt", "a;joy\nb;anger\n")
    _write(tmp_path / "val.txt", "\nc;joy\n")
    _write(tmp_path / "test.txt", "d;anger\n")
    _write(tmp_path / "notes.md", "ignored\n")
    splits, names = read_source(DataConfig(data=str(tmp_path)))
    assert names is None
    assert set(splits) == {"train", "validation", "test"}
    assert _records(splits["train"]) == [("a", "joy", 1), ("b", "anger", 2)]
    assert _records(splits["validation"]) == [("c", "joy", 2)]
    assert _records(splits["test"]) == [("d", "anger", 1)]
    assert splits["validation"].attrs["source"] == str(tmp_path / "val.txt")


def test_read_source_folder_mixed_formats_and_names(tmp_path):
    pd.DataFrame({"text": ["a"], "label": ["x"]}).to_parquet(tmp_path / "Train.parquet")
    _write(tmp_path / "dev.jsonl", json.dumps({"text": "b", "label": "x"}) + "\n")
    splits, _ = read_source(DataConfig(data=str(tmp_path)))
    assert set(splits) == {"train", "validation"}
    assert _records(splits["validation"]) == [("b", "x", 1)]


def test_read_source_folder_without_train(tmp_path):
    _write(tmp_path / "test.csv", "text,label\na,b\n")
    with _err("^" + re.escape(f"{tmp_path}: no training file found; expected train.<csv|tsv|jsonl|json|parquet|txt>")):
        read_source(DataConfig(data=str(tmp_path)))


# --- Hugging Face datasets -------------------------------------------------------------------------


def test_hf_saved_to_disk_uses_class_label_names(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["sadness", "joy", "anger"])}
    )
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, 2]}, features=features),
            "validation": datasets.Dataset.from_dict({"text": ["d"], "label": [1]}, features=features),
            "test": datasets.Dataset.from_dict({"text": ["e", "f"], "label": [2, 0]}, features=features),
            "unsupervised": datasets.Dataset.from_dict({"text": ["g"], "label": [0]}, features=features),
        }
    )
    folder = tmp_path / "hfds"
    dd.save_to_disk(str(folder))
    splits, names = read_source(DataConfig(data=f"hf:{folder}"))
    assert names == ["sadness", "joy", "anger"]  # ClassLabel order, not alphabetical
    assert set(splits) == {"train", "validation", "test"}  # 'unsupervised' ignored
    assert _records(splits["train"]) == [("a", "sadness", 1), ("b", "joy", 2), ("c", "anger", 3)]
    assert _records(splits["validation"]) == [("d", "joy", 1)]
    assert _records(splits["test"]) == [("e", "anger", 1), ("f", "sadness", 2)]
    assert splits["test"].attrs["source"] == f"hf:{folder} [test]"


def test_hf_saved_single_dataset_with_custom_columns(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"sentence": ["x", "y"], "emotion": ["joy", "fear"]})
    folder = tmp_path / "single"
    ds.save_to_disk(str(folder))
    splits, names = read_hf(f"hf:{folder}", DataConfig(text_column="sentence", label_column="emotion"))
    assert names is None and list(splits) == ["train"]
    assert _records(splits["train"]) == [("x", "joy", 1), ("y", "fear", 2)]
    with _err("^" + re.escape(f"hf:{folder} [train]: missing column(s) 'text', 'label'; found 'sentence', 'emotion'")):
        read_hf(f"hf:{folder}", DataConfig())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_hf_unreachable_hub_fails_fast_with_clear_message(monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    start = time.monotonic()
    with _err(
        "^"
        + re.escape(f"cannot reach the Hugging Face hub at {endpoint} (")
        + ".*"
        + re.escape(
            ") to load 'nobody/nothing-here-xyz'; connect to the internet, or save the dataset "
            "locally (datasets' save_to_disk) and pass hf:<folder>"
        )
        + "$"
    ):
        read_source(DataConfig(data="hf:nobody/nothing-here-xyz"))
    assert time.monotonic() - start < 10


def test_hf_unknown_id_fails_within_10_seconds():
    """Whatever the network (none, offline mode, or the real hub), the error mentions the hub and is quick."""
    pytest.importorskip("datasets")
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        read_source(DataConfig(data="hf:nobody/nothing-here-xyz"))
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "hub" in message.lower() and "nobody/nothing-here-xyz" in message


# --- writing predictions ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["out.csv", "out.jsonl", "out.parquet"])
def test_a_write_the_kernel_refuses_leaves_the_previous_file_or_none(tmp_path, name):
    """A full disk, for real: the writing process may not grow a file past 64 KiB (EFBIG)."""
    from emoclf.data.io import write_table

    target = tmp_path / name
    small = pd.DataFrame({"text": ["a", "b"], "predicted_label": ["joy", "fear"]})
    write_table(small, str(target))
    before = target.read_bytes()
    script = (
        "import resource, signal, sys\nimport pandas as pd\nfrom emoclf.data.io import write_table\n"
        "big = pd.DataFrame({'text': [f'text number {i} ' * 20 for i in range(5000)], 'predicted_label': 'joy'})\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"
        "from emoclf.errors import DataError\n"
        "try:\n    write_table(big, sys.argv[1])\nexcept DataError as e:\n    print(e)\n    sys.exit(2)\n"
    )
    for existing in (True, False):
        proc = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        what = "the previous file is unchanged" if existing else "nothing was written"
        assert re.fullmatch(rf"--output {re.escape(str(target))}: cannot write it \(.+\); {what}\n", proc.stdout)
        if existing:
            assert target.read_bytes() == before
            target.unlink()
        else:
            assert not target.exists()
        assert list(tmp_path.iterdir()) == ([target] if target.exists() else [])  # no temporary file left


def test_a_data_sets_short_name_is_the_data_sets_not_its_files():
    from emoclf.data.io import data_name

    sources = ("../emotion/train.txt", "reviews.csv", "hf:dair-ai/emotion", "data/go emotions")
    assert [data_name(s) for s in sources] == ["emotion", "reviews", "emotion", "go-emotions"]
    assert data_name("the embedded demo set") == data_name("demo") == "emoclf-demo"
