"""Quality bar: the default config on the emotion data, val.txt as the untouched test set.

    python benchmarks/quality.py [--data-dir ../shared/data/emotion] [--FLAG VALUE ...]

Extra flags are emoclf config overrides (for example --epochs 2). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from emoclf import hardware
from emoclf.cli import add_flags, config_from_args
from emoclf.config import SECTIONS
from emoclf.trainer import resolve_precision
from emoclf.training import train

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "emotion")
    for name, section in SECTIONS.items():
        add_flags(parser, section, f"{name} settings", from_config=True)
    args = parser.parse_args()
    args.data = str(args.data_dir / "train.txt")
    cfg = config_from_args(args, tuple(SECTIONS))
    overrides = {"test_data": str(args.data_dir / "val.txt")}
    if "output_dir" not in vars(args):
        overrides["output_dir"] = str(ROOT / "benchmarks" / "out" / "quality")
    if "tracking" not in vars(args):
        overrides["tracking"] = False
    cfg = cfg.replace(**overrides)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    result = train(cfg)
    m = result.metrics
    print(
        json.dumps(
            {
                "benchmark": "quality",
                "model": cfg.model.model,
                "test_set": "val.txt",
                "accuracy": round(m["accuracy"], 4),
                "macro_f1": round(m["macro_f1"], 4),
                "weighted_f1": round(m["weighted_f1"], 4),
                "per_class_f1": {k: round(v["f1"], 4) for k, v in m["per_class"].items()},
                **(
                    {
                        "hierarchy": m["groups"]["groups"],
                        "group_accuracy": round(m["groups"]["accuracy"], 4),
                        "group_macro_f1": round(m["groups"]["macro_f1"], 4),
                    }
                    if "groups" in m
                    else {}
                ),
                "best_validation_macro_f1": round(
                    max(h["eval_macro_f1"] for h in result.history if "eval_macro_f1" in h), 4
                ),
                "epochs_run": round(result.history[-1].get("epoch", 0), 2) if result.history else None,
                "train_seconds": round(result.train_seconds, 1),
                "train_examples_per_second": round(result.train_examples_per_second, 1),
                "precision": resolve_precision(cfg.train.precision),
                "cpu": hardware.detect().to_dict(),
            }
        )
    )


if __name__ == "__main__":
    main()
