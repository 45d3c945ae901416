"""Post-hoc arms of the recipe comparison, on models already trained: no retraining.

    python benchmarks/posthoc.py RUN_DIR [RUN_DIR ...]

For each training folder (e.g. from benchmarks/quality.py --output-dir ...): macro-F1 on its test
split as saved, and with per-class logit offsets fitted on its own validation split (what
``--class-bias`` does at the end of training), which is post-hoc logit adjustment with one offset
per class chosen for macro-F1. The validation split is rebuilt from the run's saved config, so the
test data is never used to fit anything. Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from emoclf import hardware
from emoclf.config import Config
from emoclf.data import Labelled, load_data
from emoclf.evaluation.evaluate import calibrate, evaluate
from emoclf.inference import Predictor


def score(run: Path) -> dict:
    cfg = Config.from_yaml(run / "config.yaml")
    predictor = Predictor.load(run / "model", batch_size=cfg.train.eval_batch_size)
    data = load_data(cfg.data, predictor.preprocessor)
    validation = Labelled.from_split(data.splits["validation"], "validation")
    test = Labelled.from_split(data.splits["test"], "test")
    saved = evaluate(predictor, test).metrics
    calibrate(predictor, validation, temperature=True, class_bias=True)
    biased = evaluate(predictor, test).metrics
    return {"benchmark": "posthoc", "run": str(run), "seed": cfg.train.seed, "test_rows": len(test.texts),
            "macro_f1": round(saved["macro_f1"], 4), "macro_f1_class_bias": round(biased["macro_f1"], 4),
            "per_class_f1_class_bias": {k: round(v["f1"], 4) for k, v in biased["per_class"].items()},
            "class_bias": [round(b, 3) for b in predictor.meta.class_bias],
            "cpu": hardware.detect().to_dict()["cpu"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    for run in parser.parse_args().runs:
        print(json.dumps(score(run)), flush=True)


if __name__ == "__main__":
    main()
