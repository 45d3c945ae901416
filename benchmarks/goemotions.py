"""GoEmotions (multi-label, 27 emotions + neutral): the default config on train.tsv, scored on dev.tsv.

    python benchmarks/goemotions.py [--data-dir ../shared/data/goemotions] [--skip-ekman-model] [--FLAG VALUE ...]

Trains the default config (validation carved from train.tsv: thresholds and the best epoch are chosen there,
never on dev.tsv) and scores dev.tsv as the untouched test split: macro- and micro-F1 over the 28 labels, and the
Ekman macro-F1 of the same model through the published mapping (a text has an Ekman group when it has one of its
labels; neutral stays neutral). Then trains a second model on the Ekman labels directly (``--label-map``) and
scores it on dev.tsv likewise. Extra flags are emoclf config overrides for both models (for example --epochs 2).
Prints one JSON line with seconds, examples per second and the CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from emoclf import hardware
from emoclf.cli import add_flags, config_from_args
from emoclf.config import SECTIONS, read_yaml
from emoclf.data import load_labelled
from emoclf.evaluation.multilabel import group_metrics
from emoclf.inference import Predictor
from emoclf.trainer import resolve_precision
from emoclf.training import train

ROOT = Path(__file__).resolve().parents[1]
# Reference points on the official test split (the data folder's README): macro-F1 over the 28 labels and over
# the Ekman groups; emoclf scores dev.tsv here, since the test split is held back.
PUBLISHED = {
    "paper_bert_base": {"macro_f1": 0.46, "ekman_macro_f1": 0.64},
    "reimplementation_bert_base_threshold_0.3": {"macro_f1": 0.50, "ekman_macro_f1": 0.62},
}


def ekman_groups(mapping: Path, labels: list[str]) -> dict[str, list[str]]:
    """The Ekman groups of ``labels``, every label outside the mapping (neutral) a group of its own."""
    groups = {g: list(m) for g, m in read_yaml(mapping, "label map").items()}
    mapped = {lab for m in groups.values() for lab in m}
    return {**groups, **{lab: [lab] for lab in labels if lab not in mapped}}


def scores(result, cfg) -> dict:
    m = result.metrics
    return {
        "macro_f1": round(m["macro_f1"], 4),
        "micro_f1": round(m["micro_f1"], 4),
        "samples_f1": round(m["samples_f1"], 4),
        "per_label_f1": {k: round(v["f1"], 4) for k, v in m["per_class"].items() if v["f1"] is not None},
        "best_validation_macro_f1": round(max(h["eval_macro_f1"] for h in result.history if "eval_macro_f1" in h), 4),
        "epochs_run": round(result.history[-1].get("epoch", 0), 2) if result.history else None,
        "train_seconds": round(result.train_seconds, 1),
        "train_examples_per_second": round(result.train_examples_per_second, 1),
        "precision": resolve_precision(cfg.train.precision),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "goemotions")
    parser.add_argument("--skip-ekman-model", action="store_true", help="Train only the 28-label model.")
    for name, section in SECTIONS.items():
        add_flags(parser, section, f"{name} settings", from_config=True)
    args = parser.parse_args()
    args.data = str(args.data_dir / "train.tsv")
    cfg = config_from_args(args, tuple(SECTIONS))
    overrides = {"test_data": str(args.data_dir / "dev.tsv"), "label_names": str(args.data_dir / "labels.txt")}
    if "tracking" not in vars(args):
        overrides["tracking"] = False
    out = Path(vars(args).get("output_dir", ROOT / "benchmarks" / "out" / "goemotions"))
    cfg = cfg.replace(**overrides, output_dir=str(out / "labels28"), overwrite=True)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    mapping = args.data_dir / "ekman_mapping.json"

    fine = train(cfg)
    predictor = Predictor.load(fine.model_dir, batch_size=cfg.train.eval_batch_size)
    dev = load_labelled(cfg.data, predictor.labels, predictor.preprocessor, "multi-label")
    decided = predictor.decide(predictor.predict_proba(dev.texts))
    through_map = group_metrics(dev.y_true, decided, predictor.labels, ekman_groups(mapping, predictor.labels))
    line = {
        "benchmark": "goemotions",
        "model": cfg.model.model,
        "test_set": "dev.tsv",
        "labels28": scores(fine, cfg),
        "ekman_through_mapping": {
            "macro_f1": round(through_map["macro_f1"], 4),
            "micro_f1": round(through_map["micro_f1"], 4),
            "per_group_f1": {g: round(r["f1"], 4) for g, r in through_map["per_group"].items()},
        },
    }
    if not args.skip_ekman_model:
        coarse = train(cfg.replace(label_map=str(mapping), output_dir=str(out / "ekman"), overwrite=True))
        line["ekman_model"] = scores(coarse, cfg)
    line.update(
        published_on_official_test=PUBLISHED,
        cpu=hardware.detect().to_dict(),
        command=" ".join(["python benchmarks/goemotions.py", *sys.argv[1:]]),
    )
    print(json.dumps(line))


if __name__ == "__main__":
    main()
