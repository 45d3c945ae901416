"""int8 beyond dynamic quantisation: ONNX Runtime static quantisation (QDQ, per-channel weights), against the fp32
and dynamic int8 exports, with each path's share of this CPU's peak.

    python benchmarks/int8.py [--model benchmarks/out/quality/model] [--calibration 2000] [--limit N]

Writes, next to the model (``--out``, default ``benchmarks/out/int8``): the fp32 and dynamic int8 exports
(``emoclf export``'s), and static int8 exports of the model's graph as exported, before ONNX Runtime's fusions
(after them the calibrator sees no activation inside the fused operators, and only the weights get quantised):
activation ranges calibrated (MinMax) on the first ``--calibration`` texts of ``train.txt`` (not the scored
``val.txt``), u8 activations and s8 weights with one scale per output channel (7-bit weights where this CPU's int8
dot products saturate, as ``emoclf export`` decides), QDQ format, which ONNX Runtime fuses into integer kernels at
load time; once quantising the MatMuls with weights (attention's two products of activations stay fp32), once
every MatMul. Each path is scored with ``emoclf.export.compare`` against the PyTorch model on all of ``val.txt``
(macro-F1 lost, in points), timed as emoclf predicts (batches of 64, longest first), and checked for batch
invariance: the
largest probability difference between each text alone and in its batch (a model whose answers do not depend on
the batch may share model calls in ``emoclf serve``). ``percent_of_peak``: the forward pass's arithmetic
(2 x non-embedding parameters x padded tokens, plus attention's 4 x layers x hidden x length^2 per text) over the
time, against ``hardware.peak`` in the path's precision (int8 paths keep softmax, LayerNorm and GELU in fp32, so
their share is a floor). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from emoclf import hardware
from emoclf.config import DataConfig
from emoclf.data import load_labelled
from emoclf.export import compare, convert, torch_to_onnx
from emoclf.inference import OnnxBackend, Predictor
from emoclf.modeling import BundleMeta, load_bundle

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "emotion" / "val.txt"
CALIBRATION = DATA.with_name("train.txt")
log = logging.getLogger("benchmarks.int8")


class Calibration:
    """``onnxruntime.quantization.CalibrationDataReader``: the texts in tokenised batches of 16."""

    def __init__(self, predictor: Predictor, texts: list[str]) -> None:
        clean = predictor.clean(texts)
        self.texts = len(clean)
        names = predictor.input_names
        self.batches = []
        for i in range(0, len(clean), 16):
            enc = predictor.tokenizer(clean[i : i + 16], truncation=True, max_length=predictor.meta.max_length)
            padded = predictor.tokenizer.pad({n: enc[n] for n in names}, return_tensors="np")
            self.batches.append({n: padded[n].astype(np.int64) for n in names})
        self._it = iter(self.batches)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self.batches)


def static_export(fp32: Path, raw: Path, out: Path, calibration: Calibration, attention: bool) -> Path:
    """A copy of the fp32 export whose model is ``raw`` (the unfused graph) statically quantised; ``attention``:
    attention's products of activations too. ``emoclf.json`` says how."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    graph = onnx.load(str(raw), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    products = [n.name for n in graph.node if n.op_type == "MatMul" and not weights.intersection(n.input)]
    reduce_range = not hardware.detect().int8_full_range_exact
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(fp32, out)
    calibration.rewind()
    quantize_static(
        str(raw),
        str(out / "model.onnx"),
        calibration,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=[] if attention else products,
        per_channel=True,
        reduce_range=reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    meta = json.loads((out / "emoclf.json").read_text())
    meta["export"].pop("check", None)  # computed for the fp32 model; these are scored below instead
    meta["export"]["precision"] = "int8"
    meta["export"]["quantization"] = {
        "method": "static (QDQ, MinMax calibration)",
        "weights": "int8, per output channel",
        "weight_bits": 7 if reduce_range else 8,
        "operators": "every MatMul" if attention else "MatMuls with weights",
        "calibration_texts": calibration.texts,
    }
    (out / "emoclf.json").write_text(json.dumps(meta, indent=2))
    return out


def onnx_predictor(folder: Path, batch_size: int = 64) -> Predictor:
    """The export as ``Predictor.load`` opens it, without its load-time check (a static export has none)."""
    from transformers import AutoTokenizer

    return Predictor(
        OnnxBackend(folder / "model.onnx"), AutoTokenizer.from_pretrained(folder), BundleMeta.read(folder), batch_size
    )


def forward_ops(predictor: Predictor, model: Path, texts: list[str]) -> float:
    """Arithmetic operations of one pass over ``texts`` as emoclf batches them (longest first, padded per batch)."""
    config = json.loads((model / "config.json").read_text())  # the trained folder: exports keep no config
    h, inner, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    params = layers * (4 * h * h + 2 * h * inner) + h * h  # attention projections, feed-forward, pooler
    enc = predictor.tokenizer(predictor.clean(texts), truncation=True, max_length=predictor.meta.max_length)
    lengths = np.sort(np.fromiter(map(len, enc["input_ids"]), dtype=np.int64))[::-1]
    ops = 0.0
    for i in range(0, len(lengths), predictor.batch_size):
        rows, s = len(lengths[i : i + predictor.batch_size]), int(lengths[i])
        ops += rows * (2 * params * s + 4 * layers * h * s * s)
    return ops


def single_text_ms(predictor: Predictor, texts: list[str], n: int = 300) -> dict:
    """p50/p99 milliseconds of one text per call, in process (no HTTP): the floor under the server's latency."""
    for t in texts[:20]:
        predictor.predict_proba([t])
    timings = []
    for t in texts[:n]:
        started = time.perf_counter()
        predictor.predict_proba([t])
        timings.append(time.perf_counter() - started)
    ms = np.array(timings) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def batch_invariance(predictor: Predictor, texts: list[str]) -> float:
    """Largest probability difference between each of ``texts`` alone and in one batch with the others."""
    together = predictor.predict_proba(texts)
    alone = np.concatenate([predictor.predict_proba([t]) for t in texts])
    return float(np.abs(together - alone).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "benchmarks" / "out" / "quality" / "model")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "int8")
    parser.add_argument("--calibration", type=int, default=2000, help="Calibration texts (default: 2000).")
    parser.add_argument("--calibration-data", type=Path, default=CALIBRATION, help="Default: train.txt.")
    parser.add_argument("--limit", type=int, help="Score only the first N texts (a quick check).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    # ONNX Runtime's quantiser warns on the root logger about every tensor of the fused (contrib) operators.
    logging.getLogger().setLevel(logging.ERROR)
    log.setLevel(logging.INFO)
    if not (args.model / "emoclf.json").is_file():
        sys.exit(f"{args.model}: no trained model; run `python benchmarks/quality.py` first, or pass --model")

    hw = hardware.detect()
    source = Predictor.load(args.model)
    data = load_labelled(DataConfig(data=str(args.data)), source.labels, source.preprocessor)
    if args.limit:
        data = type(data)(data.texts[: args.limit], data.y_true[: args.limit], data.source, data.split)
    exports = {
        "onnx_fp32": convert(args.model, args.out / "onnx-fp32", "fp32"),
        "onnx_int8_dynamic": convert(args.model, args.out / "onnx-int8", "int8"),
    }
    lines = args.calibration_data.read_text(encoding="utf-8").splitlines()[: args.calibration]
    calibration = Calibration(source, [line.rsplit(";", 1)[0] for line in lines if line.strip()])
    raw = args.out / "raw.onnx"
    model, tokenizer, _ = load_bundle(args.model)
    torch_to_onnx(model, tokenizer, raw)
    for name, attention in (("onnx_int8_static_matmul", False), ("onnx_int8_static_all", True)):
        try:
            exports[name] = static_export(
                exports["onnx_fp32"], raw, args.out / name.replace("_", "-"), calibration, attention
            )
        except Exception as e:  # noqa: BLE001 - a quantisation ONNX Runtime cannot make is a result too
            log.warning("%s: %s", name, e)
    peak = hw.peak()
    paths = {}
    for name, folder in exports.items():
        predictor = onnx_predictor(folder)
        try:
            scores = compare(source, predictor, data)
        except Exception as e:  # noqa: BLE001 - e.g. a QDQ graph this ONNX Runtime cannot run
            paths[name] = {"error": str(e).splitlines()[0][:300]}
            continue
        rate = scores["after"]["texts_per_second"]
        precision = "fp32" if name == "onnx_fp32" else "int8"
        gops = forward_ops(predictor, args.model, data.texts) / (len(data.texts) / rate) / 1e9
        paths[name] = {
            "texts_per_second": rate,
            "macro_f1": round(scores["after"]["macro_f1"], 4),
            "macro_f1_lost_points": scores["macro_f1_drop_points"],
            "agreement_with_pytorch": round(scores["agreement"], 4),
            "max_probability_difference": round(scores["max_probability_difference"], 4),
            "batch_invariance_max_difference": batch_invariance(predictor, data.texts[:64]),
            "single_text_p50_ms": single_text_ms(predictor, data.texts, n=200)["p50_ms"],
            "gops": round(gops, 1),
            "percent_of_peak": round(100 * gops / peak[f"{precision}_peak_gops"], 1),
            "model_mb": round((folder / "model.onnx").stat().st_size / 1e6, 1),
        }
        log.info("%s: %s", name, paths[name])
    pytorch = {
        "texts_per_second": scores["before"]["texts_per_second"],
        "macro_f1": round(scores["before"]["macro_f1"], 4),
    }
    ok = {k: v for k, v in paths.items() if "error" not in v and v["macro_f1_lost_points"] <= 0.5}
    fastest = max(ok, key=lambda k: ok[k]["texts_per_second"]) if ok else None
    print(
        json.dumps(
            {
                "benchmark": "int8",
                "model": os.path.relpath(args.model, ROOT),
                "data": args.data.name,
                "texts": len(data.texts),
                "calibration_texts": calibration.texts,
                "calibration_data": args.calibration_data.name,
                "pytorch_fp32": pytorch,
                "paths": paths,
                "fastest_within_half_a_point": fastest,
                "fastest_percent_of_peak": paths[fastest]["percent_of_peak"] if fastest else None,
                "peak": peak,
                "cpu": hw.to_dict(),
                "command": " ".join(["python", "benchmarks/int8.py", *sys.argv[1:]]),
            }
        )
    )


if __name__ == "__main__":
    main()
