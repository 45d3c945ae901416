"""A hierarchy of the labels: groups of classes (``positive = joy, love, surprise``), given or found.

``Hierarchy.parse`` reads a given one (inline ``name=a,b;name2=c`` or a YAML or JSON file ``{group: [labels]}``,
such as GoEmotions' ``ekman_mapping.json``) and checks it against the model's labels: every label in one group at
most, an unknown label refused, a label in no group a group of its own (with a warning naming it).
``Hierarchy.from_confusion`` finds one from a validation confusion matrix (``--hierarchy auto``): classes the first
model confuses with each other share a group; for multi-label data the matrix counts the texts of one label given
another they lack (``label_confusion``). The hierarchy is saved in the model's ``emoclf.json``; a single-label group's
probability is the sum of its members' probabilities, so groups always agree with the labels, and a multi-label
text has every group one of its labels is predicted in.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from emoclf.config import Config
from emoclf.errors import ConfigError
from emoclf.layout import DENDROGRAM_PNG, HIERARCHY_JSON
from emoclf.taxonomy import place_labels, read_groups

log = logging.getLogger(__name__)

AUTO = "auto"
GROUPS_YAML = "hierarchy.yaml"  # groups found once by compare/tune, given to every training they run
FILE_FIX = "; give a YAML file, name=label,label;... or 'auto'"


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
        """The hierarchy of ``groups`` over ``labels`` (``data.labels.place_labels``: a label in no group is a group
        of its own, with a warning), refused in one line when a label or group is wrong or the groups add nothing."""
        placed = place_labels(groups, labels, "hierarchy")
        if len(placed) < 2:
            raise ConfigError(
                "hierarchy: one group holds every label, so it adds nothing to the flat loss; give two or more groups"
            )
        if all(len(m) == 1 for m in placed.values()):
            raise ConfigError(
                "hierarchy: every group holds one label, so it adds nothing to the flat loss; put labels that belong "
                "together in one group"
            )
        return cls(placed, source)

    @classmethod
    def parse(cls, spec: str, labels: list[str]) -> Hierarchy:
        """A given hierarchy: a YAML file ``{group: [labels]}`` or inline ``name=a,b;name2=c``."""
        if "=" not in spec:  # a file: every inline spec has a name=
            return cls.check(read_groups(Path(spec), "hierarchy", FILE_FIX), labels)
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
    def from_confusion(cls, matrix, labels: list[str], support=None) -> tuple[Hierarchy | None, dict]:
        """Groups of the classes that are confused with each other more than the average pair of classes.

        ``matrix[i][j]`` counts texts of class i predicted as j (validation, never test); ``support`` the texts of
        each class, by default the rows' sums (what they are for single-label data, not for multi-label data, see
        ``label_confusion``). The symmetric
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
        n = cm.sum(axis=1) if support is None else np.asarray(support, dtype=np.float64)
        rates = cm / np.maximum(n, 1)[:, None]
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
    raw = json.loads((report_dir / HIERARCHY_JSON).read_text(encoding="utf-8"))
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


def label_confusion(y: np.ndarray, decided: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The confusion of labels given as texts x labels 0/1 rows (true ``y``, predicted ``decided``), and each
    label's texts: ``[i][i]`` counts the texts whose label i was predicted, ``[i][j]`` the texts of label i given
    label j they do not have. For single-label rows this is the confusion matrix; for multi-label ones its analogue
    that ``auto`` groups by (a text of several labels counts in each of their rows, so rows need not sum to the
    label's texts, and a model that gives every text every label confuses every pair alike)."""
    y, d = np.asarray(y).astype(np.int64), np.asarray(decided).astype(np.int64)
    matrix = y.T @ (d * (1 - y))
    np.fill_diagonal(matrix, (y * d).sum(axis=0))
    return matrix, y.sum(axis=0)


def from_validation(y: np.ndarray, decided: np.ndarray, labels: list[str], report_dir: Path) -> Hierarchy | None:
    """``from_confusion`` on the first model's validation labels (``y``) and decisions (0/1 rows), logged as text and
    drawn in ``report_dir``."""
    matrix, support = label_confusion(y, decided)
    found, tree = Hierarchy.from_confusion(matrix, labels, support)
    report_dir.mkdir(parents=True, exist_ok=True)
    plot_dendrogram(tree, report_dir / DENDROGRAM_PNG)
    (report_dir / HIERARCHY_JSON).write_text(json.dumps(found.to_dict() if found else None), encoding="utf-8")
    if found is None:
        log.warning(
            "hierarchy auto: no two classes are confused more than the mean pair (%.3f) on validation: "
            "no groups found, this training is flat",
            tree["mean_rate"],
        )
    else:
        log.info("hierarchy (auto, from validation confusion): %s", found.describe())
    return found
