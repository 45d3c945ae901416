"""Groups of labels: a taxonomy (GoEmotions' 27 emotions -> 6 Ekman groups) or a hierarchy, read from a file and
placed over a model's labels.

Shared by ``--hierarchy`` (``emoclf.hierarchy``) and ``--label-map`` (``emoclf.data.labels.map_labels``). It imports
nothing heavy: a model saved with a hierarchy reads its groups when it loads to predict.
"""

from __future__ import annotations

import logging
from pathlib import Path

from emoclf.config import read_yaml
from emoclf.errors import ConfigError
from emoclf.preprocess import nfc

log = logging.getLogger(__name__)


def read_groups(path: Path, what: str, fix: str = "") -> dict[str, list[str]]:
    """A YAML or JSON file mapping each group name to a list of labels (GoEmotions' ``ekman_mapping.json``), or
    one line naming ``what`` reads it (``hierarchy``, ``label map``) and what is wrong; ``fix`` ends a not-found
    message."""
    raw = read_yaml(path, f"{what}: file", fix)
    ok = (
        isinstance(raw, dict)
        and raw
        and all(isinstance(m, list) and all(isinstance(x, str) for x in m) for m in raw.values())
    )
    if not ok:
        raise ConfigError(f"{what}: {path} must map each group name to a list of labels, e.g. 'positive: [joy, love]'")
    return {str(g): [nfc(x.strip()) for x in m] for g, m in raw.items()}


def place_labels(groups: dict[str, list[str]], labels: list[str], what: str) -> dict[str, list[str]]:
    """``groups`` checked against ``labels`` and completed: every group's members in ``labels`` order, and each
    label in no group a group of its own, named by it (logged as a warning naming them, so that GoEmotions'
    ``neutral``, which the Ekman mapping leaves out, stays a class). Refused in one line: an unknown label (a typo
    is caught here), a label in two groups, an empty group, or a label in no group that a group is named after."""
    seen: dict[str, str] = {}
    for name, members in groups.items():
        if not members:
            raise ConfigError(f"{what}: group {name!r} has no labels; list its labels or remove it")
        for lab in members:
            if lab not in labels:
                raise ConfigError(
                    f"{what}: unknown label {lab!r} in group {name!r}; the labels are {', '.join(labels)}"
                )
            if lab in seen:
                raise ConfigError(
                    f"{what}: label {lab!r} is in two groups ({seen[lab]!r} and {name!r}); put each label in one group"
                )
            seen[lab] = name
    alone = [lab for lab in labels if lab not in seen]
    clash = next((lab for lab in alone if lab in groups), None)
    if clash is not None:
        raise ConfigError(
            f"{what}: label {clash!r} is in no group, but a group is named {clash!r}; list it in that group or rename "
            "the group"
        )
    if alone:
        log.warning("%s: label(s) %s in no group, each kept as a group of its own", what, ", ".join(map(repr, alone)))
    placed = {g: [lab for lab in labels if seen.get(lab) == g] for g in groups}
    return {**placed, **{lab: [lab] for lab in alone}}
