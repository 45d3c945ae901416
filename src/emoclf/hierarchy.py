"""A hierarchy of the labels: groups of classes (``positive = joy, love, surprise``), given or found.

``Hierarchy.parse`` reads a given one (inline ``name=a,b;name2=c`` or a YAML file ``{group: [labels]}``)
and checks it against the model's labels: every label in exactly one group. ``Hierarchy.from_confusion``
finds one from a validation confusion matrix (``--hierarchy auto``): classes the first model confuses
with each other share a group. The hierarchy is saved in the model's ``emoclf.json``, and a group's
probability is the sum of its members' probabilities, so groups always agree with the labels.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from emoclf.config import QUICK_BATCH_SIZE, QUICK_EPOCHS, QUICK_MAX_SAMPLES, Config
from emoclf.errors import ConfigError

if TYPE_CHECKING:  # the data modules import pandas and scikit-learn: seconds a prediction does not need
    from emoclf.data import PreparedData

log = logging.getLogger(__name__)

AUTO = "auto"
FIRST_MODEL_DIR = "hierarchy-first-model"  # the auto hierarchy's first model, removed once it is read
DENDROGRAM_PNG = "hierarchy_dendrogram.png"
GROUPS_YAML = "hierarchy.yaml"  # groups found once by compare/tune, given to every training they run
FOUND_JSON = "hierarchy.json"  # what auto found (or null: flat), read back by --resume instead of a new first model
FIX = "put every label in exactly one group (a group may hold a single label)"


@dataclass(frozen=True)
class Hierarchy:
    """Groups of labels, in the order given; ``source`` says whether it was ``given`` or found (``auto``)."""

    groups: dict[str, list[str]]
    source: str = "given"

    @property
    def names(self) -> list[str]:
        return list(self.groups)

    def group_of(self, label: str) -> str:
        return next(g for g, members in self.groups.items() if label in members)

    def group_ids(self, labels: list[str]) -> list[int]:
        """For each label (in the model's order), the index of its group."""
        return [self.names.index(self.group_of(lab)) for lab in labels]

    def membership(self, labels: list[str]) -> np.ndarray:
        """A labels x groups 0/1 matrix: probabilities @ membership are the group probabilities."""
        member = np.zeros((len(labels), len(self.groups)), dtype=np.float64)
        member[np.arange(len(labels)), self.group_ids(labels)] = 1.0
        return member

    def describe(self) -> str:
        """``positive: {joy, love} negative: {anger}``, or just the braces for found groups (named by members)."""
        return " ".join(
            ("" if self.source == AUTO else f"{g}: ") + "{" + ", ".join(m) + "}" for g, m in self.groups.items()
        )

    def to_dict(self) -> dict:
        return {"groups": {g: list(m) for g, m in self.groups.items()}, "source": self.source}

    @classmethod
    def from_dict(cls, raw: dict, labels: list[str]) -> Hierarchy:
        return cls.check(raw["groups"], labels, raw.get("source", "given"))

    @classmethod
    def check(cls, groups: dict[str, list[str]], labels: list[str], source: str = "given") -> Hierarchy:
        """The hierarchy if every label is in exactly one group and every group has a label; else one line saying
        which label or group is wrong."""
        seen: dict[str, str] = {}
        for name, members in groups.items():
            if not members:
                raise ConfigError(f"hierarchy: group {name!r} has no labels; {FIX}")
            for lab in members:
                if lab not in labels:
                    raise ConfigError(
                        f"hierarchy: unknown label {lab!r} in group {name!r}; the labels are {', '.join(labels)}"
                    )
                if lab in seen:
                    raise ConfigError(f"hierarchy: label {lab!r} is in two groups ({seen[lab]!r} and {name!r}); {FIX}")
                seen[lab] = name
        missing = [lab for lab in labels if lab not in seen]
        if missing:
            raise ConfigError(f"hierarchy: label(s) {', '.join(map(repr, missing))} in no group; {FIX}")
        if len(groups) < 2:
            raise ConfigError(
                "hierarchy: one group holds every label, so it adds nothing to the flat loss; give two or more groups"
            )
        return cls({g: [lab for lab in labels if lab in m] for g, m in groups.items()}, source)

    @classmethod
    def parse(cls, spec: str, labels: list[str]) -> Hierarchy:
        """A given hierarchy: a YAML file ``{group: [labels]}`` or inline ``name=a,b;name2=c``."""
        if "=" not in spec:  # a file: every inline spec has a name=
            return cls.check(_read_yaml(Path(spec)), labels)
        groups: dict[str, list[str]] = {}
        for part in filter(None, (p.strip() for p in spec.split(";"))):
            name, eq, members = part.partition("=")
            name = name.strip()
            if not eq or not name:
                raise ConfigError(
                    f"hierarchy: cannot read {part!r}; write groups as name=label,label;name=label, "
                    "give a YAML file or 'auto'"
                )
            if name in groups:
                raise ConfigError(f"hierarchy: group {name!r} is given twice; give each group once")
            groups[name] = [m.strip() for m in members.split(",") if m.strip()]
        return cls.check(groups, labels)

    @classmethod
    def from_confusion(cls, matrix, labels: list[str]) -> tuple[Hierarchy | None, dict]:
        """Groups of the classes that are confused with each other more than the average pair of classes.

        ``matrix[i][j]`` counts texts of class i predicted as j (validation, never test). The symmetric
        confusion rate of two classes is s_ij = (C_ij / n_i + C_ji / n_j) / 2; average-linkage clustering on the
        distance 1 - s / max(s) merges the most confused classes first and stops before a merge whose classes
        are, on average, confused no more than the mean pair: above-average confusion is what a shared group
        should mean, and it needs no tuned constant. Average linkage has a useful property here: the mean of
        all pairs is the |A||B|-weighted mean of the merge heights, so some merge is always above the cut
        and the result is never a single group. Returns None (stay flat) when no two classes join, with the
        linkage and cut for the dendrogram.
        """
        from scipy.cluster.hierarchy import fcluster, linkage
        from scipy.spatial.distance import squareform

        cm = np.asarray(matrix, dtype=np.float64)
        rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        s = (rates + rates.T) / 2
        np.fill_diagonal(s, 0.0)
        pairs = s[np.triu_indices(len(labels), 1)]
        tree = {"labels": labels, "linkage": None, "cut": None, "mean_rate": float(pairs.mean()) if len(pairs) else 0.0}
        if len(labels) < 3 or pairs.max() <= 0:
            return None, tree
        distance = 1.0 - s / pairs.max()
        np.fill_diagonal(distance, 0.0)
        tree["linkage"] = linkage(squareform(distance, checks=False), method="average")
        tree["cut"] = 1.0 - pairs.mean() / pairs.max()
        # Strictly above the mean rate: a merge exactly at the cut does not join.
        ids = fcluster(tree["linkage"], tree["cut"] - 1e-12, criterion="distance")
        clusters = [[lab for lab, c in zip(labels, ids) if c == k] for k in dict.fromkeys(ids)]
        if len(clusters) < 2 or all(len(c) == 1 for c in clusters):
            return None, tree
        return cls({"+".join(c): c for c in clusters}, AUTO), tree


def _read_yaml(path: Path) -> dict[str, list[str]]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"hierarchy: file not found: {path}; give a YAML file, name=label,label;... or 'auto'"
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"hierarchy: {path} is not valid YAML: {e}") from None
    ok = isinstance(raw, dict) and all(isinstance(m, list) and all(isinstance(x, str) for x in m) for m in raw.values())
    if not ok:
        raise ConfigError(
            f"hierarchy: {path} must map each group name to a list of labels, e.g. 'positive: [joy, love]'"
        )
    return {str(g): m for g, m in raw.items()}


def pin(cfg: Config, found: Hierarchy, folder: Path) -> Config:
    """``cfg`` training with ``found``'s groups, written to ``folder/hierarchy.yaml``: what ``compare`` and ``tune``
    give
    every training they run, so that ``auto`` is found once and every arm or trial learns the same groups."""
    path = folder / GROUPS_YAML
    path.write_text(yaml.safe_dump(found.groups, sort_keys=False), encoding="utf-8")
    return cfg.replace(hierarchy=str(path.resolve()))


def read_found(report_dir: Path, labels: list[str]) -> Hierarchy | None:
    """What ``from_validation`` recorded in ``report_dir`` (None: flat), so that a resumed training keeps the groups
    its checkpoints learnt and the other ranks use rank 0's."""
    raw = json.loads((report_dir / FOUND_JSON).read_text(encoding="utf-8"))
    return Hierarchy.from_dict(raw, labels) if raw else None


def group_probabilities(probs: np.ndarray, hierarchy: Hierarchy, labels: list[str]) -> np.ndarray:
    """Rows of group probabilities (sums of their members'), columns in ``hierarchy.names`` order."""
    return np.asarray(probs, dtype=np.float64) @ hierarchy.membership(labels)


def plot_dendrogram(tree: dict, path: Path) -> Path | None:
    """The tree ``from_confusion`` found, with its cut as a dashed line; None when there was nothing to cluster."""
    if tree["linkage"] is None:
        return None
    from matplotlib.figure import Figure
    from scipy.cluster.hierarchy import dendrogram

    fig = Figure(figsize=(2 + 0.8 * len(tree["labels"]), 4), dpi=100)
    ax = fig.subplots()
    dendrogram(tree["linkage"], labels=tree["labels"], ax=ax, color_threshold=tree["cut"], above_threshold_color="grey")
    ax.axhline(
        tree["cut"],
        color="tab:red",
        linestyle="--",
        linewidth=1,
        label=f"cut: mean confusion rate {tree['mean_rate']:.3f}",
    )
    ax.set(ylabel="1 - confusion rate / highest rate", title="hierarchy found from the validation confusion")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def first_model(cfg: Config, data: PreparedData) -> tuple[Config, PreparedData]:
    """What ``auto`` trains its first, flat model on: ``compare --quick``'s budget (at most 4,000 training rows,
    one epoch in batches of 16, at least ``min_steps``) on the same training and validation splits (no test)."""
    from emoclf.data import PreparedData
    from emoclf.data.split import subsample

    first = cfg.replace(
        hierarchy=None,
        output_dir=str(Path(cfg.train.output_dir) / FIRST_MODEL_DIR),
        overwrite=True,
        tracking=False,
        epochs=QUICK_EPOCHS,
        batch_size=QUICK_BATCH_SIZE,
        calibrate=False,
        class_bias=False,
        max_steps=None,
    )
    train = subsample(data.splits["train"], QUICK_MAX_SAMPLES, cfg.data.split_seed)
    log.info(
        "hierarchy auto: training a first flat model on %d texts to find the groups from its validation confusion",
        len(train),
    )
    return first, PreparedData({"train": train, "validation": data.splits["validation"]}, data.labels, data.report)


def from_validation(matrix, labels: list[str], report_dir: Path) -> Hierarchy | None:
    """``from_confusion`` on the first model's validation confusion, logged as text and drawn in ``report_dir``."""
    found, tree = Hierarchy.from_confusion(matrix, labels)
    report_dir.mkdir(parents=True, exist_ok=True)
    plot_dendrogram(tree, report_dir / DENDROGRAM_PNG)
    (report_dir / FOUND_JSON).write_text(json.dumps(found.to_dict() if found else None), encoding="utf-8")
    if found is None:
        log.warning(
            "hierarchy auto: no two classes are confused more than the mean pair (%.3f) on validation: "
            "no groups found, this training is flat",
            tree["mean_rate"],
        )
    else:
        log.info("hierarchy (auto, from validation confusion): %s", found.describe())
    return found
