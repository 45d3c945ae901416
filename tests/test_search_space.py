"""The search space: the default one, the YAML format, and the exact message for each mistake."""

from __future__ import annotations

import optuna
import pytest

from emoclf.config import Config
from emoclf.errors import ConfigError
from emoclf.search_space import default_space_path, load_space, space_dict
from emoclf.task import MULTI, task_for

MULTI_TASK = task_for(MULTI)


def write(tmp_path, text: str):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_the_default_space_covers_what_fine_tuning_needs():
    space = space_dict(load_space(None, Config()))
    assert list(space) == [
        "learning_rate",
        "epochs",
        "batch_size",
        "warmup_ratio",
        "weight_decay",
        "imbalance",
        "focal_gamma",
        "label_smoothing",
    ]
    assert space["learning_rate"] == {"type": "float", "low": 1e-5, "high": 3e-4, "log": True}
    assert space["imbalance"]["choices"] == ["none", "class-weight", "oversample", "undersample", "focal"]
    assert space["focal_gamma"]["when"] == {"imbalance": ["focal"]}


def test_focal_gamma_is_drawn_only_in_trials_that_draw_focal():
    space = load_space(None, Config())
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(40):
        trial = study.ask()
        drawn = {}
        for param in space:
            if param.applies(drawn):
                drawn[param.name] = param.suggest(trial)
        seen.append(drawn)
        Config().replace(**drawn)  # every draw is a valid config
    assert {d["imbalance"] for d in seen} == {"none", "class-weight", "oversample", "undersample", "focal"}
    assert all(("focal_gamma" in d) == (d["imbalance"] == "focal") for d in seen)
    assert all(1e-5 <= d["learning_rate"] <= 3e-4 and d["epochs"] in (1, 2, 3, 4) for d in seen)


def test_a_user_space_replaces_the_default_and_reads_1e_minus_5_as_a_number(tmp_path):
    path = write(
        tmp_path,
        "learning_rate: {type: float, low: 1e-5, high: 1e-4, log: true}\n"
        "batch_size: {type: int, low: 8, high: 32, step: 8}\n",
    )
    assert space_dict(load_space(path, Config())) == {
        "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-4, "log": True},
        "batch_size": {"type": "int", "low": 8, "high": 32, "log": False, "step": 8},
    }


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "lr: {type: float, low: 0.1, high: 0.2}",
            "lr: unknown training setting; use names from 'emoclf train --help' "
            "with underscores, such as learning_rate or batch_size",
        ),
        (
            "max_samples: {type: int, low: 10, high: 20}",
            "max_samples: cannot be searched (every trial must train on the "
            "same rows and write where the study says); set it with a flag "
            "instead",
        ),
        ("experiment: {type: categorical, choices: [a]}", "experiment: unknown training setting"),
        ("epochs: [1, 2]", "epochs: expected a mapping with type: float | int | categorical, got [1, 2]"),
        ("epochs: {type: int, low: 3, high: 1}", "epochs: low must be below high, got low 3 and high 1"),
        (
            "epochs: {type: int, low: 1, high: 3, steps: 1}",
            "epochs: unknown key(s) steps for type int; known: high, log, low, step, when",
        ),
        (
            "learning_rate: {type: float, low: 0.0, high: 0.1, log: true}",
            "learning_rate: a log scale needs low above 0 and no step, got low 0.0, step None",
        ),
        ("epochs: {type: int, low: 1.5, high: 3}", "epochs: an int range needs whole numbers"),
        ("warmup_ratio: {type: float, low: one, high: 0.1}", "warmup_ratio: low must be a number, got 'one'"),
        (
            "imbalance: {type: categorical, choices: []}",
            "imbalance: choices must be a non-empty list of distinct values",
        ),
        (
            "imbalance: {type: categorical, choices: [none, smote]}",
            "imbalance: 'smote' is not a valid value: imbalance "
            "must be one of auto, none, oversample, undersample, "
            "class-weight, focal, logit-adjust, asl; got 'smote'",
        ),
        (
            "warmup_ratio: {type: float, low: 0.0, high: 1.5}",
            "warmup_ratio: 1.5 is not a valid value: warmup_ratio must be at least 0 and below 1, got 1.5",
        ),
        (
            "focal_gamma: {type: float, low: 1, high: 2, when: {imbalance: focal}}\n"
            "imbalance: {type: categorical, choices: [focal]}",
            "focal_gamma: when names 'imbalance', which is not an earlier entry of the space",
        ),
        ("", "expected a mapping of settings to ranges (see docs/tuning.md), got None"),
    ],
)
def test_mistakes_in_a_space_are_refused_naming_file_entry_and_fix(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_space(path, Config())
    assert str(e.value).startswith(f"{path}: ")
    assert message in str(e.value)


@pytest.mark.parametrize(
    "text, base",
    [
        ("epochs: {type: int, low: 1, high: 3}", Config().replace(max_steps=100)),
        ("max_steps: {type: int, low: 50, high: 200}\nepochs: {type: int, low: 1, high: 3}", Config()),
    ],
)
def test_epochs_are_not_searched_when_max_steps_sets_the_steps(tmp_path, text, base):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_space(path, base)
    assert str(e.value) == (
        f"{path}: epochs is drawn, but max_steps sets every trial's steps, so the epochs drawn "
        "would change nothing; drop the epochs entry or --max-steps"
    )
    assert [p.name for p in load_space(write(tmp_path, "epochs: {type: int, low: 1, high: 3}"), Config())] == ["epochs"]


def test_a_missing_space_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=f"search space file not found: {tmp_path / 'nope.yaml'}"):
        load_space(tmp_path / "nope.yaml", Config())
    assert default_space_path().is_file()


def test_the_default_space_of_multi_label_data_draws_its_strategies_and_their_parameters():
    space = space_dict(load_space(None, Config(), MULTI_TASK))
    assert space["imbalance"]["choices"] == ["none", "class-weight", "focal", "asl"]
    assert space["focal_gamma"]["when"] == {"imbalance": ["focal"]}
    assert space["asl_gamma_neg"] == {
        "type": "float",
        "low": 1.0,
        "high": 6.0,
        "log": False,
        "when": {"imbalance": ["asl"]},
    }
    assert default_space_path(MULTI_TASK).name == "search_space_multilabel.yaml"


@pytest.mark.parametrize(
    "text, base, message",
    [
        (
            "imbalance: {type: categorical, choices: [none, oversample, logit-adjust]}",
            Config(),
            "{path}: imbalance: 'oversample', 'logit-adjust' do not apply to multi-label data; choose from auto, none, "
            "class-weight, focal, asl",
        ),
        (
            "learning_rate: {type: float, low: 1.0e-5, high: 1.0e-4}",
            Config().replace(imbalance="undersample"),
            "imbalance 'undersample' does not apply to multi-label data; choose from auto, none, class-weight, focal, "
            "asl",
        ),
    ],
)
def test_strategies_the_task_has_no_use_for_are_refused_drawn_or_fixed(tmp_path, text, base, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_space(path, base, MULTI_TASK)
    assert str(e.value) == message.format(path=path)
    with pytest.raises(ConfigError, match="^imbalance 'asl' does not apply to single-label data; choose from auto"):
        load_space(write(tmp_path, "epochs: {type: int, low: 1, high: 3}"), Config().replace(imbalance="asl"))
    # Drawn, the strategy replaces the config's: only the choices are checked.
    assert load_space(None, Config().replace(imbalance="asl"), MULTI_TASK)[5].name == "imbalance"
