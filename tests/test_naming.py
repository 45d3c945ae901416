"""Files, folders and data sets named for people: relatively or symbolically, never by a local absolute path."""

from __future__ import annotations

from emoclf.naming import source_name


def test_sources_are_named_relatively_or_symbolically(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert source_name(tmp_path / "runs" / "x" / "model") == "runs/x/model"  # below here: relative
    assert source_name("/elsewhere/emotion/train.txt") == "emotion/train.txt"  # elsewhere: the last two parts
    assert source_name("../data/emotion/val.txt") == "emotion/val.txt"
    assert source_name("data/train.csv") == "data/train.csv"  # relative already: as given
    assert source_name("runs:/abc/model") == "runs:/abc/model"
    assert source_name("hf:dair-ai/emotion [test]") == "hf:dair-ai/emotion [test]"
    assert source_name("hf:/elsewhere/saved/emotion") == "hf:saved/emotion"
    assert source_name("the embedded demo set") == "the embedded demo set"
