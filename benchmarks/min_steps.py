"""How many optimizer steps does small data need? The floor behind ``--min-steps``.

    python benchmarks/min_steps.py [--steps 36,120,240] [--seeds 3] [--data DATA]

Fine-tunes the default model on small data (default: the embedded demo set, 368 training rows,
12 steps per epoch at batch 32, so the default 3 epochs are 36 steps) for each number of
optimizer steps, with seeds 0, 1, ..., and reports the mean and sample std of the validation
macro-F1 of the best checkpoint (never the test split). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile

from emoclf import hardware
from emoclf.config import Config
from emoclf.training import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="36,120,240", help="Comma-separated numbers of optimizer steps.")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--data", help="Data (default: the embedded demo set).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for steps in (int(s) for s in args.steps.split(",")):
            scores = []
            for seed in range(args.seeds):
                cfg = Config().replace(
                    data=args.data,
                    max_steps=steps,
                    min_steps=0,
                    early_stopping=False,
                    seed=seed,
                    tracking=False,
                    calibrate=False,
                    output_dir=f"{tmp}/{steps}-{seed}",
                )
                result = train(cfg)
                scores.append(max(h["eval_macro_f1"] for h in result.history if "eval_macro_f1" in h))
            results[steps] = {
                "mean": round(statistics.mean(scores), 4),
                "std": round(statistics.stdev(scores), 4) if len(scores) > 1 else None,
            }
    print(
        json.dumps(
            {
                "benchmark": "min_steps",
                "data": args.data or "demo",
                "validation_macro_f1": results,
                "seeds": args.seeds,
                "cpu": hardware.detect().describe(),
            }
        )
    )


if __name__ == "__main__":
    main()
