"""Which preprocessing default? Measures each option's effect on validation macro-F1.

    python benchmarks/preprocess.py [--seeds 3]

1. Counts how many emotion training texts each option changes (an option that changes no
   text cannot change the score on that data).
2. Fine-tunes the default MiniLM on the embedded demo set (raw-looking posts with capitals,
   URLs, mentions, punctuation) once per option and seed, and reports the validation
   macro-F1 (never the test split). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from emoclf import hardware
from emoclf.config import Config, DataConfig, PreprocessConfig
from emoclf.data.io import read_file
from emoclf.preprocess import Preprocessor
from emoclf.training import train

ROOT = Path(__file__).resolve().parents[1]
# Each option is the default with one thing changed (raw: every step off), so each row measures one step.
OPTIONS = {
    "raw": dict(lowercase=False, urls="keep", users="keep", strip_non_word=False, collapse_whitespace=False),
    "default": {},
    "keep_symbols": dict(strip_non_word=False),
    "remove_urls_users": dict(urls="remove", users="remove"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "emotion")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=float, default=3.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    texts = read_file(args.data_dir / "train.txt", DataConfig())["text"].tolist()
    changed = {}
    for name, opts in OPTIONS.items():
        cleaned = Preprocessor(PreprocessConfig(**opts)).batch(texts)
        changed[name] = sum(a != b for a, b in zip(texts, cleaned))

    scores: dict[str, list[float]] = {name: [] for name in OPTIONS}
    with tempfile.TemporaryDirectory() as tmp:
        for name, opts in OPTIONS.items():
            for seed in range(args.seeds):
                cfg = Config().replace(
                    **opts,
                    seed=seed,
                    epochs=args.epochs,
                    tracking=False,
                    output_dir=f"{tmp}/{name}-{seed}",
                    calibrate=False,
                )
                result = train(cfg)
                scores[name].append(max(h["eval_macro_f1"] for h in result.history if "eval_macro_f1" in h))
    print(
        json.dumps(
            {
                "benchmark": "preprocess",
                "default": asdict(PreprocessConfig()),
                "emotion_train_texts_changed": changed,
                "demo_validation_macro_f1": {
                    k: {
                        "mean": round(statistics.mean(v), 4),
                        "std": round(statistics.stdev(v), 4) if len(v) > 1 else None,
                    }
                    for k, v in scores.items()
                },
                "seeds": args.seeds,
                "epochs": args.epochs,
                "cpu": hardware.detect().describe(),
            }
        )
    )


if __name__ == "__main__":
    main()
