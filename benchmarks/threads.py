"""Thread settings alone and beside other work: which ones keep their speed when another process takes a core.

    python benchmarks/threads.py [--export DIR] [--rounds 2] [--seconds 8] [--workloads train,onnx]

Two workloads, each setting in a fresh process (OpenMP reads its wait policy when torch loads):

- ``train``: MiniLM training steps (forward, backward, AdamW) on batches of 32 texts of ``train.txt``, padded to
  the batch's longest text, as ``emoclf train`` does on a CPU; torch with 2 threads whose OpenMP workers spin
  while they wait (libgomp's default), 2 threads that sleep (``OMP_WAIT_POLICY=PASSIVE``, emoclf's default), and
  1 thread;
- ``onnx``: batches of 64 texts of ``val.txt`` through an ONNX export (``--export``, default: the int8 export
  that ``benchmarks/inference.py`` writes) with ONNX Runtime: 2 intra-op threads that spin (its default), 2 that
  sleep (``session.intra_op.allow_spinning=0``, emoclf's default), and 1 thread.

Each setting runs alone and beside a one-core busy loop (``while True: pass``) that this script starts and
stops; the settings and conditions alternate (A/B/A/B) over ``--rounds`` rounds, so drifting load from others
touches all alike. A child warms up, then works for ``--seconds``: examples per second, and the CPU seconds it
used per example (spinning shows as CPU spent waiting). ``kept`` is a setting's speed beside the busy loop over
its speed alone, the issue's measure; ``vs_best_alone`` the same over the fastest setting alone. Prints the
load average before and after and the CPU, and one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from neighbour import busy_loop

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "emotion"
# What libgomp reads about waiting; a child gets only its setting's.
OPENMP_WAITING = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
# name -> (threads, environment, ONNX Runtime session config entries)
SETTINGS = {
    "train": {
        "2 threads, spinning (libgomp default)": (2, {}, {}),
        "2 threads, passive (emoclf default)": (2, {"OMP_WAIT_POLICY": "PASSIVE"}, {}),
        "1 thread": (1, {"OMP_WAIT_POLICY": "PASSIVE"}, {}),
    },
    "onnx": {
        "2 threads, spinning (ONNX Runtime default)": (2, {}, {"session.intra_op.allow_spinning": "1"}),
        "2 threads, no spinning (emoclf default)": (2, {}, {"session.intra_op.allow_spinning": "0"}),
        "1 thread": (1, {}, {"session.intra_op.allow_spinning": "0"}),
    },
}


def texts(name: str, n: int) -> list[str]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [line.rsplit(";", 1)[0] for line in lines if line.strip()][:n]


def work_for(seconds: float, step) -> dict:
    """Run ``step`` (returns examples done) for ``seconds`` after a warm-up: examples/s and CPU s per example."""
    for _ in range(2):
        step()
    done, started, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        done += step()
    wall, used = time.perf_counter() - started, time.process_time() - cpu
    return {"examples_per_second": round(done / wall, 1), "cpu_ms_per_example": round(1000 * used / done, 2)}


def child_train(threads: int, seconds: float) -> dict:
    import torch

    torch.set_num_threads(threads)
    from emoclf.modeling import load_for_training

    tokenizer, model = load_for_training("minilm", ["a", "b", "c", "d", "e", "f"])
    sample = texts("train.txt", 3200)
    batches = [tokenizer(sample[i : i + 32], padding=True, return_tensors="pt") for i in range(0, len(sample), 32)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    labels = torch.zeros(32, dtype=torch.long)
    model.train()
    state = {"i": 0}

    def step() -> int:
        batch = batches[state["i"] % len(batches)]
        state["i"] += 1
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return 32

    return work_for(seconds, step)


def child_onnx(threads: int, entries: dict, export: Path, seconds: float) -> dict:
    import numpy as np
    import onnxruntime as ort
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(export)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    for key, value in entries.items():
        options.add_session_config_entry(key, value)
    session = ort.InferenceSession(str(export / "model.onnx"), options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    sample = sorted(texts("val.txt", 2000), key=len)
    batches = []
    for i in range(0, len(sample), 64):
        enc = tokenizer(sample[i : i + 64], padding=True, return_tensors="np")
        batches.append({k: v.astype(np.int64) for k, v in enc.items() if k in names})
    state = {"i": 0}

    def step() -> int:
        batch = batches[state["i"] % len(batches)]
        state["i"] += 1
        session.run(["logits"], batch)
        return len(batch["input_ids"])

    return work_for(seconds, step)


def run_child(workload: str, setting: str, export: Path, seconds: float, neighbour: bool) -> dict:
    threads, env, _ = SETTINGS[workload][setting]
    with busy_loop() if neighbour else contextlib.nullcontext():
        out = subprocess.run(
            [sys.executable, __file__, "--child", workload, "--setting", setting, "--export", str(export)]
            + ["--seconds", str(seconds)],
            env={**{k: v for k, v in os.environ.items() if k not in OPENMP_WAITING}, **env},
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarise(runs: dict[tuple[str, bool], list[dict]], settings: list[str]) -> dict:
    def median(setting: str, neighbour: bool, key: str = "examples_per_second") -> float:
        return statistics.median(r[key] for r in runs[setting, neighbour])

    best_alone = max(median(s, False) for s in settings)
    out = {}
    for s in settings:
        alone, beside = median(s, False), median(s, True)
        out[s] = {
            "alone": alone,
            "beside_busy_loop": beside,
            "kept": round(beside / alone, 3),
            "vs_best_alone": round(beside / best_alone, 3),
            "cpu_ms_per_example": {
                "alone": median(s, False, "cpu_ms_per_example"),
                "beside": median(s, True, "cpu_ms_per_example"),
            },
            "runs": {
                "alone": [r["examples_per_second"] for r in runs[s, False]],
                "beside": [r["examples_per_second"] for r in runs[s, True]],
            },
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=Path, default=ROOT / "benchmarks" / "out" / "inference" / "onnx-int8")
    parser.add_argument("--workloads", default="train,onnx", help="Comma-separated: train, onnx (default: both).")
    parser.add_argument("--rounds", type=int, default=2, help="Rounds over every setting and condition (default: 2).")
    parser.add_argument("--seconds", type=float, default=8.0, help="Timed seconds per child (default: 8).")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        threads, _, entries = SETTINGS[args.child][args.setting]
        result = (
            child_train(threads, args.seconds)
            if args.child == "train"
            else child_onnx(threads, entries, args.export, args.seconds)
        )
        print(json.dumps(result))
        return
    workloads = args.workloads.split(",")
    if "onnx" in workloads and not (args.export / "model.onnx").is_file():
        sys.exit(f"{args.export}: no ONNX export; run benchmarks/inference.py first or pass --export")

    from emoclf import hardware

    load_before = os.getloadavg()
    result = {"benchmark": "threads", "seconds_per_run": args.seconds, "rounds": args.rounds}
    for workload in workloads:
        settings = list(SETTINGS[workload])
        runs: dict[tuple[str, bool], list[dict]] = {(s, n): [] for s in settings for n in (False, True)}
        for _ in range(args.rounds):
            for neighbour in (False, True):
                for setting in settings:
                    runs[setting, neighbour].append(run_child(workload, setting, args.export, args.seconds, neighbour))
                    print(
                        workload,
                        setting,
                        "beside" if neighbour else "alone",
                        runs[setting, neighbour][-1],
                        file=sys.stderr,
                    )
        result[workload] = summarise(runs, settings)
    result["export"] = os.path.relpath(args.export, ROOT) if "onnx" in workloads else None
    result["load_average"] = {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)}
    result["cpu"] = hardware.detect().to_dict()
    result["command"] = " ".join(["python", "benchmarks/threads.py", *sys.argv[1:]])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
