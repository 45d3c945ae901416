"""Does a cheap comparison rank strategies the way the full one does? The check behind ``compare --quick``.

    python benchmarks/rank_agreement.py FULL_DIR QUICK_DIR

Both folders are ``emoclf compare`` outputs. The full ranking is by mean test macro-F1 over all of
FULL_DIR's seeds; QUICK_DIR is ranked with its first 1, 2, ... seeds, as a quick run with that many
seeds would be. For each, prints the ranking, Kendall's tau against the full ranking (1 = same
order), whether the best strategy is the same, the lowest macro-F1 of any strategy, and the training
seconds one seed of every strategy took. One JSON line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from scipy.stats import kendalltau

from emoclf import hardware
from emoclf.compare import COMPARISON_DIR, RUNS_CSV


def ranking(runs: pd.DataFrame) -> pd.Series:
    return runs.groupby("strategy")["macro_f1"].mean().sort_values(ascending=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("full", type=Path)
    parser.add_argument("quick", type=Path)
    args = parser.parse_args()
    full_runs = pd.read_csv(args.full / COMPARISON_DIR / RUNS_CSV)
    quick_runs = pd.read_csv(args.quick / COMPARISON_DIR / RUNS_CSV)
    full = ranking(full_runs)
    result = {
        "benchmark": "rank_agreement",
        "full": {"dir": str(args.full), "seeds": int(full_runs["seed"].nunique()), "ranking": full.round(4).to_dict()},
        "quick": [],
    }
    for n in range(1, quick_runs["seed"].nunique() + 1):
        seeds = sorted(quick_runs["seed"].unique())[:n]
        subset = quick_runs[quick_runs["seed"].isin(seeds)]
        quick = ranking(subset)
        tau = kendalltau(full.reindex(quick.index).to_numpy(), quick.to_numpy()).statistic
        result["quick"].append(
            {
                "seeds": n,
                "ranking": quick.round(4).to_dict(),
                "kendall_tau": round(float(tau), 3),
                "same_best": quick.index[0] == full.index[0],
                "lowest_macro_f1": round(float(quick.min()), 4),
                "train_seconds": round(float(subset["train_seconds"].sum()), 1),
            }
        )
    result["cpu"] = hardware.detect().describe()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
