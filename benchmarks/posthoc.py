"""Post-hoc arms of the recipe comparison, on models already trained: no retraining.

    python benchmarks/posthoc.py RUN_DIR [RUN_DIR ...]

For each training folder (e.g. from benchmarks/quality.py --output-dir ...): macro-F1 on its test
split as saved; with the weights of its two kept checkpoints (the last two epochs) averaged
(checkpoint averaging, the cheap cousin of EMA/SWA); and with per-class logit offsets fitted on its
own validation split (what ``--class-bias`` does at the end of training), which is post-hoc logit
adjustment with one offset per class chosen for macro-F1. The validation split is rebuilt from the
run's saved config, so the test data is never used to fit anything. Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from emoclf import hardware
from emoclf.config import Config
from emoclf.data import Labelled, load_data
from emoclf.evaluation.evaluate import evaluate
from emoclf.finishing import calibrate
from emoclf.inference import Predictor


def averaged(run: Path, predictor: Predictor) -> list[str]:
    """Load the mean of the run's kept checkpoints into the predictor's model; return their names."""
    kept = sorted((run / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    states = [load_file(str(p / "model.safetensors")) for p in kept]
    mean = {k: torch.stack([s[k].float() for s in states]).mean(0) for k in states[0]}
    model = predictor.backend.model
    missing, unexpected = model.load_state_dict(mean, strict=False)
    if unexpected or [k for k in missing if "position_ids" not in k]:
        raise SystemExit(f"{run}: checkpoint keys do not match the model ({missing[:3]}, {unexpected[:3]})")
    return [p.name for p in kept]


def score(run: Path) -> dict:
    cfg = Config.from_yaml(run / "config.yaml")
    predictor = Predictor.load(run / "model", batch_size=cfg.train.eval_batch_size)
    data = load_data(cfg.data, predictor.preprocessor)
    validation = Labelled.from_split(data.splits["validation"], "validation")
    test = Labelled.from_split(data.splits["test"], "test")
    saved = evaluate(predictor, test).metrics
    kept = averaged(run, predictor)
    mean = evaluate(predictor, test).metrics
    predictor = Predictor.load(run / "model", batch_size=cfg.train.eval_batch_size)
    calibrate(predictor, validation, temperature=True, class_bias=True)
    biased = evaluate(predictor, test).metrics
    return {
        "benchmark": "posthoc",
        "run": str(run),
        "seed": cfg.train.seed,
        "test_rows": len(test.texts),
        "macro_f1": round(saved["macro_f1"], 4),
        "averaged": kept,
        "macro_f1_averaged": round(mean["macro_f1"], 4),
        "per_class_f1_averaged": {k: round(v["f1"], 4) for k, v in mean["per_class"].items()},
        "macro_f1_class_bias": round(biased["macro_f1"], 4),
        "per_class_f1_class_bias": {k: round(v["f1"], 4) for k, v in biased["per_class"].items()},
        "class_bias": [round(b, 3) for b in predictor.meta.class_bias],
        "cpu": hardware.detect().to_dict()["cpu"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    for run in parser.parse_args().runs:
        print(json.dumps(score(run)), flush=True)


if __name__ == "__main__":
    main()
