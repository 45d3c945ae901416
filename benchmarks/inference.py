"""Inference speed: the transformers pipeline against emoclf's PyTorch and ONNX paths, plus HTTP latency.

    python benchmarks/inference.py [--model benchmarks/out/quality/model] [--data ../shared/data/emotion/val.txt]
                                   [--limit N] [--repeats 3] [--requests 500]

The model is the one ``benchmarks/quality.py`` trains with the default config. Every path
classifies the same texts (in file order) after a warm-up; each figure is the best of --repeats.
Paths: the transformers ``pipeline`` (fp32, batch_size=32: what a user would write), emoclf's
PyTorch path in fp32 (and bf16 weights on CPUs with AMX/AVX512-BF16), ONNX fp32 and ONNX int8
exports (int8 weights chosen for this CPU by ``emoclf export``'s rule, recorded in the JSON). Then
``emoclf serve`` runs the int8 export and single-text requests measure p50/p99
latency over HTTP (keep-alive connection, as a client library would use). Each emoclf path's
``percent_of_peak``: its arithmetic (``int8.forward_ops``) against ``hardware.peak`` in its precision.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from emoclf import hardware

# OpenMP reads how its threads wait when torch loads: measured as the emoclf command runs.
hardware.configure_threads()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from int8 import forward_ops, single_text_ms  # noqa: E402

from emoclf.config import DataConfig  # noqa: E402
from emoclf.data import Labelled, load_labelled  # noqa: E402
from emoclf.evaluation.evaluate import evaluate  # noqa: E402
from emoclf.evaluation.metrics import macro_f1  # noqa: E402
from emoclf.export import convert  # noqa: E402
from emoclf.inference import Predictor  # noqa: E402
from emoclf.modeling import BundleMeta  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("benchmarks.inference")


def timed(run, n: int, repeats: int):
    """Texts per second of the fastest of ``repeats`` calls (the least disturbed by other load), and the result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return n / best, result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"emoclf serve exited with {server.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"emoclf serve did not answer on port {port} within {timeout}s")


def bench_pipeline(model: Path, texts: list[str], y_true: np.ndarray, labels: list[str], repeats: int) -> dict:
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(model), device=-1)
    pipe(texts[:32], batch_size=32, truncation=True)
    rate, out = timed(lambda: pipe(texts, batch_size=32, truncation=True), len(texts), repeats)
    pred = np.array([labels.index(o["label"]) for o in out])
    return {"texts_per_second": round(rate, 1), "macro_f1": round(macro_f1(y_true, pred), 4)}


def bench_predictor(predictor: Predictor, data: Labelled, repeats: int) -> dict:
    """emoclf's own evaluation, run ``repeats`` times after a warm-up; the fastest run counts."""
    predictor.predict_proba(data.texts[: predictor.batch_size])
    best = max((evaluate(predictor, data) for _ in range(repeats)), key=lambda r: r.texts_per_second)
    return {"texts_per_second": round(best.texts_per_second, 1), "macro_f1": round(best.metrics["macro_f1"], 4)}


def levers(export: Path, data: Labelled, repeats: int, cores: int) -> dict:
    """The ONNX Runtime settings around the int8 export: threads, graph optimisation, batch size, and
    the single-text floor, each changed alone from emoclf's default (all cores, every optimisation, 64)."""
    from transformers import AutoTokenizer

    from emoclf.inference import OnnxBackend

    tokenizer, meta = AutoTokenizer.from_pretrained(export), BundleMeta.read(export)

    def predictor(threads=cores, optimization="all", batch_size=64) -> Predictor:
        return Predictor(OnnxBackend(export / "model.onnx", threads, optimization), tokenizer, meta, batch_size)

    p = predictor()
    started = time.perf_counter()
    clean = p.clean(data.texts)
    cleaned = time.perf_counter()
    p.tokenizer(clean, truncation=True, max_length=meta.max_length)
    tokenized = time.perf_counter()
    p.predict_proba(data.texts)
    total = time.perf_counter() - tokenized
    out = {
        "time_shares": {
            "preprocessing": round((cleaned - started) / total, 3),
            "tokenisation": round((tokenized - cleaned) / total, 3),
            "model_and_rest": round(1 - (tokenized - started) / total, 3),
        }
    }
    for threads in sorted({1, cores}):
        p = predictor(threads=threads)
        out[f"threads_{threads}"] = {**bench_predictor(p, data, repeats), "single_text": single_text_ms(p, data.texts)}
    for level in ("basic", "extended"):
        out[f"optimization_{level}"] = bench_predictor(predictor(optimization=level), data, repeats)
    for size in (16, 32, 128):
        out[f"batch_{size}"] = bench_predictor(predictor(batch_size=size), data, repeats)
    return out


def http_latency(export: Path, texts: list[str], requests: int, log_file: Path) -> dict:
    """p50/p99 milliseconds of single-text POST /predict to a real ``emoclf serve`` process."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "emoclf.cli", "--quiet", "serve", "--model", str(export), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=log_file.open("w"),
    )
    try:
        wait_ready(port, server)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        timings = []
        for i in range(requests + 50):
            body = json.dumps({"texts": [texts[i % len(texts)]]})
            started = time.perf_counter()
            conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"POST /predict answered {response.status}")
            if i >= 50:  # the first requests warm caches and connection pools
                timings.append(time.perf_counter() - started)
        conn.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    ms = np.array(timings) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "requests": requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        type=Path,
        default=ROOT / "benchmarks" / "out" / "quality" / "model",
        help="Saved model folder (default: the one benchmarks/quality.py trains).",
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "emotion" / "val.txt")
    parser.add_argument("--limit", type=int, help="Use only the first N texts (a quick check).")
    parser.add_argument("--batch-size", type=int, default=64, help="emoclf's batch size (default: 64).")
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs per path; the best counts (default: 3).")
    parser.add_argument("--requests", type=int, default=500, help="Single-text HTTP requests (default: 500).")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "inference", help="Export folder.")
    parser.add_argument(
        "--levers",
        action="store_true",
        help="Also measure ONNX Runtime threads, graph optimisation levels and batch sizes on the int8 "
        "export, and single-text latency in process.",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    for noisy in (
        "transformers",
        "onnxruntime",
        "onnx_model",
        "onnx_model_bert",
        "fusion_base",
        "fusion_utils",
        "fusion_attention",
        "fusion_embedlayer",
        "fusion_skiplayernorm",
        "fusion_biasgelu",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not (args.model / "emoclf.json").is_file():
        sys.exit(
            f"{args.model}: no trained model; run `python benchmarks/quality.py` first (it writes "
            "benchmarks/out/quality/model), or pass --model"
        )

    hw = hardware.detect()
    threads = hw.cores
    torch.set_num_threads(threads)
    reference = Predictor.load(args.model, batch_size=args.batch_size)
    full = load_labelled(DataConfig(data=str(args.data)), reference.labels, reference.preprocessor)
    data = Labelled(full.texts[: args.limit], full.y_true[: args.limit], full.source, full.split)
    texts, y_true, labels = data.texts, data.y_true, reference.labels

    paths = {"pipeline_fp32": bench_pipeline(args.model, texts, y_true, labels, args.repeats)}
    log.info("pipeline: %s", paths["pipeline_fp32"])
    paths["pytorch_fp32"] = bench_predictor(reference, data, args.repeats)
    log.info("pytorch fp32: %s", paths["pytorch_fp32"])
    if hw.amx or hw.avx512_bf16:  # measured where the CPU has bf16 instructions, to show whether they pay
        paths["pytorch_bf16"] = bench_predictor(
            Predictor.load(args.model, args.batch_size, precision="bf16"), data, args.repeats
        )
        log.info("pytorch bf16: %s", paths["pytorch_bf16"])
    exports = {}
    for precision in ("fp32", "int8"):
        exports[precision] = convert(args.model, args.out / f"onnx-{precision}", precision)
        paths[f"onnx_{precision}"] = bench_predictor(
            Predictor.load(exports[precision], args.batch_size), data, args.repeats
        )
        log.info("onnx %s: %s", precision, paths[f"onnx_{precision}"])

    fastest = max(paths, key=lambda k: paths[k]["texts_per_second"])
    # Each emoclf path's share of this CPU's peak in its precision (int8 paths keep softmax and LayerNorm in fp32).
    ops_per_text = forward_ops(reference, args.model, texts) / len(texts)
    peak = hw.peak(threads)
    for name, row in paths.items():
        if name != "pipeline_fp32":
            gops = row["texts_per_second"] * ops_per_text / 1e9
            row["percent_of_peak"] = round(100 * gops / peak[f"{name.rsplit('_', 1)[1]}_peak_gops"], 1)
    base = paths["pipeline_fp32"]["texts_per_second"]
    latency = http_latency(exports["int8"], texts, args.requests, args.out / "serve.log")
    extra = {"levers": levers(exports["int8"], data, args.repeats, threads)} if args.levers else {}
    print(
        json.dumps(
            {
                "benchmark": "inference",
                "model": os.path.relpath(args.model, ROOT),
                "data": args.data.name,
                "texts": len(texts),
                "threads": threads,
                "batch_size": args.batch_size,
                "paths": paths,
                "fastest": fastest,
                "speedup_vs_pipeline": round(paths[fastest]["texts_per_second"] / base, 2),
                "macro_f1_lost_points": round(
                    100 * (paths["pytorch_fp32"]["macro_f1"] - paths[fastest]["macro_f1"]), 2
                ),
                "http_single_text": {"model": "onnx_int8", **latency},
                "int8_quantization": {
                    k: v
                    for k, v in BundleMeta.read(exports["int8"]).export["quantization"].items()
                    if k in ("weight_bits", "chosen")
                },
                **extra,
                "peak": peak,
                "cpu": hw.to_dict(),
            }
        )
    )


if __name__ == "__main__":
    main()
