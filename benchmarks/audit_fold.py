"""Cost of `emoclf audit --audit-model finetune`: one fold of it on the emotion data, cut to --steps optimizer steps.

Prints the seconds of the fold's training (with its validation calibration) and of predicting its held-out rows;
a full audit is --folds such folds at the full number of steps (docs/audit.md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from emoclf import hardware, training
from emoclf.audit import fold_data, stratified_folds
from emoclf.config import Config
from emoclf.data import load_data
from emoclf.inference import Predictor

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "emotion")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    cfg = Config().replace(
        data=str(args.data_dir / "train.txt"),
        test_data=str(args.data_dir / "val.txt"),
        tracking=False,
        max_steps=args.steps,
        min_steps=0,
        early_stopping=False,
        overwrite=True,
        output_dir=str(ROOT / "benchmarks" / "out" / "audit-fold"),
    )
    data = load_data(cfg.data)
    train = data.splits["train"]
    fit, held = stratified_folds(data, args.folds, cfg.train.seed)[0]
    started = time.perf_counter()
    result = training.train(cfg, fold_data(data, fit), holdout=None)
    trained = time.perf_counter()
    Predictor.load(result.model_dir, batch_size=cfg.train.eval_batch_size).probabilities(
        train["text"].iloc[held].tolist(), progress=False
    )
    print(
        json.dumps(
            {
                "benchmark": "audit_fold",
                "fit_rows": len(fit),
                "held_rows": len(held),
                "steps": args.steps,
                "train_seconds": round(result.train_seconds, 1),
                "fold_seconds": round(trained - started, 1),
                "predict_held_seconds": round(time.perf_counter() - trained, 1),
                "cpu": hardware.detect().to_dict(),
            }
        )
    )


if __name__ == "__main__":
    main()
