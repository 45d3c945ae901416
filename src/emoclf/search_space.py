"""The search space of ``emoclf tune``: which training settings a trial draws, and from what range.

A space is a YAML mapping, one entry per ``Config`` setting (the flat names ``Config.replace``
takes), drawn in file order; the default is ``resources/search_space.yaml``, whose comments give
the format (``resources/search_space_multilabel.yaml`` for multi-label data: its imbalance choices are that
task's). Every entry is checked when the file is read, its bounds and choices are put through ``Config``
validation, and imbalance strategies the data's task has no use for are refused, so that a bad space fails
before any trial trains, not in trial 7.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from emoclf.config import FIELD_SECTION, Config, read_yaml
from emoclf.errors import ConfigError
from emoclf.imbalance import check_strategies
from emoclf.task import SINGLE, TASKS, Task

KINDS = ("float", "int", "categorical")
KEYS = {"float": {"low", "high", "log", "step"}, "int": {"low", "high", "log", "step"}, "categorical": {"choices"}}
# Settings a trial must not change: where it writes and tracks, and the rows every trial is compared on.
FIXED = {
    "data",
    "val_data",
    "test_data",
    "format",
    "text_column",
    "label_column",
    "encoding",
    "val_size",
    "test_size",
    "split_seed",
    "max_samples",
    "max_val_samples",
    "output_dir",
    "overwrite",
    "label_map",
}
DEFAULT_SPACES = {"single-label": "search_space.yaml", "multi-label": "search_space_multilabel.yaml"}


def default_space_path(task: Task = TASKS[SINGLE]) -> Path:
    """The built-in space for ``task``'s data."""
    return Path(str(resources.files("emoclf") / "resources" / DEFAULT_SPACES[task.name]))


@dataclass(frozen=True)
class Param:
    """One setting to draw: a float or int range (optionally log-scaled or stepped) or a list of choices,
    drawn only when the earlier settings named in ``when`` took one of the values listed."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()
    when: tuple[tuple[str, tuple], ...] = field(default=())

    def applies(self, drawn: dict[str, Any]) -> bool:
        return all(name in drawn and drawn[name] in values for name, values in self.when)

    def suggest(self, trial) -> Any:
        """The value an Optuna trial draws for this setting."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind}
        if self.kind == "categorical":
            out["choices"] = list(self.choices)
        else:
            out.update(low=self.low, high=self.high, log=self.log, **({"step": self.step} if self.step else {}))
        if self.when:
            out["when"] = {name: list(values) for name, values in self.when}
        return out


def load_space(path: str | Path | None, base: Config, task: Task = TASKS[SINGLE]) -> list[Param]:
    """The space in ``path`` (default: the built-in one for ``task``), each entry checked against ``base`` and the
    imbalance strategies, drawn or fixed by ``base``, against ``task``."""
    source = Path(path) if path else default_space_path(task)
    raw = read_yaml(source, "search space file")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{source}: expected a mapping of settings to ranges (see docs/tuning.md), got {raw!r}")
    space: list[Param] = []
    for name, entry in raw.items():
        space.append(_param(str(name), entry, [p.name for p in space], f"{source}: {name}"))
        _check_values(space[-1], base, f"{source}: {name}")
    names = {p.name for p in space}
    if "epochs" in names and ("max_steps" in names or base.train.max_steps):
        raise ConfigError(
            f"{source}: epochs is drawn, but max_steps sets every trial's steps, so the epochs drawn "
            "would change nothing; drop the epochs entry or --max-steps"
        )
    drawn = next((p for p in space if p.name == "imbalance"), None)
    try:
        check_strategies(drawn.choices if drawn else [base.train.imbalance], task)
    except ConfigError as e:
        raise ConfigError(f"{source}: imbalance: {str(e).removeprefix('imbalance ')}" if drawn else str(e)) from None
    return space


def space_dict(space: list[Param]) -> dict[str, dict]:
    return {p.name: p.to_dict() for p in space}


def _param(name: str, entry: Any, earlier: list[str], where: str) -> Param:
    if name not in FIELD_SECTION or FIELD_SECTION[name] == "tracking":
        raise ConfigError(
            f"{where}: unknown training setting; use names from 'emoclf train --help' with "
            "underscores, such as learning_rate or batch_size"
        )
    if name in FIXED:
        raise ConfigError(
            f"{where}: cannot be searched (every trial must train on the same rows and write where "
            "the study says); set it with a flag instead"
        )
    if not isinstance(entry, dict) or entry.get("type") not in KINDS:
        raise ConfigError(f"{where}: expected a mapping with type: {' | '.join(KINDS)}, got {entry!r}")
    kind = entry["type"]
    unknown = set(entry) - KEYS[kind] - {"type", "when"}
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))} for type {kind}; "
            f"known: {', '.join(sorted(KEYS[kind] | {'when'}))}"
        )
    when = _when(entry.get("when") or {}, earlier, where)
    if kind == "categorical":
        choices = entry.get("choices")
        if not isinstance(choices, list) or not choices or len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{where}: choices must be a non-empty list of distinct values, got {choices!r}")
        return Param(name, kind, choices=tuple(choices), when=when)
    low, high, step = (_number(entry.get(k), k, where, k == "step") for k in ("low", "high", "step"))
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false, got {log!r}")
    if not low < high:
        raise ConfigError(f"{where}: low must be below high, got low {low} and high {high}")
    if log and (low <= 0 or step):
        raise ConfigError(f"{where}: a log scale needs low above 0 and no step, got low {low}, step {step}")
    if step is not None and step <= 0:
        raise ConfigError(f"{where}: step must be positive, got {step}")
    if kind == "int" and not all(float(v).is_integer() for v in (low, high, step or 1)):
        raise ConfigError(f"{where}: an int range needs whole numbers, got low {low}, high {high}, step {step}")
    return Param(name, kind, low, high, log, step, when=when)


def _number(value: Any, key: str, where: str, optional: bool) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, str):  # YAML reads 1e-5 (no dot) as text
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
    return value


def _when(raw: Any, earlier: list[str], where: str) -> tuple[tuple[str, tuple], ...]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: when must map an earlier setting to a value or a list of values, got {raw!r}")
    for name in raw:
        if name not in earlier:
            raise ConfigError(f"{where}: when names {name!r}, which is not an earlier entry of the space")
    return tuple((name, tuple(v if isinstance(v, list) else [v])) for name, v in raw.items())


def _check_values(param: Param, base: Config, where: str) -> None:
    """Bounds and choices must make valid configs: refused now rather than in the trial that draws them."""
    values = param.choices if param.kind == "categorical" else (param.low, param.high)
    for value in values:
        if param.kind == "int":
            value = int(value)
        try:
            base.replace(**{param.name: value})
        except ConfigError as e:
            raise ConfigError(f"{where}: {value!r} is not a valid value: {e}") from None
