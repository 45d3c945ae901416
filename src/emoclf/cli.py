"""The ``emoclf`` command: parses flags into typed config and options, calls the library, prints results.

Every flag comes from a dataclass field of ``emoclf.config`` (its ``help`` metadata, its type, its
``Literal`` choices): the ``Config`` sections for what a training is, one ``*Options`` class per
command for the rest. A YAML file given with ``--config`` sets the base, and flags override it.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import signal
import sys
from dataclasses import MISSING, dataclass, fields

from emoclf import config as C
from emoclf import console, hardware
from emoclf.errors import ConfigError, EmoclfError
from emoclf.layout import __version__

log = logging.getLogger("emoclf")

EXIT_TRACKING_DEGRADED = 3  # trained and saved locally, but some MLflow logging failed (tracking_failures.json)
ALL_SECTIONS = tuple(C.SECTIONS)
EPILOG = (
    "Data: a file (csv, tsv, jsonl, parquet, or txt with 'text;label' lines), a folder holding "
    "train/validation/test files, or hf:<dataset id or saved folder>. Without data, the embedded demo set."
)


class Parser(argparse.ArgumentParser):
    """argparse, where a wrong flag gets the subcommand's own usage, a guess at the flag meant, and where to
    read the rest (argparse reports a subcommand's unknown flags with the top-level usage)."""

    def parse_known_args(self, args=None, namespace=None):
        # Unknown flags are looked for first, with no flag required: a mistyped --modle is named as such,
        # not reported as a missing --model.
        required = [a for a in self._actions if a.required]
        for action in required:
            action.required = False
        try:
            _, extras = super().parse_known_args(args, argparse.Namespace(**vars(namespace or argparse.Namespace())))
        finally:
            for action in required:
                action.required = True
        if extras:
            self.error(unrecognized(extras, self))
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\nRun '{self.prog} --help' for every option.\n")


def unrecognized(extras: list[str], parser: argparse.ArgumentParser) -> str:
    """Name the first argument not understood, and the closest flag (``--lr``: ``--learning-rate``)."""
    first = extras[0]
    if not first.startswith("-"):
        return f"unexpected argument {first!r}"
    flag = first.split("=")[0]
    known = [o for o in parser._option_string_actions if o.startswith("--")]
    # Initials catch abbreviations difflib cannot: --lr, --bs, --mtl.
    initials = [o for o in known if "".join(w[0] for w in o[2:].split("-") if w) == flag.lstrip("-")]
    guess = (initials or difflib.get_close_matches(flag, known, n=1, cutoff=0.6) or [None])[0]
    return f"unrecognized argument {flag}" + (f"; did you mean {guess}?" if guess else "")


def add_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    title: str,
    from_config: bool = False,
    offered: frozenset[str] | None = None,
) -> None:
    """One flag per field of ``cls`` (of those in ``offered``, when given). Config fields default to "not
    given" (argparse.SUPPRESS), so that only the flags a user typed override the YAML base; options default
    to their field's default. Every help line ends with the default."""
    group = parser.add_argument_group(title)
    for f in fields(cls):
        if (from_config and f.name == "data") or (offered is not None and f.name not in offered):
            continue  # DATA is positional; other commands' settings are not offered
        meta, kind = f.metadata, C.field_type(cls, f.name)
        default = argparse.SUPPRESS if from_config else f.default
        if meta.get("required") or meta.get("positional"):
            shown = ""
        elif f.default not in (None, (), MISSING):
            shown = f" (default: {f.default})"
        else:
            shown = "" if "default" in meta["help"].lower() else " (default: not set)"
        if meta.get("positional"):
            nargs = None if meta["positional"] is True else meta["positional"]
            parser.add_argument(
                f.name,
                nargs=nargs,
                metavar=meta.get("metavar", f.name.upper()),
                help=meta["help"],
                **({} if nargs is None else {"default": list(f.default)}),
            )
        elif kind is bool:
            group.add_argument(
                "--" + f.name.replace("_", "-"),
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=meta["help"] + shown,
            )
        else:
            admitted = C.choices(cls, f.name)
            extra = {k: meta[k] for k in ("nargs", "const", "required") if k in meta}
            group.add_argument(
                "--" + f.name.replace("_", "-"),
                dest=f.name,
                type=kind,
                choices=admitted,
                default=default,
                help=meta["help"] + shown,
                metavar=None if admitted else meta.get("metavar", f.name.upper()),
                **extra,
            )


def given(args: argparse.Namespace, sections: tuple[str, ...]) -> dict:
    """The config fields set on the command line (DATA included), as ``Config.replace`` takes them."""
    names = {f.name for s in sections for f in fields(C.SECTIONS[s])}
    out = {k: v for k, v in vars(args).items() if k in names and k != "data"}
    if getattr(args, "data", None) is not None:
        out["data"] = args.data
    return out


def config_from_args(args: argparse.Namespace, sections: tuple[str, ...]) -> C.Config:
    cfg = C.Config.from_yaml(args.config) if getattr(args, "config", None) else C.Config()
    return cfg.replace(**given(args, sections))


def options(args: argparse.Namespace, cls: type):
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class Command:
    run: str  # the name of the function below, so the table reads before the functions
    help: str
    description: str
    options: type | None = None
    sections: tuple[str, ...] = ()
    data: str | None = None  # nargs of the positional DATA, when the command reads labelled data
    usage: str = "[options]"
    offered: frozenset[str] | None = None  # the config fields it reads, when not all of its sections'
    # Ends its process without Python's teardown of torch and transformers, a second of CPU (docs/benchmarks.md):
    # for a command that writes its files through libraries that close them and logs to no tracking server.
    quick_exit: bool = False


def names(*sections: str) -> frozenset[str]:
    return frozenset(f.name for s in sections for f in fields(C.SECTIONS[s]))


# What `emoclf evaluate` reads of the data settings: it scores a file or a folder's test split as they are.
EVALUATE_DATA = frozenset({"format", "text_column", "label_column", "label_names", "label_map", "encoding", "strict"})


COMMANDS = {
    "train": Command(
        "cmd_train",
        "Fine-tune a model, evaluate it on the untouched test split, log to MLflow.",
        "Fine-tune a model on DATA (default: the embedded demo set), evaluate the saved model on the "
        "test split, write reports and a model card, and log everything to MLflow.",
        C.TrainOptions,
        ALL_SECTIONS,
        "?",
        "[DATA] [options]",
    ),
    "compare": Command(
        "cmd_compare",
        "Compare imbalance strategies on one split, as MLflow child runs of one parent.",
        "Train every strategy on the same split, model and budget (over --seeds seeds), score each on "
        "the untouched test split, and write a table (mean ± std), a per-class F1 chart and a verdict "
        "into OUTPUT_DIR/comparison.",
        C.CompareOptions,
        ALL_SECTIONS,
        "?",
        "[DATA] [options]",
    ),
    "tune": Command(
        "cmd_tune",
        "Search training settings with Optuna, keep and test the best model, log to MLflow.",
        "Run an Optuna study (TPE, seeded; median pruning) over a search space of training settings, "
        "each trial a training scored by its validation macro-F1 and an MLflow child run of the "
        "study's run; the test split is never looked at. The best trial's model (or, with --refit, its "
        "config retrained on all the training data) is evaluated on the test split as 'emoclf train' "
        "does, and OUTPUT_DIR/best.yaml reproduces it with 'emoclf train --config'. A study cut short "
        "(Ctrl-C, kill -9) resumes with the same command.",
        C.TuneOptions,
        ALL_SECTIONS,
        "?",
        "[DATA] [options]",
    ),
    "audit": Command(
        "cmd_audit",
        "Find training rows whose label is likely wrong (cleanlab), log to MLflow.",
        "Give every training row of DATA (the training split 'emoclf train' would use with the same "
        "settings) class probabilities from a model that never saw it (--folds out of fold; "
        "--audit-model linear, tfidf or finetune), find the likely label errors with cleanlab, and "
        "write them ranked (label_issues.csv, label_issues.html) with per-class counts (audit.json) into "
        "--out. 'emoclf train --exclude-label-issues OUT/label_issues.csv' then drops or relabels them "
        "in the training split only.",
        C.AuditOptions,
        ALL_SECTIONS,
        "?",
        "[DATA] [options]",
        names(*ALL_SECTIONS) - {"output_dir", "overwrite", "register_name", "model_name", "license", "language"},
    ),
    "inspect": Command(
        "cmd_inspect",
        "Profile a data set: splits, class balance, duplicates, leakage, lengths.",
        "Validate and profile DATA, print the profile as tables and write it as JSON plus a class-distribution chart.",
        C.InspectOptions,
        ("data", "preprocess", "model"),
        "?",
        "[DATA] [options]",
        names("data", "preprocess") | {"model"},
    ),
    "evaluate": Command(
        "cmd_evaluate",
        "Evaluate a saved model on labelled data and write the full report.",
        "Evaluate a saved model (folder, export or MLflow URI) on DATA: the test split of a folder, "
        "or every row of a file.",
        C.EvaluateOptions,
        ("data",),
        None,
        "DATA --model MODEL [options]",
        EVALUATE_DATA,
    ),
    "report": Command(
        "cmd_report",
        "Compare finished runs side by side in one HTML page.",
        "One self-contained HTML page comparing the runs in RUN_DIR ... (training output folders, "
        "compare's <strategy>-seed<n> folders, or emoclf evaluate --out folders): headline and "
        "per-class F1, confusion matrices, calibration and training curves, side by side.",
        C.ReportOptions,
        usage="RUN_DIR [RUN_DIR ...] [options]",
    ),
    "predict": Command(
        "cmd_predict",
        "Predict labels for texts given as arguments or in a file.",
        "Predict with a saved model folder, an export or an MLflow model URI. Texts as arguments "
        "print label, probability and text. --input keeps every column of the file, in order, and "
        "adds predicted_label, predicted_probability, one prob_<class> column per class and skipped "
        "(why a row has no prediction: empty after preprocessing). A .txt input is 'text;label' lines "
        "when every line ends in one of the model's labels, else one text per line.",
        C.PredictOptions,
        usage="--model MODEL (TEXT ... | --input FILE [--output FILE]) [options]",
        quick_exit=True,
    ),
    "export": Command(
        "cmd_export",
        "Export a model to ONNX (fp32, int8, fp16) and check it against the original.",
        "Export a saved model (folder or MLflow URI) to ONNX with its tokenizer, labels, preprocessing "
        "and temperature, score original and export on --data, write export_report.json and log it to "
        "the model's MLflow run. Fails when the export loses more than --max-f1-drop points of "
        "macro-F1.",
        C.ExportOptions,
        usage="--model MODEL --data DATA [options]",
    ),
    "serve": Command(
        "cmd_serve",
        "Serve a model over HTTP: a page to try it at /, POST /predict, /docs.",
        "Serve a model folder, ONNX export or MLflow model URI with FastAPI and uvicorn: a page to try "
        "it at /, POST /predict, GET /health and /metadata, API docs at /docs and /redoc (all offline).",
        C.ServeOptions,
        usage="--model MODEL [options]",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="emoclf",
        description="Fine-tune BERT-family models to classify short texts (default job: six emotions), "
        "with imbalance handling, honest test reports, MLflow tracking and fast inference.",
        epilog="Run 'emoclf COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"emoclf {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="Also show library warnings, load reports and progress bars."
    )
    parser.add_argument("--quiet", action="store_true", help="Only results and errors.")
    parser.add_argument("--debug", action="store_true", help="Show tracebacks and debug logs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=command.help,
            description=command.description,
            usage=f"%(prog)s {command.usage}",
            epilog=EPILOG if command.sections else None,
        )
        if command.sections:
            p.add_argument(
                "data",
                nargs=command.data,
                metavar="DATA",
                help="Labelled data" + (" (default: the embedded demo set)." if command.data else "."),
            )
            p.add_argument("--config", metavar="YAML", help="Config file; flags given on the command line override it.")
        if command.options:
            add_flags(p, command.options, f"{name} options")
        for section in command.sections:
            add_flags(p, C.SECTIONS[section], f"{section} settings", from_config=True, offered=command.offered)
        p.set_defaults(func=globals()[command.run], sections=command.sections)
    return parser


def cmd_train(args) -> int:
    with console.status("loading libraries"):
        from emoclf.checkpoints import resume_config
        from emoclf.training import train

    resume = options(args, C.TrainOptions).resume
    if resume is None:
        cfg = config_from_args(args, args.sections)
    else:
        run_dir = resume or config_from_args(args, args.sections).train.output_dir
        cfg = resume_config(run_dir, given(args, args.sections), args.config)
    result = train(cfg, resume=resume is not None)
    if not result.metrics:
        # A non-zero rank under torchrun/accelerate: rank 0 evaluates and reports.
        # Failing here would make the launcher kill rank 0 mid-evaluation.
        return 0
    return print_kept_model(
        result.metrics,
        f"; trained in {result.train_seconds:.0f}s",
        f"model: {result.model_dir} (model card: README.md)\nreport: {result.output_dir / 'report' / 'report.html'}",
        f"MLflow run: {result.run_id}" if result.run_id else None,
        result.tracking_failures,
    )


def print_kept_model(m: dict, note: str, where: str, run: str | None, failures) -> int:
    """A kept model's test scores, its files and MLflow run; exit 3 when some tracking calls were lost."""
    from emoclf.evaluation.metrics import headline

    print(f"test {headline(m)} ({m['n']} texts){note}")
    print(where)
    if run:
        print(run)
    if failures:
        print(
            f"emoclf: tracking degraded: some results are not in MLflow; they are listed in {failures}", file=sys.stderr
        )
        return EXIT_TRACKING_DEGRADED
    return 0


def say(*lines: str | None) -> int:
    """Print the results that are there (a line may be None: no MLflow run, say), one per line; exit status 0."""
    for line in lines:
        if line:
            print(line)
    return 0


def cmd_compare(args) -> int:
    with console.status("loading libraries"):
        from emoclf.compare import compare

    opts = options(args, C.CompareOptions)
    cfg = config_from_args(args, args.sections)
    if "output_dir" not in vars(args):
        cfg = cfg.replace(output_dir="runs/compare")
    strategies = opts.strategies and [s.strip() for s in opts.strategies.split(",")]
    result = compare(cfg, strategies, opts.seeds, opts.quick, opts.budget)
    return say(
        result.paths["markdown"].read_text(encoding="utf-8"),
        f"comparison: {result.paths['markdown'].parent}",
        result.run_id and f"MLflow parent run: {result.run_id}",
    )


def cmd_tune(args) -> int:
    from emoclf.tune import DEFAULT_OUTPUT_DIR, tune

    cfg = config_from_args(args, args.sections)
    if "output_dir" not in vars(args) and cfg.train.output_dir == C.TrainConfig.output_dir:
        cfg = cfg.replace(output_dir=DEFAULT_OUTPUT_DIR)
    r = tune(cfg, options(args, C.TuneOptions))
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.best_params.items())
    print(
        f"study {r.study_name!r}: {r.trials['complete']} completed, {r.trials['pruned']} pruned, "
        f"{r.trials['fail']} failed trial(s)"
    )
    print(f"best trial {r.best_trial}: validation macro-F1 {r.best_value:.4f} with {params}")
    return print_kept_model(
        r.metrics,
        "",
        f"model: {r.model_dir}\nbest config: {r.best_config} (emoclf train --config {r.best_config} reproduces it)",
        f"MLflow parent run: {r.run_id}" if r.run_id else None,
        r.tracking_failures,
    )


def cmd_audit(args) -> int:
    with console.status("loading libraries"):
        from emoclf.audit import audit
        from emoclf.data.profile import text_table

    opts = options(args, C.AuditOptions)
    r = audit(config_from_args(args, args.sections), opts)
    s = r.summary
    score = (
        f"subset accuracy {s['out_of_fold_accuracy']:.4f}, macro-F1 {s['out_of_fold_macro_f1']:.4f}"
        if "out_of_fold_macro_f1" in s
        else f"accuracy {s['out_of_fold_accuracy']:.4f}"
    )
    print(
        f"{s['issues']} of {s['rows_audited']} training rows ({s['issue_share']:.2%}) look mislabelled "
        f"({opts.audit_model} out-of-fold probabilities over {opts.folds} folds, {score}; "
        f"{s['seconds']['total']:.0f} s)"
    )
    print(
        "\n".join(
            text_table(
                ["given label", "rows", "suspected errors"],
                [[lab, c["rows"], c["issues"]] for lab, c in s["per_class"].items()],
            )
        )
    )
    print(f"written: {r.paths['csv']}, {r.paths['html']}, {r.paths['json']}")
    if r.run_id:
        print(f"MLflow run: {r.run_id}")
    return 0


def cmd_inspect(args) -> int:
    with console.status("loading libraries"):
        from emoclf.data import load_data
        from emoclf.data.profile import format_profile, profile, write_profile
        from emoclf.modeling import load_tokenizer
        from emoclf.preprocess import Preprocessor

    cfg = config_from_args(args, args.sections)
    with console.status(f"reading and checking {cfg.data.data or 'the demo set'}"):
        data = load_data(cfg.data, Preprocessor(cfg.preprocess))
        tokenizer, limit = load_tokenizer(cfg.model.model)
    prof = profile(data, tokenizer, limit)
    paths = write_profile(prof, options(args, C.InspectOptions).out)
    print(format_profile(prof))
    print(f"written: {paths['profile']}, {paths['class_distribution']}")
    return 0


def cmd_evaluate(args) -> int:
    opts = options(args, C.EvaluateOptions)
    cfg = config_from_args(args, args.sections)
    with console.status("loading the model"):
        from emoclf.evaluation.evaluate import evaluate_model
        from emoclf.evaluation.metrics import headline
        from emoclf.inference import Predictor

        predictor = Predictor.load(opts.model, batch_size=opts.batch_size, threshold=opts.threshold)
    result = evaluate_model(predictor, cfg.data, opts.out, progress=True)
    m = result.metrics
    print(f"{result.source} [{result.split}]: {headline(m)} on {m['n']} texts\nreport: {opts.out}")
    return 0


def cmd_report(args) -> int:
    from emoclf.evaluation.runs import compare_runs

    opts = options(args, C.ReportOptions)
    path = compare_runs(opts.runs, opts.out)
    print(f"{len(opts.runs)} run(s) compared: {path}")
    return 0


def cmd_predict(args) -> int:
    opts = options(args, C.PredictOptions)
    if bool(opts.texts) == bool(opts.input):
        raise ConfigError("give either texts as arguments or --input FILE (not both, not neither)")
    if opts.output:
        from emoclf.data.io import output_format  # pandas: imported only when a file is written

        output_format(opts.output)  # an unknown extension fails now, not after the model has loaded
    with console.status("loading the model"):
        from emoclf.inference import Predictor

        # A few texts as arguments: one thread. A second one only waits at every operation for a core another
        # process holds (1 s for one text on 2 busy cores, 0.02 s with one thread: docs/benchmarks.md).
        threads = 1 if opts.texts else None
        predictor = Predictor.load(
            opts.model,
            batch_size=opts.batch_size,
            precision=opts.precision,
            num_threads=threads,
            threshold=opts.threshold,
        )
    if opts.texts:
        from emoclf.predictions import as_line

        predictions = predictor.predict(opts.texts, progress=True)
        for text, pred in zip(opts.texts, predictions):
            print(f"{as_line(pred)}\t{text}")
        cut = sum(p.truncated for p in predictions)
        if cut:
            print(
                f"emoclf: {cut} text(s) longer than the model reads ({predictor.meta.max_length} tokens): "
                "only their start was classified",
                file=sys.stderr,
            )
        return 0
    from emoclf.data.io import read_table, write_table  # pandas: only a file of texts needs it
    from emoclf.predictions import predict_table

    table = read_table(opts.input, C.DataConfig(text_column=opts.text_column), txt_labels=predictor.labels)
    out = predict_table(predictor, table, opts.text_column, progress=True)
    write_table(out, opts.output)
    if opts.output:
        print(f"{len(out)} predictions written to {opts.output}", file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    from emoclf.config import DataConfig
    from emoclf.export import export_model

    opts = options(args, C.ExportOptions)
    data = DataConfig(data=opts.data, text_column=opts.text_column, label_column=opts.label_column)
    result = export_model(
        opts.model,
        opts.out,
        data,
        precision=opts.quantize or "fp32",
        max_f1_drop=opts.max_f1_drop,
        batch_size=opts.batch_size,
        run_id=opts.run_id,
        tracking=opts.tracking,
        tracking_uri=opts.tracking_uri,
        portable=opts.portable,
    )
    r = result.report
    print(
        f"{r['format']} {r['precision']}: macro-F1 {r['before']['macro_f1']:.4f} -> {r['after']['macro_f1']:.4f}, "
        f"agreement {r['agreement']:.2%}, {r['before']['texts_per_second']:.0f} -> "
        f"{r['after']['texts_per_second']:.0f} texts/s on {r['data']['n']} texts"
    )
    return say(f"export: {result.folder}", result.run_id and f"MLflow run: {result.run_id}")


def cmd_serve(args) -> int:
    opts = options(args, C.ServeOptions)
    with console.status("loading libraries"):
        from emoclf.serving import Limits, serve
    serve(
        opts.model,
        host=opts.host,
        port=opts.port,
        limits=Limits(opts.max_texts, opts.max_body_bytes),
        batch_size=opts.batch_size,
        num_threads=opts.threads,
        access_log=not args.quiet,
        precision=opts.precision,
        threshold=opts.threshold,
        token=opts.token,
        batching=opts.batching,
        max_wait_ms=opts.max_wait_ms,
        workers=opts.workers,
    )
    return 0


def _terminate(signum, frame):
    # SIGTERM takes the same path as Ctrl-C, so runs end as KILLED and checkpoints stay consistent.
    raise KeyboardInterrupt(f"signal {signum}")


def verbosity(args: argparse.Namespace) -> int:
    if args.debug:
        return console.DEBUG
    return console.QUIET if args.quiet else console.VERBOSE if args.verbose else console.NORMAL


def _close_progress_bars() -> None:
    """End any progress bar an error cut short, so the error starts on a line of its own."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    console.configure(verbosity(args))
    hardware.configure_threads()  # read when torch loads: before any command imports it
    signal.signal(signal.SIGTERM, _terminate)
    try:
        command = COMMANDS[args.command]
        for cls in filter(None, (command.options, *(C.SECTIONS[s] for s in command.sections))):
            C.check_paths(cls, vars(args))  # a mistyped path is answered before any heavy import
        if getattr(args, "config", None) is not None:
            C.Config.from_yaml(args.config)  # a missing or invalid --config file too
        code = args.func(args)
        if argv is None and command.quick_exit:  # the process's own command line: nothing runs after it
            sys.stdout.flush()
            sys.stderr.flush()
            logging.shutdown()
            os._exit(code)
        return code
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
    except BrokenPipeError:
        # `emoclf predict ... | head`: the reader is gone. What is still buffered goes nowhere, quietly, and the
        # exit status is a command's stopped by SIGPIPE, as `yes | head` ends.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE
    except Exception as e:  # a library failure: one readable line, the traceback on request
        if args.debug:
            raise
        _close_progress_bars()
        print(f"emoclf: error: {type(e).__name__}: {e} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
