"""Loads export folders with ``Predictor.load`` and prints, per folder, its probabilities on given texts
or the load error, as one JSON object. Run under ``qemu-x86_64 -cpu Haswell`` by tests/test_export.py
to see what an AVX2-only CPU computes.

Usage: ``python emulated_load.py TEXTS_JSON BATCH_SIZE FOLDER...``
"""

from __future__ import annotations

import json
import sys

from emoclf.errors import ModelLoadError
from emoclf.hardware import detect
from emoclf.inference import Predictor


def main(texts_file: str, batch_size: str, *folders: str) -> None:
    texts = json.loads(open(texts_file, encoding="utf-8").read())
    out = {"hardware": detect().to_dict()}
    for folder in folders:
        try:
            out[folder] = {
                "probabilities": Predictor.load(folder, batch_size=int(batch_size)).predict_proba(texts).tolist()
            }
        except ModelLoadError as e:
            out[folder] = {"error": str(e)}
    print(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:])
