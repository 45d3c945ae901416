"""Start-up: how long `emoclf --help` and a mistyped path take to answer, `emoclf predict` one text from a model
folder, and `emoclf serve` to answer its first request; and where predict's seconds go.

    python benchmarks/startup.py --model runs/demo/model [--repeats 3]

Each command runs as a user runs it, in a fresh process (``python -m emoclf.cli``); each figure is the best of
--repeats runs (the least disturbed by other load), as wall seconds and as the CPU seconds the process used (user +
system: on a busy machine, the closer of the two to what an idle one takes). The split of ``predict`` comes from a
fresh process that times its steps as wall and CPU seconds: the CLI, torch, the rest of ``emoclf.inference``, the
model's code (transformers imports the modules of the model's architecture on first use), loading the folder
(weights, tokenizer, checks), predicting one text (on one thread, as ``emoclf predict TEXT`` does). Prints one
JSON line, with the CPU and the load average when it started: a machine that other work keeps busy is slower.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

TEXT = "i finally got the job and i cant stop smiling"
# Run in a fresh interpreter: the steps of `emoclf predict MODEL TEXT`, each timed.
SPLIT = """
import json, resource, sys, time
def now():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), usage.ru_utime + usage.ru_stime
marks = [now()]
import emoclf.cli
marks.append(now())
import torch
marks.append(now())
from emoclf.inference import Predictor
marks.append(now())
from transformers import AutoConfig
from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING
MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING[type(AutoConfig.from_pretrained(sys.argv[1]))]
marks.append(now())
predictor = Predictor.load(sys.argv[1], num_threads=1)  # as `emoclf predict TEXT` loads it
marks.append(now())
predictor.predict([sys.argv[2]])
marks.append(now())
steps = ["cli", "torch", "emoclf_inference", "model_code", "model_load", "predict"]
print(json.dumps({s: [b[0] - a[0], b[1] - a[1]] for s, a, b in zip(steps, marks, marks[1:])}))
"""


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args: list[str]) -> tuple[float, float, str]:
    """Wall and CPU seconds of one fresh process, and what it printed."""
    cpu, started = cpu_seconds(), time.perf_counter()
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 2):  # 2: the error the path check is meant to give
        raise RuntimeError(f"{args} failed: {proc.stderr.strip()[-500:]}")
    return wall, cpu_seconds() - cpu, proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_cpu_seconds(pid: int) -> float:
    """The CPU seconds (user + system) a running process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_answer(model: str) -> tuple[float, float]:
    """Seconds from starting `emoclf serve` to its first answer to POST /predict, and the CPU seconds the server
    had used by then (not those of its shutdown afterwards)."""
    port = free_port()
    body = json.dumps({"texts": [TEXT]})
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "emoclf.cli", "--quiet", "serve", "--model", model, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"emoclf serve exited with {server.returncode}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                connection.request("POST", "/predict", body, {"content-type": "application/json"})
                if connection.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        wall, cpu = time.perf_counter() - started, process_cpu_seconds(server.pid)
    finally:
        server.terminate()
        server.wait()
    return wall, cpu


def best(measure, repeats: int) -> dict:
    results = [measure() for _ in range(repeats)]
    wall, cpu = min(r[0] for r in results), min(r[1] for r in results)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="A model folder (emoclf train's OUTPUT_DIR/model).")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not (Path(args.model) / "emoclf.json").is_file():
        sys.exit(f"{args.model}: not an emoclf model folder; train one first (docs/benchmarks.md says how)")
    load_average = os.getloadavg()[0]
    missing = str(Path(args.model) / "missing")
    cli = ["-m", "emoclf.cli"]
    splits = [json.loads(run(["-c", SPLIT, args.model, TEXT])[2]) for _ in range(args.repeats)]
    from emoclf import hardware

    out = {
        "benchmark": "startup",
        "cpu": hardware.detect().describe(),
        "load_average_at_start": round(load_average, 2),
        "help": best(lambda: run([*cli, "--help"])[:2], args.repeats),
        "path_error": best(lambda: run([*cli, "evaluate", missing, "--model", missing])[:2], args.repeats),
        "predict_one_text": best(lambda: run([*cli, "predict", "--model", args.model, TEXT])[:2], args.repeats),
        # per step: [wall, cpu] seconds, each the best of the runs
        "predict_split_s": {
            k: [round(min(s[k][0] for s in splits), 2), round(min(s[k][1] for s in splits), 2)] for k in splits[0]
        },
        "serve_first_answer": best(lambda: first_answer(args.model), args.repeats),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
