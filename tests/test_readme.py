"""The README is the front door: short, rendered as written, its Python example runs and its commands exist."""

from __future__ import annotations

import re
import shlex

import pytest
from conftest import REPO

from emoclf.cli import COMMANDS, build_parser

README = (REPO / "README.md").read_text(encoding="utf-8")
LABELS = {"anger", "fear", "joy", "love", "sadness", "surprise"}


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", README, re.S | re.M)


def commands(program: str) -> list[list[str]]:
    """The lines of the README's shell blocks that run ``program``, split as a shell would, comments dropped."""
    lines = (shlex.split(line, comments=True) for block in blocks("bash") for line in block.splitlines())
    return [words for words in lines if words and words[0] == program]


def test_the_readme_is_short_and_every_fence_is_closed():
    assert len(README.split()) <= 1500
    fences = [line for line in README.splitlines() if line.startswith("```")]
    # A fence with text after it (the old "``` The `cpu` extra ...") opened a block that swallowed the headings.
    assert len(fences) % 2 == 0 and all(line == "```" for line in fences[1::2]), fences
    outside = re.sub(r"^```.*?^```$", "", README, flags=re.S | re.M)
    headings = re.findall(r"^## (.+)$", outside, re.M)
    assert headings == ["Why emoclf", "Set up", "A short tour", "Results", "Documentation"]


def test_the_tour_shows_every_command_and_each_line_parses():
    tour = commands("emoclf")
    assert {words[1] for words in tour} == set(COMMANDS)
    parser = build_parser()
    for words in tour:
        args = parser.parse_args(words[1:])  # a wrong flag or a missing argument exits with status 2
        assert args.command == words[1]
        for path in (w for w in words if w.startswith(("src/", "configs/"))):
            assert (REPO / path).exists(), path
    # The tour's model is the one `make demo` trains.
    assert any("runs/demo/model" in words for words in tour)
    assert "--output-dir runs/demo " in (REPO / "Makefile").read_text()


def test_every_make_target_the_readme_shows_exists():
    makefile = (REPO / "Makefile").read_text()
    targets = {words[1] for words in commands("make")} | set(re.findall(r"`make ([\w-]+)`", README))
    assert targets >= {"demo", "test", "docs"}
    for target in targets:
        assert re.search(rf"^{target}:", makefile, re.M), target


def python_example() -> str:
    (code,) = blocks("python")
    return code


def test_the_python_example_runs_with_the_tiny_model(tiny_model, tmp_path, monkeypatch, capsys):
    """As written, but with the tests' tiny model in place of MiniLM and no tracking, so it takes seconds."""
    monkeypatch.chdir(tmp_path)
    code = python_example().replace(
        "Config()", f"Config().replace(model={str(tiny_model)!r}, tracking=False, learning_rate=3e-3, batch_size=16)"
    )
    exec(compile(code, "README.md", "exec"), {})
    label, accuracy = capsys.readouterr().out.split()
    assert label in LABELS
    assert float(accuracy) in (0.0, 0.5, 1.0)  # two texts
    assert (tmp_path / "runs" / "api" / "model" / "README.md").is_file()
    assert (tmp_path / "mine.csv").read_text().startswith("text,label\n")


@pytest.mark.slow
def test_the_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    """The README's example itself: the default MiniLM on the embedded demo set, tracked in ./mlflow.db."""
    monkeypatch.chdir(tmp_path)
    # As in a fresh shell: mlflow.set_tracking_uri (earlier tests' trainings) exports the URI into the environment.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    exec(compile(python_example(), "README.md", "exec"), {})
    assert capsys.readouterr().out.split() == ["joy", "1.0"]  # what the README says it prints
    assert (tmp_path / "runs" / "api" / "model" / "model.safetensors").is_file()
    assert (tmp_path / "mlflow.db").is_file()
