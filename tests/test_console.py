"""What the terminal shows at each verbosity, and what the run's log file keeps."""

from __future__ import annotations

import logging
import warnings

import pytest

from emoclf import console


def emit_everything() -> None:
    logging.getLogger("emoclf.training").info("training minilm")
    logging.getLogger("emoclf.trainer").info("epoch 1.00: validation macro-F1 0.5", extra=console.FILE_ONLY)
    logging.getLogger("emoclf.calibration").warning("temperature not applied")
    logging.getLogger("transformers.modeling_utils").warning("LOAD REPORT")
    logging.getLogger("mlflow.store").info("Creating initial MLflow database tables")
    logging.getLogger("mlflow.store").error("the store is gone")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("Add type hints to the `predict` method", UserWarning, stacklevel=1)


@pytest.mark.parametrize(
    "verbosity,shown",
    [
        (console.QUIET, ["error: the store is gone"]),
        (console.NORMAL, ["training minilm", "warning: temperature not applied", "error: the store is gone"]),
        (
            console.VERBOSE,
            [
                "training minilm",
                "epoch 1.00: validation macro-F1 0.5",
                "warning: temperature not applied",
                "warning: LOAD REPORT",
                "error: the store is gone",
                "warning: ",
            ],
        ),
    ],
)
def test_each_verbosity_shows_what_it_promises(verbosity, shown, capsys):
    console.configure(verbosity)
    emit_everything()
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == ""
    assert [line for line in lines if line.strip() and not line.startswith(("warning: ", "  "))] == [
        s for s in shown if not s.startswith("warning: ")
    ]
    for expected in shown:
        assert any(line.startswith(expected) for line in lines), expected
    if verbosity < console.VERBOSE:
        assert "LOAD REPORT" not in err and "type hints" not in err and "MLflow database" not in err
        assert "epoch 1.00" not in err  # the training bar shows it; the log file keeps it


def test_configure_quiets_the_libraries_before_they_are_imported(monkeypatch):
    for name in console.QUIET_LIBRARIES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")  # a user's own setting wins
    console.configure(console.NORMAL)
    import os

    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" and os.environ["TRANSFORMERS_VERBOSITY"] == "info"
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"


def test_configure_twice_keeps_one_handler(capsys):
    console.configure(console.NORMAL)
    console.configure(console.NORMAL)
    logging.getLogger("emoclf.x").info("once")
    assert capsys.readouterr().err == "once\n"


def test_bars_are_off_when_quiet_or_not_on_a_terminal(capsys):
    console.configure(console.NORMAL)  # pytest's stderr is not a terminal
    assert not console.bars_enabled()
    with console.status("loading"):
        bar = console.progress(range(3), desc="predict")
        assert bar.disable and list(bar) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_the_log_file_keeps_emoclf_info_and_library_warnings(tmp_path, capsys):
    console.configure(console.QUIET)
    with console.log_file(tmp_path / "train.log") as path:
        emit_everything()
    text = path.read_text()
    for expected in (
        "INFO emoclf.training: training minilm",
        "INFO emoclf.trainer: epoch 1.00: validation",
        "WARNING emoclf.calibration: temperature not applied",
        "WARNING transformers.modeling_utils: LOAD REPORT",
        "ERROR mlflow.store: the store is gone",
        "WARNING py.warnings:",
        "Add type hints",
    ):
        assert expected in text, expected
    assert capsys.readouterr().err == "error: the store is gone\n"
    logging.getLogger("emoclf.training").info("after the block")
    assert "after the block" not in path.read_text()
