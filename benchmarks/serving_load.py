"""Concurrent clients against ``emoclf serve``: texts/s and latency per level, for each way of serving (``ARMS``).

    python benchmarks/serving_load.py [--export benchmarks/out/inference/onnx-int8] [--levels 1,8,32,128]
                                      [--seconds 10] [--arms default,one-process,batching] [--beside-busy-loop]

For each arm, a real ``emoclf serve`` runs the export (its defaults: a worker process per core, each running one
model call at a time on one thread; ``one-process``: ``--workers 1``, as many one-thread calls at once as cores;
``batching``: ``--batching``, a worker per core sharing calls where the model allows) and, level by level,
that many clients each send one text of ``val.txt`` per request over its own keep-alive connection (as client
libraries do), the next as soon as the answer is back, for ``--seconds`` after a one-second warm-up: completed
texts per second and p50/p99 latency. The clients are one asyncio loop in this process (on the same machine, as
in the issue's figures: they take some CPU too). The same run measures the export's offline batch throughput
(``Predictor.predict_proba`` on the texts, batches of ``--batch-size``) and each level's share of it, and where the
time of one text goes in process: preprocessing, tokenising, padding, the model, probabilities and records, JSON;
the HTTP p50 of one client minus their sum is the server's own overhead (FastAPI, uvicorn, the hand-offs); and
the model alone on one text with ONNX Runtime's threads spinning (its default) and sleeping (emoclf's), and on one
thread: the cores' worth of such calls per second is what a server of single-text requests could answer if
everything around the model cost nothing (``model_only_ceiling``).
Prints one JSON line with the CPU (``lscpu``'s model name).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from inference import free_port, wait_ready
from neighbour import busy_loop

from emoclf import hardware
from emoclf.inference import Predictor

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "emotion" / "val.txt"
WARMUP_S = 1.0
ARMS = {"default": [], "one-process": ["--workers", "1"], "batching": ["--batching"]}


def lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return hardware.detect().cpu
    found = re.search(r"^Model name:\s*(.+)$", out, re.MULTILINE)
    return found.group(1).strip() if found else hardware.detect().cpu


async def client(port: int, texts: list[str], start: int, stop_at: float, count_from: float, out: list) -> None:
    """One keep-alive connection sending one text per request until ``stop_at``; latencies after ``count_from``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = start
    try:
        while (sent := time.perf_counter()) < stop_at:
            body = json.dumps({"texts": [texts[i % len(texts)]]}).encode()
            i += 1
            writer.write(
                b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
            await reader.readexactly(length)
            if status != 200:
                raise RuntimeError(f"POST /predict answered {status}")
            done = time.perf_counter()
            if sent >= count_from and done <= stop_at:
                out.append(done - sent)
    finally:
        writer.close()


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) of process ``pid`` and its children so far: a server and its workers."""
    import psutil

    root = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])


async def level(port: int, texts: list[str], clients: int, seconds: float, server_pid: int | None = None) -> dict:
    count_from = time.perf_counter() + WARMUP_S
    stop_at = count_from + seconds
    latencies: list[float] = []
    step = max(1, len(texts) // clients)
    runs = [asyncio.create_task(client(port, texts, k * step, stop_at, count_from, latencies)) for k in range(clients)]
    await asyncio.sleep(max(0.0, count_from - time.perf_counter()))
    cpu_before = cpu_seconds(server_pid) if server_pid else None
    await asyncio.gather(*runs)
    ms = np.array(latencies) * 1000
    out = {
        "texts_per_second": round(len(latencies) / seconds, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "requests": len(latencies),
    }
    if server_pid:  # the last answers come in just after stop_at: a close enough window for a per-request figure
        out["server_cpu_ms_per_request"] = round(1000 * (cpu_seconds(server_pid) - cpu_before) / len(latencies), 2)
    return out


def serve_arm(export: Path, arm: str, levels: list[int], seconds: float, texts: list[str], log_file: Path) -> dict:
    port = free_port()
    command = [sys.executable, "-m", "emoclf.cli", "--quiet", "serve", "--model", str(export), "--port", str(port)]
    server = subprocess.Popen(command + ARMS[arm], stdout=subprocess.DEVNULL, stderr=log_file.open("w"))
    try:
        wait_ready(port, server)
        return {str(n): asyncio.run(level(port, texts, n, seconds, server.pid)) for n in levels}
    finally:
        server.terminate()
        server.wait(timeout=30)


def offline(predictor: Predictor, texts: list[str], repeats: int = 3) -> float:
    """Texts per second of the export's batch path: the fastest of ``repeats`` passes after a warm-up."""
    predictor.predict_proba(texts[: predictor.batch_size])
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.predict_proba(texts)
        best = min(best, time.perf_counter() - started)
    return round(len(texts) / best, 1)


def one_text_stages(predictor: Predictor, texts: list[str], n: int = 300) -> dict:
    """Median milliseconds of each stage of one text in process, as the server runs them."""
    stages: dict[str, list[float]] = {k: [] for k in ("preprocess", "tokenise", "pad", "model", "records", "json")}
    names = predictor.input_names
    for k, text in enumerate(texts[: n + 20]):
        t0 = time.perf_counter()
        clean = predictor.clean([text])
        t1 = time.perf_counter()
        enc = predictor.tokenizer(clean, truncation=True, max_length=predictor.meta.max_length)
        t2 = time.perf_counter()
        batch = predictor.tokenizer.pad({m: enc[m] for m in names}, return_tensors="np")
        t3 = time.perf_counter()
        logits = predictor.backend({m: batch[m].astype(np.int64, copy=False) for m in names})
        t4 = time.perf_counter()
        probs = predictor.task.probabilities(logits, predictor.meta.temperature, predictor.meta.class_bias)
        record = predictor.records(probs, np.zeros(1, dtype=bool))
        t5 = time.perf_counter()
        json.dumps({"predictions": [asdict(r) for r in record]})
        t6 = time.perf_counter()
        if k >= 20:  # warm-up
            for name, (a, b) in zip(stages, [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t5, t6)]):
                stages[name].append(1000 * (b - a))
    out = {name: round(statistics.median(v), 3) for name, v in stages.items()}
    out["sum"] = round(sum(out.values()), 3)
    return out


def spinning_model_ms(export: Path, predictor: Predictor, texts: list[str], n: int = 300) -> dict:
    """Median ms of the model alone on one text with ONNX Runtime's threads spinning (its default) and sleeping
    (emoclf's): what sleeping costs a lone request, each thread woken for every parallel operator."""
    import onnxruntime as ort

    names = predictor.input_names
    batches = []
    for text in texts[: n + 20]:
        enc = predictor.tokenizer(predictor.clean([text]), truncation=True, max_length=predictor.meta.max_length)
        batches.append({m: np.asarray(enc[m], dtype=np.int64) for m in names})
    out = {}
    for threads, spinning in ((hardware.detect().cores, "1"), (hardware.detect().cores, "0"), (1, "0")):
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        session = ort.InferenceSession(str(export / "model.onnx"), options, providers=["CPUExecutionProvider"])
        timings = []
        for k, batch in enumerate(batches):
            started = time.perf_counter()
            session.run(["logits"], batch)
            if k >= 20:
                timings.append(1000 * (time.perf_counter() - started))
        name = "one_thread" if threads == 1 else "spinning" if spinning == "1" else "sleeping"
        out[name] = round(statistics.median(timings), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=Path, default=ROOT / "benchmarks" / "out" / "inference" / "onnx-int8")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--levels", default="1,8,32,128", help="Concurrent clients, comma-separated.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Timed seconds per level (default: 10).")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"Comma-separated, of: {', '.join(ARMS)}.")
    parser.add_argument("--batch-size", type=int, default=64, help="Offline batch size (default: 64).")
    parser.add_argument("--beside-busy-loop", action="store_true", help="Run everything beside a one-core busy loop.")
    args = parser.parse_args()
    if not (args.export / "model.onnx").is_file() and not (args.export / "emoclf.json").is_file():
        sys.exit(f"{args.export}: no model or export; run benchmarks/inference.py first (it writes the exports)")
    lines = args.data.read_text(encoding="utf-8").splitlines()
    texts = [line.rsplit(";", 1)[0] for line in lines if line.strip()]
    levels = [int(n) for n in args.levels.split(",")]
    out = args.export.parent / "serving_load"
    out.mkdir(parents=True, exist_ok=True)

    load_before = os.getloadavg()
    with busy_loop() if args.beside_busy_loop else contextlib.nullcontext():
        predictor = Predictor.load(args.export, batch_size=args.batch_size)
        offline_rate = offline(predictor, texts)
        stages = one_text_stages(predictor, texts)
        spin = spinning_model_ms(args.export, predictor, texts) if (args.export / "model.onnx").is_file() else None
        del predictor
        arms = {
            arm: serve_arm(args.export, arm, levels, args.seconds, texts, out / f"serve-{arm}.log")
            for arm in args.arms.split(",")
        }
    for results in arms.values():
        for row in results.values():
            row["share_of_offline"] = round(row["texts_per_second"] / offline_rate, 3)
    ceiling = round(hardware.detect().cores * 1000 / spin["one_thread"], 1) if spin else None
    best_one = min(r["1"]["p50_ms"] for r in arms.values() if "1" in r) if "1" in map(str, levels) else None
    print(
        json.dumps(
            {
                "benchmark": "serving_load",
                "export": os.path.relpath(args.export, ROOT),
                "data": args.data.name,
                "seconds_per_level": args.seconds,
                "beside_busy_loop": args.beside_busy_loop,
                "offline_texts_per_second": offline_rate,
                "offline_batch_size": args.batch_size,
                "arms": arms,
                "one_text_in_process_ms": stages,
                "one_text_server_overhead_ms": round(best_one - stages["sum"], 3) if best_one else None,
                "one_text_model_ms_threads": spin,
                "model_only_ceiling": {
                    "texts_per_second": ceiling,
                    "share_of_offline": round(ceiling / offline_rate, 3) if ceiling else None,
                },
                "load_average": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
                "cpu": {"lscpu_model_name": lscpu_model(), **hardware.detect().to_dict()},
                "command": " ".join(["python", "benchmarks/serving_load.py", *sys.argv[1:]]),
            }
        )
    )


if __name__ == "__main__":
    main()
