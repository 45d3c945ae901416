"""Predict from a saved model folder, an ONNX export or an MLflow model URI, applying the saved preprocessing.

``Predictor.load(source)`` accepts a bundle folder (``emoclf train`` output), an exported folder
(``emoclf export``: ``model.onnx`` next to ``emoclf.json``, run by ONNX Runtime), or ``runs:/...``
/ ``models:/...`` URIs of a logged emoclf model. Every source gets the same front end: saved
preprocessing, one tokenisation of all texts, batches of similar token counts (little padding),
saved class bias and temperature, results in input order. Only the backend that turns token ids into
logits differs.
"""

from __future__ import annotations

import inspect
import logging
import threading
import typing
from pathlib import Path

import numpy as np
import torch

from emoclf import console, hardware
from emoclf.config import MLFLOW_SCHEMES, PredictPrecision
from emoclf.errors import ConfigError, EmptyTextError, ModelLoadError, PredictionError, TrackingError
from emoclf.hierarchy import Hierarchy
from emoclf.layout import META_FILE, ONNX_FILE
from emoclf.modeling import BundleMeta, load_bundle
from emoclf.predictions import MultiLabelPrediction, Prediction, records
from emoclf.preprocess import Preprocessor
from emoclf.stores import download
from emoclf.task import task_for

log = logging.getLogger(__name__)

PRECISIONS = typing.get_args(PredictPrecision)


def resolve_source(source: str | Path) -> Path:
    """A local bundle folder for ``source``, downloading MLflow model URIs first."""
    text = str(source)
    if not text.startswith(MLFLOW_SCHEMES):
        return Path(source)
    try:
        local = download(text)
    except TrackingError as e:
        raise ModelLoadError(f"cannot load {text}: {e}") from None
    hits = sorted(local.rglob(META_FILE))
    if not hits:
        raise ModelLoadError(f"{text}: no emoclf model inside ({META_FILE} not found)")
    return hits[0].parent


def is_export(folder: Path) -> bool:
    return (folder / ONNX_FILE).is_file()


# Texts every export is checked on: probabilities computed where it was exported are stored with it
# and recomputed wherever it is loaded, so an export that computes differently on another CPU (int8
# weights that saturate without VNNI, a runtime that changed) is refused instead of trusted.
CHECK_TEXTS = (
    "i feel so happy and grateful today",
    "why does nobody ever listen to me",
    "i am scared of what comes next",
    "this makes me so angry i could scream",
    "i love you more than words can say",
    "wow i did not expect that at all",
    "ok",
    "i feel",
    "@user look at http://example.com now",
    "i have been feeling a little lost lately but i think things are slowly starting to get better for me",
    "i cant believe how much i miss my friends from school every single day",
    "i was shocked and amazed when they told me i had won the competition after all those years of trying",
    "feeling mellow",
    "i hate waiting",
    "so thrilled",
    "i am terrified of spiders and snakes and dark rooms",
)
# Dynamic int8 quantisation scales each batch's activations by that batch's range, so a text's probabilities
# depend on the texts batched with it: the check texts are always run as one batch (check_probabilities),
# whatever batch size predicts, as they were where the export was made.
# Identical kernels give identical int8 results and fp32 results within ~1e-7 on any x86 CPU (measured
# under qemu's Haswell emulation, tests/test_export.py); saturating int8 kernels move them by 1e-2 to 1e-1.
CHECK_TOLERANCE = 1e-3


class TorchBackend:
    """The transformers model as trained, in fp32 or, opt-in, with bf16 weights.

    bf16 pays on CPUs with AMX and on GPUs (docs/inference-speed.md), and it moves probabilities
    slightly, so it is never the default: the default predicts exactly as the model was evaluated.
    The weights are cast once rather than under autocast, which re-casts them on every call.
    """

    name = "pytorch"

    def __init__(self, model, precision: str = "fp32") -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
        self.model = model.to(torch.bfloat16) if precision == "bf16" else model
        self.precision = precision
        self.input_names = set(inspect.signature(model.forward).parameters)

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        device = self.model.device
        with torch.inference_mode():
            logits = self.model(**{k: torch.from_numpy(v).to(device) for k, v in batch.items()}).logits
        return logits.float().cpu().numpy()


class OnnxBackend:
    """An ONNX Runtime session with every graph optimisation and one intra-op thread per usable core, whose
    threads sleep while they wait for work instead of spinning."""

    name = "onnxruntime"

    def __init__(self, path: Path, num_threads: int | None = None, optimization: str = "all") -> None:
        try:
            import onnxruntime as ort
        except ModuleNotFoundError:
            raise ModelLoadError(
                f"{path}: running an ONNX export needs onnxruntime (pip install 'emoclf[export]')"
            ) from None
        options = ort.SessionOptions()
        options.graph_optimization_level = {
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[optimization]
        options.intra_op_num_threads = num_threads or hardware.detect().cores
        # One batch at a time per call: a second pool for parallel branches would only compete for the cores.
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # A spinning thread holds a core another process may need; every parallel operator then waits for the
        # thread the scheduler parked (docs/inference-speed.md, "Beside other work").
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # ONNX Runtime raises its own exception types for corrupt or foreign files
            raise ModelLoadError(f"{path}: ONNX Runtime cannot load it: {e}") from None
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.provider = self.session.get_providers()[0]

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(["logits"], batch)[0].astype(np.float32, copy=False)


def open_model(folder: Path, source: str | Path, precision: str, num_threads: int | None):
    """Backend, tokenizer and meta of a bundle folder (PyTorch, in ``precision``) or an export (ONNX Runtime)."""
    if not is_export(folder):
        if num_threads:
            torch.set_num_threads(num_threads)
        model, tokenizer, meta = load_bundle(folder)
        return TorchBackend(model, precision), tokenizer, meta
    if precision != "fp32":
        raise ConfigError(
            f"{source}: an ONNX export's precision is fixed when exporting "
            f"({BundleMeta.read(folder).export.get('precision')}); "
            f"precision={precision!r} applies to PyTorch models only"
        )
    from transformers import AutoTokenizer

    return OnnxBackend(folder / ONNX_FILE, num_threads), AutoTokenizer.from_pretrained(folder), BundleMeta.read(folder)


class Predictor:
    """Batch prediction with the preprocessing, labels, class bias and temperature saved with the model.

    ``Predictor.load(source)`` takes a model folder, an ONNX export or an MLflow model URI; each predicts as
    it was evaluated: ``Predictor.load("runs/latest/model").predict(["i feel great"])[0].label`` is ``'joy'``.

    Thread-safe: concurrent calls (an HTTP server's worker threads) share one backend; only the
    tokenizer, whose Rust side is not re-entrant, is called under a lock.
    """

    def __init__(self, backend: TorchBackend | OnnxBackend, tokenizer, meta: BundleMeta, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.backend, self.tokenizer, self.meta = backend, tokenizer, meta
        self.labels = meta.labels
        self.task = task_for(meta.task)  # single- or multi-label: how logits become probabilities and labels
        # Groups of labels when the model was trained with a hierarchy: predictions then carry the group.
        self.hierarchy = Hierarchy.from_dict(meta.hierarchy, meta.labels) if meta.hierarchy else None
        self.preprocessor = Preprocessor.from_dict(meta.preprocess)
        self.batch_size = batch_size
        self.input_names = [n for n in tokenizer.model_input_names if n in backend.input_names]
        self.source: str | None = None  # what load() was given, for reports and /metadata
        self.folder: Path | None = None  # the model folder it was loaded from (an MLflow model: its download)
        self._tokenizer_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        source: str | Path,
        batch_size: int = 64,
        precision: str = "fp32",
        num_threads: int | None = None,
        threshold: float | None = None,
    ) -> Predictor:
        """Load ``source``: a model folder (``emoclf train``), an export folder (``emoclf export``, run by ONNX
        Runtime) or an MLflow model URI (``runs:/<run id>/<name>``, ``models:/<name>/<version>``).

        ``precision`` (PyTorch models): ``fp32`` predicts as evaluated; ``bf16`` weights are faster on CPUs with
        AMX and on GPUs. ``num_threads``: CPU threads (default: torch's; ONNX: one per usable core). ``threshold``
        (multi-label models): one decision threshold for every label instead of the thresholds saved with the
        model. A missing, damaged or foreign folder raises ``ModelLoadError``, one line saying what is wrong.
        """
        folder = resolve_source(source)
        backend, tokenizer, meta = open_model(folder, source, precision, num_threads)
        predictor = cls(backend, tokenizer, meta, batch_size)
        predictor.source, predictor.folder = str(source), folder
        if threshold is not None:
            predictor.override_threshold(threshold)
        if is_export(folder):
            check_export(predictor, folder)
        log.debug("loaded %s with %s", source, backend.name)
        return predictor

    @property
    def batch_invariant(self) -> bool:
        """Whether each text's probabilities are the same whatever texts share its batch, so that concurrent requests
        may share a model call and still get their own answers (within 1e-5). fp32 only: bf16 and fp16 round
        differently with other batch shapes, and dynamic int8 quantisation scales each batch's activations by the
        batch's own range (a MiniLM's probabilities moved by up to 0.06: docs/inference-speed.md)."""
        return (self.meta.export["precision"] if self.meta.export else self.backend.precision) == "fp32"

    def override_threshold(self, threshold: float) -> None:
        """Decide every label at ``threshold`` instead of the thresholds fitted on validation (multi-label)."""
        if not self.task.multi_label:
            raise ConfigError(
                f"--threshold applies to multi-label models; {self.source or 'this model'} is single-label "
                "(its label is the most probable class)"
            )
        if not 0.0 < threshold < 1.0:
            raise ConfigError(f"threshold must be between 0 and 1 (exclusive), got {threshold}")
        self.meta.thresholds = [threshold] * len(self.labels)

    def clean(self, texts: list[str]) -> list[str]:
        """The saved preprocessing applied to ``texts``; a single string is refused, not read letter by letter."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, got one str; pass [text] to classify a single text")
        texts = list(texts)
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise TypeError(f"texts[{bad}] is {type(texts[bad]).__name__} {texts[bad]!r}, not str")
        return self.preprocessor.batch(texts)

    def _raw_logits(
        self, clean: list[str], progress: bool, batch_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Logits of preprocessed texts, and the tokens the model read of each (at most ``max_length``)."""
        with self._tokenizer_lock:
            enc = self.tokenizer(
                clean,
                truncation=True,
                max_length=self.meta.max_length,
                return_token_type_ids="token_type_ids" in self.input_names,
            )
        lengths = np.fromiter(map(len, enc["input_ids"]), dtype=np.int64, count=len(clean))
        # Longest first: the biggest batch allocates first, and equal token counts share a batch (no padding waste).
        order = np.argsort(-lengths, kind="stable")
        out = np.zeros((len(clean), len(self.labels)), dtype=np.float32)
        batch_size = batch_size or self.batch_size
        starts = range(0, len(clean), batch_size)
        if progress and len(starts) > 1:  # no bar object at all otherwise: a single text is a hot path
            starts = console.progress(starts, desc="predict", unit="batch")
        for start in starts:
            rows = order[start : start + batch_size]
            with self._tokenizer_lock:
                batch = self.tokenizer.pad(
                    {n: [enc[n][i] for i in rows] for n in self.input_names}, return_tensors="np"
                )
            out[rows] = self.backend({n: batch[n].astype(np.int64, copy=False) for n in self.input_names})
        return out, lengths

    def _probabilities(
        self, clean: list[str], progress: bool, batch_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if not clean:
            return np.zeros((0, len(self.labels)), dtype=np.float32), np.zeros(0, dtype=np.int64)
        logits, lengths = self._raw_logits(clean, progress, batch_size)
        probs = self.task.probabilities(logits, self.meta.temperature, self.meta.class_bias)
        broken = np.flatnonzero(~np.isfinite(probs).all(axis=1))
        if len(broken):
            raise PredictionError(
                f"the model computed non-finite probabilities for {len(broken)} of {len(clean)} "
                f"text(s) (first: texts[{broken[0]}]); it is broken: retrain or re-export it"
            )
        return probs, lengths

    def probabilities(self, clean: list[str], progress: bool, batch_size: int | None = None) -> np.ndarray:
        """Probabilities of preprocessed texts, in batches of ``batch_size`` (default: the predictor's)."""
        return self._probabilities(clean, progress, batch_size)[0]

    def scores(self, clean: list[str], progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities of preprocessed texts (none empty), and which of them are longer than the model reads
        (``max_length`` tokens: only their start was classified), from one tokenisation."""
        probs, lengths = self._probabilities(clean, progress)
        cut = np.zeros(len(clean), dtype=bool)
        full = np.flatnonzero(lengths >= self.meta.max_length)
        if len(full):  # only a text that fills max_length may have been cut: counted again, untruncated
            with self._tokenizer_lock:  # `verbose=False`: no warning about the model's limit
                ids = self.tokenizer([clean[i] for i in full], verbose=False)["input_ids"]
            cut[full] = np.fromiter(map(len, ids), dtype=np.int64, count=len(full)) > self.meta.max_length
        return probs, cut

    def _refuse_empty(self, texts: list[str], clean: list[str]) -> None:
        empty = [i for i, t in enumerate(clean) if not t]
        if empty:
            shown = ", ".join(f"texts[{i}] {texts[i][:40]!r}" for i in empty[:3])
            raise EmptyTextError(
                f"{len(empty)} text(s) are empty after preprocessing ({shown}{', ...' if len(empty) > 3 else ''}): "
                "only emoji, punctuation or invisible characters, which the model's preprocessing removes; "
                "there is nothing to classify",
                empty,
            )

    def logits(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Raw logits (before temperature and class bias), one row per text in input order, columns in
        ``self.labels`` order. Raises ``EmptyTextError`` for texts that preprocessing leaves empty."""
        clean = self.clean(texts)
        self._refuse_empty(list(texts), clean)
        return self._raw_logits(clean, progress)[0] if clean else np.zeros((0, len(self.labels)), dtype=np.float32)

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """The labels each row of probabilities gets, as a texts x labels indicator: the most probable class, or
        (multi-label) every label over its saved threshold."""
        return self.task.decide(probs, self.meta.thresholds, self.meta.allow_no_label)

    def predict_proba(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Class probabilities (saved class bias and temperature applied), rows in input order; for a multi-label
        model each label's own probability.

        Raises ``EmptyTextError`` when a text is empty after preprocessing (emoji or punctuation only):
        such a text gets no label rather than a guess.
        """
        clean = self.clean(texts)
        self._refuse_empty(list(texts), clean)
        return self.probabilities(clean, progress)

    def predict(self, texts: list[str], progress: bool = False) -> list[Prediction] | list[MultiLabelPrediction]:
        """One record per raw text (a list), in input order; the saved preprocessing is applied here. A
        ``Prediction``: ``label``, ``probability`` (the label's) and ``probabilities`` (every class's, summing to
        1), with a hierarchy ``group`` and ``group_probability``. From a multi-label model a
        ``MultiLabelPrediction``: ``labels`` (every label over its threshold, most probable first) and
        ``probabilities`` (every label's), with a hierarchy ``groups``. Both say whether the text was
        ``truncated`` (cut at ``max_length`` tokens).

        Raises ``EmptyTextError`` when a text is empty after preprocessing (only emoji or punctuation): it gets
        no label rather than a guess (``predictions_frame`` keeps such rows, marked ``skipped``).
        """
        clean = self.clean(texts)
        self._refuse_empty(list(texts), clean)
        return self.records(*self.scores(clean, progress))

    def records(self, probs: np.ndarray, truncated: np.ndarray) -> list[Prediction] | list[MultiLabelPrediction]:
        """The records of ``scores``' probabilities and cut texts."""
        return records(self.task, probs, self.decide(probs), self.labels, self.hierarchy, truncated)


def check_probabilities(predictor: Predictor, texts: list[str]) -> np.ndarray:
    """``texts`` (the check texts) as one batch, whatever ``predictor.batch_size`` is (see ``CHECK_TEXTS``)."""
    return predictor.probabilities(predictor.clean(texts), False, batch_size=len(texts))


def check_export(predictor: Predictor, folder: Path) -> None:
    """Refuse an export whose outputs here differ from those measured where it was exported."""
    check = predictor.meta.export.get("check")
    if not check or predictor.backend.provider != check.get("provider"):
        # Another execution provider (CUDA) rounds differently by design; the check compares like with like.
        return
    expected = np.asarray(check["probabilities"], dtype=np.float32)
    got = check_probabilities(predictor, list(check["texts"]))
    difference = float(np.abs(got - expected).max())
    if not difference <= check["tolerance"]:  # NaN fails too
        here = hardware.detect()
        why = ""
        quantization = predictor.meta.export.get("quantization") or {}
        if quantization.get("weight_bits") == 8 and not here.int8_full_range_exact:
            why = (
                " Its 8-bit int8 weights need VNNI or AMX: this CPU adds pairs of int8 products in 16 bits, "
                "which saturate; --portable exports 7-bit weights that are exact on every CPU."
            )
        raise ModelLoadError(
            f"{folder}: this export computes different probabilities here ({here.describe()}) than where it "
            f"was exported ({check.get('hardware', 'unknown')}): max difference {difference:.4g} on its "
            f"{len(expected)} check texts, tolerance {check['tolerance']:g}.{why} Export it again "
            f"(emoclf export --model {predictor.meta.export.get('source', 'MODEL')} ...) and load that instead"
        )
