"""Export a saved model to ONNX, then prove the export: the same test texts scored before and after.

``convert`` writes an export folder: ``model.onnx`` (dynamic batch and sequence axes; BERT's
attention, LayerNorm and GELU fused by ONNX Runtime's transformer optimiser; optionally int8
dynamic quantisation for CPUs or fp16 for GPUs), the tokenizer, and ``emoclf.json`` with an
``export`` entry, so ``Predictor.load`` applies the same preprocessing, labels and temperature.

int8 weights are chosen for the CPU that exports (``emoclf.hardware``): full 8-bit where int8
dot products cannot saturate (x86 with VNNI or AMX, ARM), 7-bit (ONNX Runtime's ``reduce_range``)
on x86 CPUs without VNNI, whose VPMADDUBSW adds pairs of products in int16 and saturates.
``portable=True`` asks for 7-bit anywhere. Every export stores the probabilities it gives on a few
fixed texts; ``Predictor.load`` recomputes them and refuses an export that computes differently
where it is loaded (an 8-bit export on a CPU without VNNI, say).

``export_model`` adds the evidence: accuracy and macro-F1 of source and export, how often they
agree, texts per second of each, written as ``export_report.json`` and logged to the source's
MLflow run. An export that loses more macro-F1 than allowed raises ``ExportError``.
"""

from __future__ import annotations

import inspect
import json
import logging
import shutil
import tempfile
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from emoclf import console, hardware
from emoclf.config import DataConfig, ExportPrecision
from emoclf.data import Labelled, load_labelled
from emoclf.errors import ConfigError, ExportError
from emoclf.evaluation.evaluate import evaluate
from emoclf.inference import CHECK_TEXTS, CHECK_TOLERANCE, Predictor, check_probabilities, is_export, resolve_source
from emoclf.layout import EXPORT_REPORT_FILE, ONNX_FILE
from emoclf.modelcard import write_meta_and_card
from emoclf.modeling import load_bundle, replace_folder, write_meta
from emoclf.stores import MLFLOW_SCHEMES, model_run_id, use_store
from emoclf.tracking import MLflowTracker, ended_run

log = logging.getLogger(__name__)

PRECISIONS = typing.get_args(ExportPrecision)
OPSET = 17


@dataclass
class ExportResult:
    folder: Path
    report: dict
    run_id: str | None


def torch_to_onnx(model, tokenizer, path: Path) -> None:
    """The model's graph as exported, before ONNX Runtime's fusions (what static quantisation needs to see each
    MatMul's inputs: benchmarks/int8.py)."""
    # Eager attention gives the MatMul/Softmax graph that ONNX Runtime's attention fusion recognises
    # (the SDPA graph stays unfused); the numbers are the same.
    model.set_attn_implementation("eager")
    # Graph inputs are named by position in forward(), so the names must follow its order.
    names = [n for n in inspect.signature(model.forward).parameters if n in tokenizer.model_input_names]
    sample = tokenizer(["an example", "a second, longer example"], padding=True, return_tensors="pt")
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    with warnings.catch_warnings():
        # The TorchScript exporter (dynamo=False) is deprecated but takes dynamic_axes as is and
        # emits the BERT graph ONNX Runtime's fusions are written for. Its tracer warns about the
        # mask's padding check (key and query lengths are equal in an encoder, so it is constant)
        # and about negative gather indices (there are none); tests check outputs at other shapes.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator", category=UserWarning)
        torch.onnx.export(
            model,
            (),
            str(path),
            kwargs={n: sample[n] for n in names},
            input_names=names,
            output_names=["logits"],
            dynamic_axes={**axes, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


class _QuietRoot(logging.Filter):
    """ONNX Runtime's quantiser logs on the root logger (a pre-processing advice that does not apply
    to fused graphs, one line per tensor); drop those without touching anyone else's loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def int8_settings(hw: hardware.Hardware, portable: bool | None = None) -> dict:
    """Weight bits for dynamic int8 quantisation on ``hw``, and why; recorded with the export and its report."""
    if portable is None:
        bits = 8 if hw.int8_full_range_exact else 7
        chosen = "auto"
    else:
        bits = 7 if portable else 8
        chosen = "--portable" if portable else "--no-portable"
    exact = "every CPU" if bits == 7 else "x86 CPUs with VNNI or AMX, and ARM"
    why = (
        "7-bit weights (reduce_range): no pair of u8 x s7 products overflows int16, so results are the same "
        "on every CPU"
        if bits == 7
        else "full 8-bit weights: this CPU's int8 dot products accumulate in int32 (VNNI, AMX or ARM); x86 CPUs "
        "without VNNI saturate with them, and refuse to load the export"
    )
    return {
        "method": "dynamic",
        "weights": "int8, per output channel",
        "weight_bits": bits,
        "reduce_range": bits == 7,
        "chosen": chosen,
        "exact_on": exact,
        "why": why,
        "exported_on": hw.describe(),
    }


def _optimise(raw: Path, out: Path, precision: str, config, quantization: dict | None) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    # opt_level=0: only the portable fusions are saved; hardware-specific ones happen at load time.
    fused = optimize_model(
        str(raw), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size, opt_level=0
    )
    log.info("fused operators: %s", {k: v for k, v in fused.get_fused_operator_statistics().items() if v})
    if precision == "fp16":
        # Inputs and logits stay int64/float32, so callers do not change.
        fused.convert_float_to_float16(keep_io_types=True)
    if precision != "int8":
        fused.save_model_to_file(str(out))
        return
    fused_path = raw.with_name("fused.onnx")
    fused.save_model_to_file(str(fused_path))
    root, quiet = logging.getLogger(), _QuietRoot()
    root.addFilter(quiet)
    try:
        # Per-channel scales: one per output row instead of one per matrix, closer to fp32 at the same speed.
        # Shape inference cannot type the fused (contrib) operators' outputs; they are all float.
        quantize_dynamic(
            str(fused_path),
            str(out),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=quantization["reduce_range"],
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.removeFilter(quiet)


def default_out(source: str | Path, precision: str) -> Path:
    """``runs/x/model`` exports to ``runs/x/onnx-int8``, next to its source; MLflow URIs to ``exports/onnx-int8``."""
    name = f"onnx-{precision}"
    return Path("exports", name) if str(source).startswith(MLFLOW_SCHEMES) else Path(source).parent / name


def _check(folder: Path) -> dict:
    """The export's probabilities on ``CHECK_TEXTS`` here, for ``Predictor.check_export`` wherever it is loaded."""
    predictor = Predictor.load(folder)
    probs = check_probabilities(predictor, list(CHECK_TEXTS))
    if not np.isfinite(probs).all():
        raise ExportError(f"the export computes non-finite probabilities ({folder}); the model or runtime is broken")
    return {
        "texts": list(CHECK_TEXTS),
        "probabilities": probs.round(7).tolist(),
        "tolerance": CHECK_TOLERANCE,
        "provider": predictor.backend.provider,
        "hardware": hardware.detect().describe(),
    }


def convert(source: str | Path, out: str | Path, precision: str = "fp32", portable: bool | None = None) -> Path:
    """Write the export folder for ``source`` (bundle folder or MLflow URI); a failure keeps the old folder.

    ``precision``: fp32; int8 (dynamic quantisation of the weights, for CPUs); fp16 (for GPUs).
    ``portable`` (int8): 7-bit weights, exact on every CPU; default: 8-bit where this CPU has VNNI/AMX.
    """
    return replace_folder(stage(source, out, precision, portable), Path(out))


def stage(source: str | Path, out: str | Path, precision: str = "fp32", portable: bool | None = None) -> Path:
    """The complete export of ``source`` in a temporary folder beside ``out``, for the caller to put in place
    (``replace_folder``) once it holds all it should; removed if writing it fails."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if portable is not None and precision != "int8":
        raise ConfigError(f"portable applies to int8 exports only, not {precision}")
    try:
        import onnx  # noqa: F401  (the exporter needs it; fail here with the fix, not deep in torch)
        import onnxruntime
    except ModuleNotFoundError as e:
        raise ExportError(f"exporting needs {e.name} (pip install 'emoclf[export]')") from None
    folder, out = resolve_source(source), Path(out)
    if is_export(folder):
        raise ConfigError(f"{source} is already an ONNX export; export the trained model folder instead")
    if out.resolve() == folder.resolve():
        raise ConfigError(f"--out {out} is the model folder itself; choose a new folder for the export")
    if out.is_dir() and any(out.iterdir()) and not is_export(out):
        # The folder is replaced as a whole: never delete something that is not an earlier export.
        raise ConfigError(f"--out {out} exists and is not an emoclf export; choose a new or empty folder")
    model, tokenizer, meta = load_bundle(folder)
    quantization = int8_settings(hardware.detect(), portable) if precision == "int8" else None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="emoclf-export-") as work:
            raw = Path(work) / "raw.onnx"
            torch_to_onnx(model, tokenizer, raw)
            _optimise(raw, tmp / ONNX_FILE, precision, model.config, quantization)
        tokenizer.save_pretrained(tmp)
        meta.export = {
            "format": "onnx",
            "precision": precision,
            "quantization": quantization,
            "source": str(source),
            "opset": OPSET,
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
        }
        write_meta(tmp, meta)
        meta.export["check"] = _check(tmp)
        write_meta_and_card(tmp, meta)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %s (%s, %.1f MB)", source, precision, (tmp / ONNX_FILE).stat().st_size / 1e6)
    return tmp


def _score(predictor: Predictor, data: Labelled) -> tuple[dict, np.ndarray]:
    predictor.predict_proba(data.texts[: predictor.batch_size])  # warm-up: first-call allocations are not throughput
    result = evaluate(predictor, data)
    return {
        "backend": predictor.backend.name,
        "accuracy": result.metrics["accuracy"],
        "macro_f1": result.metrics["macro_f1"],
        "texts_per_second": round(result.texts_per_second, 1),
    }, result.probs


def compare(source: Predictor, exported: Predictor, data: Labelled) -> dict:
    """Source and export on the same texts: metrics, agreement and speed of each."""
    before, p_before = _score(source, data)
    after, p_after = _score(exported, data)
    return {
        "before": before,
        "after": after,
        # Texts given the same labels: the same class, or (multi-label) the same set of labels.
        "agreement": float((source.decide(p_before) == exported.decide(p_after)).all(axis=1).mean()),
        "max_probability_difference": float(np.abs(p_before - p_after).max()),
        "macro_f1_drop_points": round(100 * (before["macro_f1"] - after["macro_f1"]), 4),
        "speedup": round(after["texts_per_second"] / before["texts_per_second"], 2),
    }


def log_report(run_id: str, report: dict, uri: str | None) -> str | None:
    """The report, and its scores as ``export/onnx_<precision>/*`` metrics, added to the run that logged the model
    (which keeps its status); the run id, or None when MLflow could not take it (the report stays in the folder)."""
    tracker = MLflowTracker(uri, experiment="", local_dir=Path(report["export"]), optional=True)
    tracker.attach(run_id)
    name = f"onnx_{report['precision']}"
    with ended_run(tracker):
        tracker.log_dict(report, f"exports/{name}/{EXPORT_REPORT_FILE}")
        scores = {k: report[k] for k in ("agreement", "macro_f1_drop_points", "speedup")}
        scores.update({k: report["after"][k] for k in ("accuracy", "macro_f1", "texts_per_second")})
        tracker.log_metrics({f"export/{name}/{k}": v for k, v in scores.items()})
    if tracker.failures_file:
        return None
    log.info("export report logged to MLflow run %s (%s)", run_id, tracker.uri)
    return run_id


def export_model(
    source: str | Path,
    out: str | Path | None,
    data: DataConfig,
    precision: str = "fp32",
    max_f1_drop: float = 1.0,
    batch_size: int = 64,
    run_id: str | None = None,
    tracking: bool = True,
    tracking_uri: str | None = None,
    portable: bool | None = None,
) -> ExportResult:
    """Export, score before and after on ``data``, write and log the report; raise if quality drops too much.

    ``max_f1_drop`` is in macro-F1 points (1.0 = 0.01). A failing export's folder is kept with its
    report (``passed: false``) for inspection, and the error says so.
    """
    if max_f1_drop < 0:
        raise ConfigError(f"max_f1_drop must be at least 0 points, got {max_f1_drop}")
    if tracking_uri:
        use_store(tracking_uri)  # where runs:/ and models:/ sources are read from, too
    source_predictor = Predictor.load(source, batch_size=batch_size)
    # Read the data before the slow export, so a bad path fails in a second.
    labelled = load_labelled(
        data,
        source_predictor.labels,
        source_predictor.preprocessor,
        source_predictor.task.name,
        source_predictor.meta.allow_no_label,
    )
    out = Path(out or default_out(source, precision))
    with console.status(f"exporting to ONNX ({precision})"):
        staged = stage(source, out, precision, portable)
    try:
        # Scored and reported in the staged folder, put in place only then: an export cut short (Ctrl-C, a
        # failure) never leaves a folder without its report that loads as if it had been checked.
        exported = Predictor.load(staged, batch_size=batch_size)
        with console.status(f"scoring the original and the export on {len(labelled.texts)} texts"):
            scores = compare(source_predictor, exported, labelled)
        report = {
            "source": str(source),
            "export": str(out),
            "format": "onnx",
            "precision": precision,
            "quantization": exported.meta.export["quantization"],
            "hardware": hardware.detect().to_dict(),
            "data": {"source": labelled.source, "split": labelled.split, "n": len(labelled.texts)},
            **scores,
            "max_f1_drop_points": max_f1_drop,
            "onnx_megabytes": round((staged / ONNX_FILE).stat().st_size / 1e6, 2),
        }
        report["passed"] = report["macro_f1_drop_points"] <= max_f1_drop
        (staged / EXPORT_REPORT_FILE).write_text(json.dumps(report, indent=2), encoding="utf-8")
        replace_folder(staged, out)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    run_id = run_id or (model_run_id(str(source)) if tracking else None)
    if tracking and run_id:
        run_id = log_report(run_id, report, tracking_uri)
    elif tracking:
        log.info("%s was not loaded from an MLflow run: the report is not logged (pass --run-id to log it)", source)
    if not report["passed"]:
        raise ExportError(
            f"export lost {report['macro_f1_drop_points']:.2f} points of macro-F1 on {labelled.source} "
            f"({report['before']['macro_f1']:.4f} -> {report['after']['macro_f1']:.4f}), more than the allowed "
            f"{max_f1_drop:g}; the folder {out} is kept for inspection (see {EXPORT_REPORT_FILE}); raise --max-f1-drop "
            "to accept it"
        )
    return ExportResult(out, report, run_id)
