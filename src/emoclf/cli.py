"""The ``emoclf`` command: parses flags into a ``Config`` and calls the library. No logic lives here.

Every config field has a flag named after it (``--epochs``, ``--text-column``); a YAML file
given with ``--config`` sets the base, and flags override it.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from dataclasses import fields
from pathlib import Path

from emoclf import __version__
from emoclf.config import IMBALANCE_STRATEGIES, SECTIONS, Config, field_type
from emoclf.errors import EmoclfError

log = logging.getLogger("emoclf")

EXIT_TRACKING_DEGRADED = 3  # trained and saved locally, but some MLflow logging failed (tracking_failures.json)

EPILOG = "Data: a file (csv, tsv, jsonl, parquet, or txt with 'text;label' lines), a folder holding " \
         "train/validation/test files, or hf:<dataset id or saved folder>. Without data, the embedded demo set."


def add_config_flags(parser: argparse.ArgumentParser, sections: tuple[str, ...]) -> None:
    parser.add_argument("--config", metavar="YAML", help="Config file; flags given on the command line override it.")
    for section in sections:
        cls = SECTIONS[section]
        group = parser.add_argument_group(f"{section} settings")
        for f in fields(cls):
            if f.name == "data":
                continue  # the positional DATA argument
            flag = "--" + f.name.replace("_", "-")
            kind = field_type(cls, f.name)
            helptext = f.metadata["help"]
            if kind is bool:
                group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                   default=argparse.SUPPRESS, help=f"{helptext} (default: {f.default})")
            else:
                group.add_argument(flag, dest=f.name, type=kind, choices=f.metadata.get("choices"),
                                   default=argparse.SUPPRESS, metavar=f.name.upper() if not f.metadata.get("choices") else None,
                                   help=f"{helptext} (default: {f.default})")


def config_from_args(args: argparse.Namespace, sections: tuple[str, ...]) -> Config:
    cfg = Config.from_yaml(args.config) if getattr(args, "config", None) else Config()
    names = {f.name for s in sections for f in fields(SECTIONS[s])}
    overrides = {k: v for k, v in vars(args).items() if k in names and k != "data"}
    if getattr(args, "data", None) is not None:
        overrides["data"] = args.data
    return cfg.replace(**overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emoclf",
        description="Fine-tune BERT-family models to classify short texts (default job: six emotions), "
                    "with imbalance handling, honest test reports, MLflow tracking and fast inference.",
        epilog="Run 'emoclf COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"emoclf {__version__}")
    parser.add_argument("--debug", action="store_true", help="Show tracebacks and debug logs.")
    parser.add_argument("--quiet", action="store_true", help="Only warnings and errors.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="Fine-tune a model, evaluate it on the untouched test split, log to MLflow.",
                       description="Fine-tune a model on DATA (default: the embedded demo set), evaluate the saved "
                                   "model on the test split, write reports and log everything to MLflow.",
                       epilog=EPILOG)
    p.add_argument("data", nargs="?", metavar="DATA", help="Training data (default: embedded demo set).")
    p.add_argument("--resume", nargs="?", const="", metavar="RUN_DIR",
                   help="Continue the training in RUN_DIR (default: --output-dir) from its newest complete checkpoint, "
                        "with its saved config and in its MLflow run; flags given now override the saved config.")
    add_config_flags(p, tuple(SECTIONS))
    p.set_defaults(func=cmd_train, sections=tuple(SECTIONS))

    p = sub.add_parser("compare", help="Compare imbalance strategies on one split, as MLflow child runs of one parent.",
                       description="Train every strategy on the same split, model and budget (over --seeds seeds), "
                                   "score each on the untouched test split, and write a table (mean ± std), a "
                                   "per-class F1 chart and a verdict into OUTPUT_DIR/comparison.", epilog=EPILOG)
    p.add_argument("data", nargs="?", metavar="DATA", help="Training data (default: embedded demo set).")
    every = ",".join(s for s in IMBALANCE_STRATEGIES if s != "auto")
    p.add_argument("--strategies", default=every, help=f"Comma-separated strategies to compare (default: {every}).")
    p.add_argument("--seeds", type=int, default=1, help="Trainings per strategy, seeds SEED, SEED+1, ... (default: 1).")
    p.add_argument("--quick", action="store_true",
                   help="Cut-down run: at most 600 training rows, 1 epoch, at most 500 validation and test rows.")
    add_config_flags(p, tuple(SECTIONS))
    p.set_defaults(func=cmd_compare, sections=tuple(SECTIONS))

    p = sub.add_parser("inspect", help="Profile a data set: splits, class balance, duplicates, leakage, lengths.",
                       description="Validate and profile DATA, print the profile and write it as JSON plus a "
                                   "class-distribution chart.", epilog=EPILOG)
    p.add_argument("data", nargs="?", metavar="DATA", help="Data to profile (default: embedded demo set).")
    p.add_argument("--out", default="inspect", help="Folder for data_profile.json and class_distribution.png.")
    add_config_flags(p, ("data", "preprocess", "model"))
    p.set_defaults(func=cmd_inspect, sections=("data", "preprocess", "model"))

    p = sub.add_parser("evaluate", help="Evaluate a saved model on labelled data and write the full report.",
                       description="Evaluate a saved model (folder or MLflow URI) on DATA: the test split of a "
                                   "folder, or every row of a file.", epilog=EPILOG)
    p.add_argument("--model", required=True, help="Model folder or MLflow model URI (runs:/..., models:/...).")
    p.add_argument("data", metavar="DATA", help="Labelled data to evaluate on.")
    p.add_argument("--out", default="evaluation", help="Folder for the report.")
    p.add_argument("--batch-size", type=int, default=64, help="Prediction batch size.")
    add_config_flags(p, ("data",))
    p.set_defaults(func=cmd_evaluate, sections=("data",))

    p = sub.add_parser("predict", help="Predict labels for texts given as arguments or in a file.",
                       description="Predict with a saved model folder, an export or an MLflow model URI. Texts as "
                                   "arguments print label, probability and text. --input keeps every column of the "
                                   "file, in order, and adds predicted_label, predicted_probability, one prob_<class> "
                                   "column per class and skipped (why a row has no prediction: empty after "
                                   "preprocessing). A .txt input is 'text;label' lines when every line ends in one "
                                   "of the model's labels, else one text per line.")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="Texts to classify.")
    p.add_argument("--model", required=True, help="Model folder or MLflow model URI (runs:/..., models:/...).")
    p.add_argument("--input", help="File of texts (csv, tsv, jsonl, parquet, or txt).")
    p.add_argument("--output", help="Where to write predictions: .csv, .tsv, .jsonl or .parquet (default: stdout as CSV).")
    p.add_argument("--text-column", default="text", help="Text column of --input (default: text).")
    p.add_argument("--batch-size", type=int, default=64, help="Prediction batch size.")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="PyTorch models: bf16 weights, faster on CPUs with AMX and on GPUs (slower elsewhere), with "
                        "slightly different probabilities; fp32 predicts exactly as evaluated (default: fp32).")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="Export a model to ONNX (fp32, int8, fp16) and check it against the original.",
                       description="Export a saved model (folder or MLflow URI) to ONNX with its tokenizer, labels, "
                                   "preprocessing and temperature, score original and export on --data, write "
                                   "export_report.json and log it to the model's MLflow run. Fails when the export "
                                   "loses more than --max-f1-drop points of macro-F1.", epilog=EPILOG)
    p.add_argument("--model", required=True, help="Model folder or MLflow model URI (runs:/..., models:/...).")
    p.add_argument("--format", default="onnx", choices=("onnx",), help="Export format (default: onnx).")
    p.add_argument("--quantize", choices=("int8", "fp16"),
                   help="int8: dynamic int8 weights, fastest on CPUs; fp16: half precision, for GPUs (default: fp32).")
    p.add_argument("--portable", action=argparse.BooleanOptionalAction, default=None,
                   help="int8: 7-bit weights, exact on every CPU. Default: 8-bit weights where this CPU has VNNI or "
                        "AMX (such an export refuses to load on x86 CPUs without VNNI, whose int8 products "
                        "saturate), 7-bit elsewhere.")
    p.add_argument("--data", required=True, help="Labelled data to compare on: the test split of a folder, or a file.")
    p.add_argument("--text-column", default="text", help="Text column of --data (default: text).")
    p.add_argument("--label-column", default="label", help="Label column of --data (default: label).")
    p.add_argument("--out", help="Export folder (default: onnx-<precision> next to the model folder).")
    p.add_argument("--max-f1-drop", type=float, default=1.0,
                   help="Fail when macro-F1 drops by more than this many points (default: 1.0).")
    p.add_argument("--batch-size", type=int, default=64, help="Prediction batch size.")
    p.add_argument("--run-id", help="MLflow run to log the report to (default: the run that logged --model, if any).")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).")
    p.add_argument("--tracking", action=argparse.BooleanOptionalAction, default=True,
                   help="Log the report to MLflow (default: on when the run is known).")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", help="Serve a model over HTTP: POST /predict, GET /health, /metadata, /docs.",
                       description="Serve a model folder, ONNX export or MLflow model URI with FastAPI and uvicorn.")
    p.add_argument("--model", required=True, help="Model folder, ONNX export folder or MLflow model URI.")
    p.add_argument("--host", default="127.0.0.1", help="Address to bind (default: 127.0.0.1, this machine only).")
    p.add_argument("--port", type=int, default=8000, help="Port (default: 8000).")
    p.add_argument("--max-texts", type=int, default=256, help="Most texts per request; more get 413 (default: 256).")
    p.add_argument("--max-body-bytes", type=int, default=1_000_000,
                   help="Largest request body; larger get 413 (default: 1000000).")
    p.add_argument("--batch-size", type=int, default=64, help="Prediction batch size.")
    p.add_argument("--threads", type=int, help="CPU threads for inference (default: the cores this process may use).")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="PyTorch models: bf16 weights, faster on CPUs with AMX and on GPUs (slower elsewhere), with "
                        "slightly different probabilities; fp32 predicts exactly as evaluated (default: fp32).")
    p.set_defaults(func=cmd_serve)
    return parser


def cmd_train(args) -> int:
    from emoclf.training import CONFIG_FILE, train

    cfg = config_from_args(args, args.sections)
    if args.resume is not None:
        run_dir = Path(args.resume or cfg.train.output_dir)
        if not args.config and (run_dir / CONFIG_FILE).is_file():
            args.config = str(run_dir / CONFIG_FILE)
            cfg = config_from_args(args, args.sections)
        cfg = cfg.replace(output_dir=str(run_dir))
    result = train(cfg, resume=args.resume is not None)
    if not result.metrics:
        # A non-zero rank under torchrun/accelerate: rank 0 evaluates and reports.
        # Failing here would make the launcher kill rank 0 mid-evaluation.
        return 0
    m = result.metrics
    print(f"test accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}, weighted F1 {m['weighted_f1']:.4f} "
          f"({m['n']} texts); trained in {result.train_seconds:.0f}s")
    print(f"model: {result.model_dir}\nreport: {result.output_dir / 'report'}")
    if result.run_id:
        print(f"MLflow run: {result.run_id}")
    if result.tracking_failures:
        print(f"emoclf: tracking degraded: some results are not in MLflow; they are listed in {result.tracking_failures}",
              file=sys.stderr)
        return EXIT_TRACKING_DEGRADED
    return 0


def cmd_compare(args) -> int:
    from emoclf.compare import compare

    cfg = config_from_args(args, args.sections)
    if "output_dir" not in vars(args):
        cfg = cfg.replace(output_dir="runs/compare")
    result = compare(cfg, [s.strip() for s in args.strategies.split(",")], args.seeds, args.quick)
    print(result.paths["markdown"].read_text(encoding="utf-8"))
    print(f"comparison: {result.paths['markdown'].parent}")
    if result.run_id:
        print(f"MLflow parent run: {result.run_id}")
    return 0


def cmd_inspect(args) -> int:
    from emoclf.data import load_data
    from emoclf.data.profile import format_profile, profile, write_profile
    from emoclf.modeling import load_tokenizer
    from emoclf.preprocess import Preprocessor

    cfg = config_from_args(args, args.sections)
    data = load_data(cfg.data, Preprocessor(cfg.preprocess))
    tokenizer, limit = load_tokenizer(cfg.model.model)
    prof = profile(data, tokenizer, limit)
    paths = write_profile(prof, args.out)
    print(format_profile(prof))
    print(f"written: {paths['profile']}, {paths['class_distribution']}")
    return 0


def cmd_evaluate(args) -> int:
    from emoclf.evaluation.labelled import read_labelled
    from emoclf.evaluation.metrics import classification_metrics
    from emoclf.evaluation.report import write_report
    from emoclf.inference import Predictor

    cfg = config_from_args(args, args.sections)
    predictor = Predictor.load(args.model, batch_size=args.batch_size)
    data = read_labelled(cfg.data, predictor.labels, predictor.preprocessor)
    probs = predictor.predict_proba(data.texts, progress=True)
    metrics = classification_metrics(data.y_true, probs.argmax(axis=1), predictor.labels)
    write_report(args.out, metrics, predictor.labels, data.texts, data.y_true, probs)
    print(f"{data.source} [{data.split}]: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}, "
          f"weighted F1 {metrics['weighted_f1']:.4f} on {metrics['n']} texts\nreport: {args.out}")
    return 0


def cmd_predict(args) -> int:
    import pandas as pd

    from emoclf.config import DataConfig
    from emoclf.data.io import missing_columns_error, read_table
    from emoclf.data.validate import check_types
    from emoclf.errors import ConfigError, DataError
    from emoclf.inference import Predictor, prediction_columns

    if bool(args.texts) == bool(args.input):
        raise ConfigError("give either texts as arguments or --input FILE (not both, not neither)")
    output_format(args.output)  # an unknown extension fails now, not after the predictions
    predictor = Predictor.load(args.model, batch_size=args.batch_size, precision=args.precision)
    if args.texts:
        for text, pred in zip(args.texts, predictor.predict(args.texts)):
            print(f"{pred.label}\t{pred.probability:.4f}\t{text}")
        return 0
    df = read_table(args.input, DataConfig(text_column=args.text_column), txt_labels=predictor.labels)
    error = missing_columns_error(args.input, df, {args.text_column: "--text-column"})
    if error:
        raise error
    clash = [c for c in prediction_columns(predictor.labels) if c in df.columns]
    if clash:
        raise DataError(f"{args.input}: has column(s) {', '.join(map(repr, clash))}, which the predictions would "
                        "overwrite; rename them")
    texts = pd.DataFrame({"text": df[args.text_column].to_numpy(), "row": df.index.to_numpy()})
    texts.attrs = df.attrs
    check_types(texts, args.text_column, None)
    values = ["" if v is None or v != v else v for v in texts["text"]]  # missing: no prediction, marked skipped
    out = pd.concat([df.reset_index(drop=True), predictor.predict_frame(values, progress=True)], axis=1)
    write_table(out, args.output)
    if args.output:
        print(f"{len(out)} predictions written to {args.output}", file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    from emoclf.config import DataConfig
    from emoclf.export import export_model

    data = DataConfig(data=args.data, text_column=args.text_column, label_column=args.label_column)
    result = export_model(args.model, args.out, data, precision=args.quantize or "fp32", max_f1_drop=args.max_f1_drop,
                          batch_size=args.batch_size, run_id=args.run_id, tracking=args.tracking,
                          tracking_uri=args.tracking_uri, portable=args.portable)
    r = result.report
    print(f"{r['format']} {r['precision']}: macro-F1 {r['before']['macro_f1']:.4f} -> {r['after']['macro_f1']:.4f}, "
          f"agreement {r['agreement']:.2%}, {r['before']['texts_per_second']:.0f} -> "
          f"{r['after']['texts_per_second']:.0f} texts/s on {r['data']['n']} texts")
    print(f"export: {result.folder}")
    if result.run_id:
        print(f"MLflow run: {result.run_id}")
    return 0


def cmd_serve(args) -> int:
    from emoclf.serving import Limits, serve

    serve(args.model, host=args.host, port=args.port, limits=Limits(args.max_texts, args.max_body_bytes),
          batch_size=args.batch_size, num_threads=args.threads, access_log=not args.quiet, precision=args.precision)
    return 0


OUTPUT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


def output_format(path: str | None) -> str:
    """The format of ``--output`` from its extension (CSV on stdout); an unknown one is refused, not guessed."""
    if path is None:
        return "csv"
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        from emoclf.errors import ConfigError

        raise ConfigError(f"--output {path}: cannot write {suffix or 'a file without an extension'!r}; "
                          f"use one of {', '.join(OUTPUT_FORMATS)}")
    return OUTPUT_FORMATS[suffix]


def write_table(df, path: str | None) -> None:
    fmt = output_format(path)
    if path is None:
        df.to_csv(sys.stdout, index=False)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        df.to_parquet(path, index=False)
    elif fmt == "jsonl":
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        df.to_csv(path, index=False, sep="\t" if fmt == "tsv" else ",")


def _terminate(signum, frame):
    # SIGTERM takes the same path as Ctrl-C, so runs end as KILLED and checkpoints stay consistent.
    raise KeyboardInterrupt(f"signal {signum}")


def setup_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("transformers", "datasets", "mlflow", "alembic", "urllib3", "httpx", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)


def _close_progress_bars() -> None:
    """End any progress bar an error cut short, so the error starts on a line of its own."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.debug, args.quiet)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except EmoclfError as e:
        if args.debug:
            raise
        _close_progress_bars()
        print(f"emoclf: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        from emoclf.errors import TrainingInterrupted

        _close_progress_bars()
        print(f"emoclf: interrupted{f': {e}' if isinstance(e, TrainingInterrupted) else ''}", file=sys.stderr)
        return 130
    except Exception as e:  # a library failure: one readable line, the traceback on request
        if args.debug:
            raise
        _close_progress_bars()
        print(f"emoclf: error: {type(e).__name__}: {e} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
