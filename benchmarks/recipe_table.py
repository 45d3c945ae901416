"""Summarise quality runs by arm: mean and sample std over seeds, overall and per class.

    python benchmarks/quality.py --seed 42 --imbalance logit-adjust > out/la-s42.json   # one line per run
    python benchmarks/recipe_table.py ARM=FILE[,FILE...] [ARM=...] [--groups "a=x,y;b=z"]

Each FILE holds the JSON line of one ``benchmarks/quality.py`` run (or of ``benchmarks/posthoc.py``:
``FILE@class_bias``, the default, or ``FILE@averaged`` picks its arm), or is the run's output folder
(its ``report/metrics.json``: per-class precision and recall too; with ``--groups``, each arm's group
accuracy, a flat arm's included).
Prints a markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from emoclf.evaluation.metrics import group_metrics
from emoclf.hierarchy import Hierarchy


def read(path: str, groups: str | None = None) -> dict:
    if Path(path).is_dir():
        m = json.loads((Path(path) / "report" / "metrics.json").read_text())
        row = {
            "macro_f1": m["macro_f1"],
            **{f"per_class_{k}": {c: v[k] for c, v in m["per_class"].items()} for k in ("f1", "precision", "recall")},
        }
        if groups:
            labels = list(m["per_class"])
            row["group_accuracy"] = group_metrics(
                m["confusion_matrix"], labels, Hierarchy.parse(groups, labels).groups
            )["accuracy"]
        return row
    path, _, arm = path.partition("@")
    line = [s for s in Path(path).read_text().splitlines() if s.startswith("{")][-1]
    row = json.loads(line)
    if row.get("benchmark") == "posthoc":
        arm = arm or "class_bias"
        row = {"macro_f1": row[f"macro_f1_{arm}"], "per_class_f1": row[f"per_class_f1_{arm}"]}
    return row


def summary(rows: list[dict]) -> dict:
    def ms(values):
        values = np.asarray(values, dtype=float)
        return [round(float(values.mean()), 4), round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, 4)]

    classes = sorted(rows[0]["per_class_f1"])
    out = {"seeds": len(rows), "macro_f1": ms([r["macro_f1"] for r in rows])}
    if all("group_accuracy" in r for r in rows):
        out["group_accuracy"] = ms([r["group_accuracy"] for r in rows])
    for key in ("per_class_f1", "per_class_precision", "per_class_recall"):
        if all(key in r for r in rows):
            out[key] = {c: ms([r[key][c] for r in rows]) for c in classes}
    if all("train_seconds" in r for r in rows):
        out["train_seconds"] = ms([r["train_seconds"] for r in rows])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("arms", nargs="+", metavar="ARM=FILE[,FILE...]")
    parser.add_argument("--groups", help="a hierarchy spec: score every run folder's groups too")
    args = parser.parse_args()
    arms = {}
    for spec in args.arms:
        name, files = spec.split("=", 1)
        arms[name] = summary([read(f, args.groups) for f in files.split(",")])
    classes = list(next(iter(arms.values()))["per_class_f1"])
    print("| arm | seeds | macro-F1 | " + " | ".join(classes) + " |")
    print("| --- " * (len(classes) + 3) + "|")
    for name, s in arms.items():
        cells = [f"{m:.4f} ± {sd:.4f}" for m, sd in [s["macro_f1"], *s["per_class_f1"].values()]]
        print(f"| {name} | {s['seeds']} | " + " | ".join(cells) + " |")
    for name, s in arms.items():
        if "per_class_precision" in s:
            print(f"\n{name}: | class | precision | recall | F1 |\n| --- | --- | --- | --- |")
            for c in classes:
                print(
                    f"| {c} | "
                    + " | ".join(
                        f"{s[k][c][0]:.3f} ± {s[k][c][1]:.3f}"
                        for k in ("per_class_precision", "per_class_recall", "per_class_f1")
                    )
                    + " |"
                )
    print(json.dumps({"benchmark": "recipe_table", "arms": arms}))


if __name__ == "__main__":
    main()
