"""Shared fixtures: a tiny random BERT (2 layers, hidden 32) with a vocabulary built from the demo set.

Built once per session so that training tests take seconds on 2 CPU cores.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
EMOTION_DIR = REPO.parent / "shared" / "data" / "emotion"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_tiny_model(folder: Path) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    from emoclf.data.io import demo_path

    words = Counter(w for t in pd.read_csv(demo_path())["text"] for w in re.findall(r"\w+|[^\w\s]", t.lower()))
    vocab = SPECIALS + sorted(words)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab={tok: i for i, tok in enumerate(vocab)}, do_lower_case=True, model_max_length=128)
    assert len(tokenizer) == len(vocab)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)  # the same tiny model every session, so learning thresholds are stable
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_model):
    """One tiny training on the demo data, shared by tests that only read its outputs."""
    from emoclf.config import Config
    from emoclf.training import train

    out = tmp_path_factory.mktemp("trained")
    cfg = Config().replace(
        model=str(tiny_model),
        epochs=8.0,
        learning_rate=3e-3,
        output_dir=str(out),
        tracking=False,
        batch_size=16,
        patience=4,
        # precision auto trains in bf16 on CPUs with AMX, where this tiny model learns less: one precision on
        # every CPU keeps the thresholds of the tests that read this model the same.
        precision="fp32",
    )
    return train(cfg)


MULTI_LABELS = ["anger", "fear", "joy", "love", "sadness", "surprise"]


def write_multi_label_csv(path: Path, rows: int = 400, seed: int = 0) -> Path:
    """A small multi-label data set in the tiny model's vocabulary: demo sentences, and pairs of them joined with
    "and" labelled with both classes (about a third of the texts have two labels)."""
    import random

    from emoclf.data.io import demo_path

    demo = pd.read_csv(demo_path())
    rng = random.Random(seed)
    out = []
    for _ in range(rows):
        a = demo.iloc[rng.randrange(len(demo))]
        b = demo.iloc[rng.randrange(len(demo))]
        if rng.random() < 0.4 and a.label != b.label:
            out.append({"text": f"{a.text} and {b.text}", "label": ",".join(sorted({a.label, b.label}))})
        else:
            out.append({"text": a.text, "label": a.label})
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(out).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def multi_csv(tmp_path_factory) -> Path:
    return write_multi_label_csv(tmp_path_factory.mktemp("multi") / "multi.csv")


@pytest.fixture(scope="session")
def trained_multi(tmp_path_factory, tiny_model, multi_csv):
    """One tiny multi-label training, shared by tests that only read its outputs."""
    from emoclf.config import Config
    from emoclf.training import train

    cfg = Config().replace(
        data=str(multi_csv),
        model=str(tiny_model),
        epochs=8.0,
        learning_rate=3e-3,
        output_dir=str(tmp_path_factory.mktemp("trained-multi")),
        tracking=False,
        batch_size=16,
        patience=4,
        precision="fp32",
    )
    return train(cfg)


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium driven by Playwright, for the tests of what a person sees (pages, reports)."""
    if not CHROMIUM.is_file():
        pytest.skip(f"no browser at {CHROMIUM}: apt-get install chromium (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright (test extra)")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 (free port, SQLite backend, local artifacts) that a test can
    kill (SIGKILL, whole process group: uvicorn runs as a child of the mlflow command) and start again."""

    def __init__(self, root: Path) -> None:
        self.root, self.port, self.proc = root, free_port(), None
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self) -> MlflowServer:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--backend-store-uri",
                f"sqlite:///{self.root / 'mlflow.db'}",
                "--artifacts-destination",
                str(self.root / "artifacts"),
                "--workers",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "server.log").open("a"),
            start_new_session=True,
        )
        wait_http(f"{self.uri}/health", timeout=120, proc=self.proc)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def mlflow_server(tmp_path):
    """The URI of a real ``mlflow server`` started for this test, and stopped after it."""
    server = MlflowServer(tmp_path).start()
    yield server.uri
    server.kill()


class WritesMarker:
    """Unpickling this creates a file: what a malicious weights file could do with any code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


@pytest.fixture(scope="session")
def emotion_dir() -> Path:
    if not (EMOTION_DIR / "train.txt").is_file():
        pytest.skip(f"emotion data not found at {EMOTION_DIR}")
    return EMOTION_DIR


@pytest.fixture(autouse=True)
def _restore_console():
    """``emoclf.cli.main`` configures the terminal as for one process: its handler writes to the stderr of
    the test that ran it, and its library switches are set in os.environ. Undo both after each test."""
    import logging

    from emoclf import console

    switches = {name: os.environ.get(name) for name in (*console.QUIET_LIBRARIES, "MLFLOW_CONFIGURE_LOGGING")}
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for name, value in switches.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if console._handler is not None:
        root.removeHandler(console._handler)
        console._handler = None
    root.handlers[:], root.level = handlers, level
    logging.captureWarnings(False)
    console._bars = True


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """``emoclf predict TEXT`` runs torch on one thread, for the rest of its process; run in-process by a test, it
    would leave the next tests (and the trainings they start, whose numbers depend on it) on one thread too."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _isolate_mlflow_state():
    """MLflow keeps the active experiment in a module global and in $MLFLOW_EXPERIMENT_ID; each test
    uses its own store, so that id must not leak into the next test."""
    yield
    mlflow = sys.modules.get("mlflow")
    if mlflow is None:
        return
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.tracking.fluent._active_experiment_id = None
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
