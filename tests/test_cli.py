"""The CLI wires the library: every subcommand listed, every config field a flag, one-line errors."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pandas as pd
import pytest

from emoclf.cli import build_parser, main
from emoclf.config import SECTIONS
from emoclf.inference import Predictor
from emoclf.predictions import prediction_columns

LABELS = ["anger", "fear", "joy", "love", "sadness", "surprise"]


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("train", "inspect", "evaluate", "predict", "compare", "tune", "audit", "export", "serve"):
        assert command in out


def test_tune_has_its_options_and_every_config_flag(capsys):
    from emoclf.config import TuneOptions

    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    out = capsys.readouterr().out
    names = [f.name for f in fields(TuneOptions)] + [f.name for cls in SECTIONS.values() for f in fields(cls)]
    for name in names:
        if name != "data":
            assert "--" + name.replace("_", "-") in out, name
    assert "--pruner {median,none}" in out


def test_every_config_field_is_a_train_flag(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for cls in SECTIONS.values():
        for f in fields(cls):
            if f.name != "data":
                assert "--" + f.name.replace("_", "-") in out, f.name


def test_flags_override_yaml(tmp_path):
    from emoclf.cli import config_from_args

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("train:\n  epochs: 5\n  batch_size: 8\n")
    args = build_parser().parse_args(["train", "data.csv", "--config", str(cfg_file), "--epochs", "2", "--no-tracking"])
    cfg = config_from_args(args, args.sections)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.tracking.tracking, cfg.data.data) == (2.0, 8, False, "data.csv")


def test_data_error_is_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence,emotion\nhello,joy\n")
    proc = subprocess.run([sys.executable, "-m", "emoclf.cli", "inspect", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"emoclf: error: {bad}: missing column(s) 'text', 'label'")


def test_debug_shows_traceback(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "emoclf.cli", "--debug", "inspect", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "the file is empty" in proc.stderr


def test_inspect_emotion_data(tmp_path, capsys, emotion_dir):
    assert main(["inspect", str(emotion_dir), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "imbalance ratio" in out and "suggested max_length: 64" in out
    prof = json.loads((tmp_path / "data_profile.json").read_text())
    assert prof["suggested_max_length"] == 64
    assert prof["token_length"]["p99"] < 64
    assert prof["rows"]["validation"] == 2000
    assert (tmp_path / "class_distribution.png").read_bytes()[:4] == b"\x89PNG"


def test_inspect_refuses_label_variants_and_names_integer_labels(tmp_path, capsys):
    rows = [f"text number {i},{lab}" for i, lab in enumerate(["joy", "Joy", "JOY", "fear"] * 10)]
    variants = tmp_path / "variants.csv"
    variants.write_text("text,label\n" + "\n".join(rows) + "\n")
    assert main(["inspect", str(variants), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"emoclf: error: labels 'joy' ({variants} row 2), 'Joy' ({variants} row 3), 'JOY' ({variants} row 4) differ "
        "only in case or spacing: they would train as 3 separate classes; spell each class one way in every file"
    ]
    ids = tmp_path / "ids.csv"
    ids.write_text("text,label\n" + "\n".join(f"text number {i},{i % 3}" for i in range(60)) + "\n")
    (tmp_path / "labels.txt").write_text("joy\nfear\nanger\n")
    assert (
        main(["--quiet", "inspect", str(ids), "--label-names", str(tmp_path / "labels.txt"), "--out", str(tmp_path)])
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[1:4]] == ["joy", "fear", "anger"]


def test_predict_texts_and_files(trained, tmp_path, capsys):
    assert main(["predict", "--model", str(trained.model_dir), "i am so happy", "i am scared"]) == 0
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert len(lines) == 2 and lines[0].endswith("\ti am so happy") and "longer than" not in out.err
    assert main(["predict", "--model", str(trained.model_dir), "i am so happy", "i am " * 60]) == 0
    limit = json.loads((trained.model_dir / "emoclf.json").read_text())["max_length"]
    said = f"emoclf: 1 text(s) longer than the model reads ({limit} tokens): only their start was classified"
    assert capsys.readouterr().err.strip().endswith(said)
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "what a lovely day"}\n{"text": "I HATE this"}\n{"text": "oh wow"}\n')
    for ext in ("csv", "parquet", "jsonl"):
        dst = tmp_path / f"out.{ext}"
        assert main(["predict", "--model", str(trained.model_dir), "--input", str(src), "--output", str(dst)]) == 0
        df = {"csv": pd.read_csv, "parquet": pd.read_parquet, "jsonl": lambda p: pd.read_json(p, lines=True)}[ext](dst)
        assert list(df.columns) == ["text", *prediction_columns(LABELS)]
        assert df["text"].tolist() == ["what a lovely day", "I HATE this", "oh wow"]
        assert df.filter(like="prob_").sum(axis=1).round(4).eq(1).all()


def test_predict_keeps_every_input_column_and_row_and_never_overwrites_labels(trained, tmp_path):
    src = tmp_path / "in.csv"
    rows = pd.DataFrame(
        {
            "id": [7, 3, 9, 1],
            "text": ["i am so happy", "😡😡😡", "i am scared", "what a surprise"],
            "label": ["joy", "anger", "fear", "surprise"],
            "note": ["a", "b", "c", "d"],
        }
    )
    rows.to_csv(src, index=False)
    dst = tmp_path / "out.csv"
    assert main(["predict", "--model", str(trained.model_dir), "--input", str(src), "--output", str(dst)]) == 0
    out = pd.read_csv(dst, keep_default_na=False)
    assert list(out.columns) == ["id", "text", "label", "note", *prediction_columns(LABELS)]
    assert out[["id", "text", "label", "note"]].astype(str).values.tolist() == rows.astype(str).values.tolist()
    assert out["skipped"].tolist() == ["", "empty after preprocessing", "", ""]
    assert out.loc[1, "predicted_label"] == "" and out.loc[0, "predicted_label"] in LABELS
    # The training format: a .txt of text;label lines is read as such, so the label never leaks into the text.
    txt = tmp_path / "in.txt"
    txt.write_text("i am so happy;joy\ni am scared;fear\n")
    assert main(["predict", "--model", str(trained.model_dir), "--input", str(txt), "--output", str(dst)]) == 0
    out = pd.read_csv(dst, keep_default_na=False)
    assert out[["text", "label"]].values.tolist() == [["i am so happy", "joy"], ["i am scared", "fear"]]
    expected = Predictor.load(trained.model_dir).predict(["i am so happy", "i am scared"])
    assert out["predicted_label"].tolist() == [p.label for p in expected]
    # One text per line: a blank line is a row too, marked skipped as a CSV's empty text is (5 lines, 5 rows).
    txt.write_text("i am so happy\ni am scared\n\nwhat a surprise\nso sad\n")
    assert main(["predict", "--model", str(trained.model_dir), "--input", str(txt), "--output", str(dst)]) == 0
    out = pd.read_csv(dst, keep_default_na=False)
    assert out["text"].tolist() == ["i am so happy", "i am scared", "", "what a surprise", "so sad"]
    assert out["skipped"].tolist() == ["", "", "empty after preprocessing", "", ""]


def test_predict_into_a_pipe_or_a_file_writes_no_bars_and_ends_quietly_when_the_reader_leaves(trained, tmp_path):
    src = tmp_path / "many.csv"
    pd.DataFrame({"text": [f"i am so happy today number {i}" for i in range(3000)]}).to_csv(src, index=False)
    predict = [sys.executable, "-m", "emoclf.cli", "predict", "--model", str(trained.model_dir), "--input", str(src)]
    # stderr is a file, not a terminal: no progress bar (carriage returns) in it, only the result line.
    with (tmp_path / "err.txt").open("w") as err:
        subprocess.run([*predict, "--batch-size", "8", "--output", str(tmp_path / "out.csv")], stderr=err, check=True)
    assert (tmp_path / "err.txt").read_text() == f"3000 predictions written to {tmp_path / 'out.csv'}\n"
    # `emoclf predict ... | head -1`: the reader leaves after one line.
    proc = subprocess.Popen(predict, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b"text,predicted_label,")
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141  # 128 + SIGPIPE, as `yes | head -1` ends
    assert stderr == "", stderr


def test_predict_refuses_what_it_cannot_do_before_predicting(trained, tmp_path, capsys):
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": ["hi"], "predicted_label": ["mine"]}).to_csv(src, index=False)
    model = ["predict", "--model", str(trained.model_dir)]
    assert main([*model, "--input", str(src), "--output", str(tmp_path / "out.xlsx")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"emoclf: error: --output {tmp_path / 'out.xlsx'}: cannot write "
        "'.xlsx'; use one of .csv, .tsv, .jsonl, .json, .parquet"
    )
    assert not (tmp_path / "out.xlsx").exists()
    assert main([*model, "--input", str(src)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"emoclf: error: {src}: has column(s) 'predicted_label', which the predictions would overwrite; rename them"
    )
    assert main([*model, "--input", str(src), "--text-column", "body"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"emoclf: error: {src}: missing column(s) 'body'; expected text "
        "column 'body', found 'text', 'predicted_label'; use --text-column"
    )
    assert main([*model, "i am happy", "😡😡😡"]) == 2
    assert "1 text(s) are empty after preprocessing (texts[1] '😡😡😡')" in capsys.readouterr().err


def test_predict_needs_texts_or_input(trained, capsys):
    assert main(["predict", "--model", str(trained.model_dir)]) == 2
    assert "give either texts as arguments or --input FILE" in capsys.readouterr().err


def test_evaluate_reproduces_training_report(trained, tmp_path, capsys):
    from emoclf.data.io import demo_path

    assert main(["evaluate", "--model", str(trained.model_dir), str(demo_path()), "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n"] == 460
    for name in ("report.md", "confusion_matrix.png", "per_class_f1.png", "misclassified.csv"):
        assert (tmp_path / name).is_file()
    # A single file is scored as a whole, and said to be.
    assert capsys.readouterr().out.startswith(f"{demo_path()} [all rows]: accuracy ")


def test_missing_model_folder_is_clear(tmp_path, capsys):
    assert main(["predict", "--model", str(tmp_path / "nope"), "hi"]) == 2
    assert "no such model folder" in capsys.readouterr().err


def test_a_wrong_flag_gets_the_subcommands_usage_and_a_guess(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--lr", "0.1"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "usage: emoclf train [DATA] [options]",
        "emoclf train: error: unrecognized argument --lr; did you mean --learning-rate?",
        "Run 'emoclf train --help' for every option.",
    ]
    with pytest.raises(SystemExit):
        main(["predict", "--modle", "x", "hi"])
    err = capsys.readouterr().err
    assert err.startswith("usage: emoclf predict --model MODEL") and "did you mean --model?" in err


@pytest.mark.parametrize(
    "command", ["train", "compare", "audit", "inspect", "evaluate", "report", "predict", "export", "serve"]
)
def test_every_flag_says_its_default(command, capsys):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    for action in sub._actions:
        if (
            action.option_strings
            and not action.required
            and action.help != argparse.SUPPRESS
            and action.dest not in ("help", "config")
        ):
            assert "default" in action.help.lower(), (command, action.dest)


def test_commands_offer_only_the_settings_they_read(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    out = capsys.readouterr().out
    assert "--text-column" in out and "--strict" in out
    for train_only in (
        "--epochs",
        "--val-size",
        "--test-size",
        "--split-seed",
        "--max-samples",
        "--drop-leakage",
        "--val-data",
        "--imbalance",
    ):
        assert train_only not in out, train_only
    with pytest.raises(SystemExit):
        main(["inspect", "--help"])
    out = capsys.readouterr().out
    assert "--val-size" in out and "--lowercase" in out and "--model" in out and "--max-length" not in out


def test_help_and_argument_errors_come_before_heavy_imports(tmp_path):
    missing = str(tmp_path / "missing")
    code = (
        "import sys\nfrom emoclf.cli import main\n"
        f"for argv in (['train', '--help'], ['train', '--lr', '1'], ['predict', '--model', {missing!r}, 'hi'],\n"
        f"             ['evaluate', {missing!r}, '--model', {missing!r}], ['train', {missing!r}],\n"
        "             ['predict', '--model', '.']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "print(sorted({'torch', 'transformers', 'mlflow', 'pandas', 'sklearn'} & set(sys.modules)), file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stderr.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "argv,said",
    [
        (["--help"], "usage: emoclf [-h]"),
        (["predict", "--model", "{tmp}/model", "hello"], "emoclf: error: --model {tmp}/model: no such model folder"),
        (
            ["evaluate", "{tmp}/val.txt", "--model", "{tmp}"],
            "emoclf: error: DATA {tmp}/val.txt: no such file or folder",
        ),
        (["train", "--config", "{tmp}/run.yaml"], "emoclf: error: config file not found: {tmp}/run.yaml"),
    ],
)
def test_help_and_path_errors_answer_at_once(argv, said, tmp_path):
    """Seconds go to torch and transformers only when a model is needed: help and a mistyped path are answered
    in well under a second on an idle machine (2 s here: the machine may be shared)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "emoclf.cli", *(a.format(tmp=tmp_path) for a in argv)], capture_output=True, text=True
    )
    took = time.perf_counter() - started
    assert said.format(tmp=tmp_path) in proc.stdout + proc.stderr
    assert took < 2.0, f"{argv[0]} took {took:.1f} s"


def test_inspect_prints_tables(capsys, tmp_path):
    assert main(["--quiet", "inspect", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["class", "train", "validation", "test"]
    assert out[1].split() == ["anger", "60", "8", "8"] and out[7].split() == ["all", "368", "46", "46"]
    assert "{" not in "\n".join(out)  # no Python reprs
    assert any(line.split()[:2] == ["exact", "duplicates"] for line in out)


@pytest.mark.slow
def test_terminal_output_of_a_tiny_training_and_of_predict(tiny_model, tmp_path):
    """What a person sees: a tiny training prints at most 12 lines, predicting 4 texts prints 4 lines, and
    library noise (load reports, MLflow and CloudPickle warnings, weight-loading bars) is not among them."""
    import emoclf

    cli = [sys.executable, "-m", "emoclf.cli"]
    # The emoclf under test, also where PYTHONPATH is relative (it runs in tmp_path).
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(emoclf.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    train = subprocess.run(
        [
            *cli,
            "train",
            "--model",
            str(tiny_model),
            "--epochs",
            "1",
            "--max-samples",
            "120",
            "--output-dir",
            str(tmp_path / "run"),
            "--tracking-uri",
            f"sqlite:///{tmp_path}/m.db",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert train.returncode == 0, train.stderr
    lines = (train.stdout + train.stderr).splitlines()
    assert len(lines) <= 12, lines
    for noise in ("LOAD REPORT", "UserWarning", "CloudPickle", "Loading weights", "Writing model shards", "\x1b["):
        assert noise not in train.stdout + train.stderr, noise
    assert train.stdout.splitlines()[0].startswith("test accuracy ")
    texts = ["i am so happy today", "why would you do that to me", "i feel scared", "wow"]
    predict = subprocess.run(
        [*cli, "predict", "--model", str(tmp_path / "run" / "model"), *texts],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert predict.returncode == 0 and predict.stderr == ""
    assert [line.split("\t")[2] for line in predict.stdout.splitlines()] == texts
    # predict ends its process without Python's teardown: what it wrote is complete all the same.
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "in.csv", index=False)
    to_file = [*cli, "predict", "--model", str(tmp_path / "run" / "model"), "--input", "in.csv", "--output"]
    assert subprocess.run([*to_file, "out.parquet"], capture_output=True, cwd=tmp_path, env=env).returncode == 0
    assert pd.read_parquet(tmp_path / "out.parquet")["text"].tolist() == texts
    log = (tmp_path / "run" / "train.log").read_text()  # the whole story is in the run's log file
    # 120 rows are 4 steps an epoch: the --min-steps floor makes it 120 steps, evaluated once (1 epoch asked for).
    assert "INFO emoclf.trainer: epoch 30.00: train loss" in log and "INFO emoclf.tracking: MLflow: run " in log
    assert "too few to learn from: training 120 steps, the --min-steps floor" in log


def test_serve_batching_flags_reach_the_command_after_threads_are_told_to_sleep(monkeypatch, tiny_model):
    from emoclf import cli
    from emoclf.config import ServeOptions

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    seen = []

    def fake_serve(args):  # what cmd_serve would hand to serving.serve, and the environment torch would load in
        seen.append((cli.options(args, ServeOptions), os.environ.get("OMP_WAIT_POLICY")))
        return 0

    monkeypatch.setattr(cli, "cmd_serve", fake_serve)
    assert main(["serve", "--model", str(tiny_model), "--batching", "--max-wait-ms", "5", "--workers", "3"]) == 0
    assert main(["serve", "--model", str(tiny_model)]) == 0
    (on, policy), (default, _) = seen
    assert (on.batching, on.max_wait_ms, on.workers, policy) == (True, 5.0, 3, "PASSIVE")
    assert (default.batching, default.max_wait_ms, default.workers, default.threads) == (False, 2.0, None, None)
