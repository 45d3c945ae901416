"""A large labelled CSV for timing `emoclf inspect` (docs/reliability.md, "inspect of 1M rows").

Random sentences of the emotion data's words, 4 to 40 of them, six labels in the emotion data's proportions,
and every 50th row a copy of a random other row (with its own label: exact duplicates and conflicts), seeded.
Prints one JSON line; then time `emoclf inspect FILE`, for example with `/usr/bin/time -v`.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["anger", "fear", "joy", "love", "sadness", "surprise"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("rows.csv"))
    parser.add_argument("--words", type=Path, default=ROOT.parent / "shared" / "data" / "emotion" / "train.txt")
    args = parser.parse_args()
    lines = args.words.read_text(encoding="utf-8").splitlines()
    words = " ".join(line.rpartition(";")[0] for line in lines).split()
    rng = random.Random(0)
    texts = [" ".join(rng.choices(words, k=rng.randint(4, 40))) for _ in range(args.rows)]
    for i in range(0, args.rows, 50):
        texts[i] = texts[rng.randrange(args.rows)]
    labels = rng.choices(LABELS, weights=[13, 12, 33, 8, 29, 5], k=args.rows)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(args.out, index=False)
    print(json.dumps({"rows": args.rows, "file": str(args.out)}))


if __name__ == "__main__":
    main()
