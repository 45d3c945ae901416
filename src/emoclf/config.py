"""One typed configuration for every command: defaults that work, YAML in and out, CLI flags.

``Config`` (sections ``data``, ``preprocess``, ``model``, ``train``, ``tracking``) is what a training
is: saved with every run and model. The ``*Options`` dataclasses are the other commands' options.
Each field's ``help`` metadata becomes its ``--help`` line, and choices are ``Literal`` types, so
``emoclf.cli`` builds every flag from here; field names are unique across the sections so that
every field has a short flag (``--epochs``, ``--text-column``).
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from emoclf.errors import ConfigError

Imbalance = Literal["auto", "none", "oversample", "undersample", "class-weight", "focal", "logit-adjust", "asl"]
Task = Literal["auto", "single-label", "multi-label"]
TrainPrecision = Literal["auto", "fp32", "bf16", "fp16"]
PredictPrecision = Literal["fp32", "bf16"]  # a PyTorch model's weights when predicting
ExportPrecision = Literal["fp32", "int8", "fp16"]
TextMode = Literal["keep", "remove", "token"]
IMBALANCE_STRATEGIES: tuple[str, ...] = typing.get_args(Imbalance)
Budget = Literal["steps", "epochs"]
LabelIssuesAction = Literal["drop", "relabel"]
# cleanlab.filter.find_label_issues's filter_by methods.
IssueFilter = Literal[
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
    "low_normalized_margin",
    "low_self_confidence",
]
# The optimizer steps below which a training is raised to this floor (docs/experiments.md, "Minimum steps").
MIN_STEPS = 120
# compare --quick, and the first model of --hierarchy auto: one epoch of 4,000 rows in batches of 16, 250
# updates for the examples of 125 batches of 32, which ranked the strategies like the full comparison where
# 125 did not (docs/experiments.md).
QUICK_MAX_SAMPLES = 4000
QUICK_EPOCHS = 1.0
QUICK_BATCH_SIZE = 16
# A model's name: a Hugging Face repository name, also an MLflow logged model's name and artifact path.
MODEL_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
# Sources that are not local paths: Hugging Face datasets, MLflow model URIs; and the demo set's name.
HF_PREFIX = "hf:"
MLFLOW_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")
DEMO_DATA = "demo"
DEMO_SOURCE = "the embedded demo set"  # how reports, cards and runs name it


def read_yaml(path: Path, what: str, fix: str = "") -> Any:
    """The document in the YAML file ``path``, or one line naming ``what`` it is (``config file``, ``search space
    file``) and what was wrong: every YAML file emoclf reads goes through here."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}{fix}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A field whose ``help`` becomes its CLI flag's help line (every default here is immutable).

    ``positional`` (an argparse ``nargs``, or True for one required value) makes it a positional
    argument; ``required`` a flag that must be given; ``path`` (``data``, ``file``, ``folder``, ``model``)
    a local path that must exist, checked by ``check_paths``."""
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class DataConfig:
    data: str | None = _f(
        None,
        "Data: a file, a folder with train/validation/test files, or hf:<dataset id>. Default: the embedded demo set.",
        path="data",
    )
    val_data: str | None = _f(
        None, "A validation file to use instead of the source's own (or a carved) validation split.", path="file"
    )
    test_data: str | None = _f(
        None, "A test file to use instead of the source's own (or a carved) test split; never resampled.", path="file"
    )
    format: str | None = _f(
        None, "Force the file format (csv, tsv, jsonl, parquet, txt) instead of detecting it from the extension."
    )
    text_column: str = _f("text", "Column holding the text.")
    label_column: str = _f(
        "label",
        "Column holding the label (string or integer), or a text's labels: 'joy,relief', a JSON list, or label ids "
        "'3,17'. Without it, one 0/1 column per label is read as multi-label data.",
    )
    task: Task = _f(
        "auto",
        "single-label (one class per text) or multi-label (any number of labels per text, each with its own "
        "threshold); auto: multi-label when a text has several labels (a list, separated labels, 0/1 columns).",
    )
    label_separator: str = _f(",", "Multi-label: what separates a text's labels in one cell ('joy,relief').")
    allow_no_label: bool = _f(
        False,
        "Multi-label: texts may have no label (an empty label cell is data, and a prediction may be empty); "
        "otherwise an empty label cell is refused and every text gets at least its most probable label.",
    )
    label_names: str | None = _f(
        None,
        "Names of integer labels 0..K-1: a file with one name per line (line k names label k, as GoEmotions' "
        "labels.txt) or a comma-separated list; the labels are then read, trained and saved as those names. "
        "Default: the labels.txt of the data folder, or beside the data file, if there is one.",
        metavar="FILE|NAMES",
    )
    label_map: str | None = _f(
        None,
        "Train on coarser labels: a YAML or JSON file mapping each group to its labels (GoEmotions' "
        "ekman_mapping.json); every label is replaced by its group as the data is read (a text's labels by the set "
        "of their groups; a label in no group keeps its name), and the map is saved with the model, so evaluating "
        "a file of the fine labels maps them alike.",
        metavar="FILE",
    )
    encoding: str = _f("utf-8", "Text encoding of the input files (utf-8 with or without BOM is read cleanly).")
    val_size: float = _f(0.1, "Share of the training data carved out for validation when no validation split is given.")
    test_size: float = _f(0.1, "Share of the data held out for testing when no test split is given.")
    split_seed: int = _f(42, "Seed of the stratified split.")
    strict: bool = _f(False, "Refuse empty or missing texts instead of dropping and counting them.")
    drop_duplicates: bool = _f(True, "Drop exact duplicate rows from the training split (they are always counted).")
    drop_leakage: bool = _f(True, "Drop training rows whose text also occurs in validation or test (always counted).")
    max_samples: int | None = _f(
        None,
        "Use at most this many training rows (stratified), for quick runs; validation is capped by "
        "--max-val-samples, test never (its score is the model's).",
    )
    max_val_samples: int | None = _f(
        None, "Use at most this many validation rows (stratified), for quick runs and searches."
    )
    exclude_label_issues: str | None = _f(
        None,
        "A label_issues.csv of 'emoclf audit': drop (or relabel) its rows in "
        "the training split only, matched by text after preprocessing and "
        "given label; validation and test are never changed.",
        metavar="FILE",
        path="file",
    )
    label_issues_action: LabelIssuesAction = _f(
        "drop",
        "With --exclude-label-issues: drop the listed training rows, or relabel them with their suggested_label.",
    )
    label_issues_top: int | None = _f(
        None,
        "With --exclude-label-issues: only the file's first N rows, the N most "
        "likely label errors (the audit ranks them; a linear audit flags many).",
    )


@dataclass
class PreprocessConfig:
    lowercase: bool = _f(True, "Lower-case the text.")
    urls: TextMode = _f("token", "URLs: keep, remove, or token (replace by 'http').")
    users: TextMode = _f("token", "@user mentions: keep, remove, or token (replace by '@user').")
    # On by default as in the original pipeline; benchmarks/preprocess.py finds no option better beyond noise.
    strip_non_word: bool = _f(True, "Replace non-word characters by spaces (as the original pipeline did).")
    collapse_whitespace: bool = _f(True, "Collapse runs of whitespace and strip the ends.")
    normalize_unicode: bool = _f(
        True,
        "Normalise Unicode to NFC first, so that a text typed with combined characters (e + an accent) and with "
        "precomposed ones is one text.",
    )


@dataclass
class ModelConfig:
    model: str = _f(
        "minilm", "Model: 'minilm' (offline all-MiniLM-L6-v2), a hub id such as bert-base-uncased, or a local path."
    )
    max_length: int | None = _f(
        None, "Token limit per text; default: from the data profile (99th percentile, multiple of 8)."
    )
    model_name: str | None = _f(
        None,
        "Name of the trained model: its model card's title, its MLflow logged model, its page. Default: "
        "<base model>-finetuned-<data>, e.g. all-MiniLM-L6-v2-finetuned-emotion.",
    )
    license: str | None = _f(
        None,
        "License of the trained model, for its model card (a Hugging Face license id such as apache-2.0). "
        "Default: the base model's, when its model card names one.",
    )
    language: str | None = _f(
        None,
        "Language(s) of the texts, for the model card: ISO 639-1 codes, comma-separated (en,fr). Default: the "
        "base model's, when its model card names one language.",
    )


@dataclass
class TrainConfig:
    output_dir: str = _f("runs/latest", "Folder for checkpoints, the final model and reports.")
    overwrite: bool = _f(
        False, "Replace the training already in output_dir (refused without it, so no model is replaced by surprise)."
    )
    epochs: float = _f(3.0, "Maximum number of epochs (early stopping may end sooner).")
    max_steps: int | None = _f(
        None,
        "Train for exactly this many optimizer steps instead of --epochs, even below the --min-steps floor "
        "(compare gives every arm the same number this way).",
    )
    min_steps: int = _f(
        MIN_STEPS,
        "Train for at least this many optimizer steps: on small data, epochs x rows / "
        "batch size gives too few to learn (the log and the report say when it applies); "
        "an explicit --max-steps wins over it.",
    )
    batch_size: int = _f(32, "Training batch size per device.")
    eval_batch_size: int = _f(128, "Evaluation and prediction batch size.")
    learning_rate: float = _f(1e-4, "Peak learning rate (AdamW).")
    weight_decay: float = _f(0.01, "AdamW weight decay.")
    warmup_ratio: float = _f(0.1, "Share of steps with linear warm-up (0 to below 1).")
    early_stopping: bool = _f(True, "Stop when validation macro-F1 has not improved for --patience evaluations.")
    patience: int = _f(2, "Early stopping: evaluations without macro-F1 improvement before stopping.")
    seed: int = _f(42, "Seed for initialisation, shuffling and sampling.")
    precision: TrainPrecision = _f(
        "auto", "fp32, bf16, fp16, or auto (bf16 on GPUs that have it and on CPUs with AMX)."
    )
    imbalance: Imbalance = _f(
        "auto",
        "Imbalance handling. Single-label: none, oversample, undersample, class-weight, focal, logit-adjust; "
        "multi-label: none, class-weight (per-label positive weights), focal, asl (asymmetric loss); auto: when "
        "imbalanced (see --imbalance-threshold), class-weight for single-label data and asl for multi-label, "
        "else none.",
    )
    imbalance_threshold: float = _f(
        3.0, "auto: treat the data as imbalanced when largest/smallest class count exceeds this."
    )
    focal_gamma: float = _f(2.0, "Focal loss focusing parameter (0 equals cross-entropy).")
    focal_alpha: bool = _f(True, "Focal loss: weight classes by inverse frequency (alpha).")
    asl_gamma_neg: float = _f(
        4.0, "Asymmetric loss (multi-label): focusing of the negatives (Ridnik et al. 2021; positives: 0)."
    )
    asl_clip: float = _f(0.05, "Asymmetric loss: probability margin below which an easy negative costs nothing.")
    threshold: float | None = _f(
        None,
        "Multi-label: one decision threshold for every label; default: a threshold per label fitted on validation "
        "to maximise that label's F1.",
    )
    layer_decay: float = _f(
        1.0,
        "Layer-wise learning-rate decay: each encoder layer below the top learns at this "
        "factor of the one above (embeddings lowest); 1: one rate for all.",
    )
    label_smoothing: float = _f(
        0.0,
        "Label smoothing: the target gives this share of its weight evenly to all "
        "classes (0: off; works with every loss).",
    )
    hierarchy: str | None = _f(
        None,
        "Groups of labels trained with a hierarchy-aware loss: name=label,label;name=label, "
        "a YAML or JSON file {group: [labels]} (GoEmotions' ekman_mapping.json; a label in no group is a group of "
        "its own), or auto (groups of the classes a first, quick model confuses on validation). Predictions then "
        "carry the group too.",
    )
    hierarchy_weight: float = _f(0.5, "Weight of the group term of the hierarchy-aware loss (0: the flat loss).")
    calibrate: bool = _f(True, "Fit a softmax temperature on validation (changes confidences, never labels).")
    class_bias: bool = _f(False, "Fit per-class logit offsets on validation to maximise macro-F1 (changes labels).")
    group_by_length: bool = _f(True, "Batch texts of similar length together (less padding, faster).")
    checkpoint_steps: int | None = _f(
        None, "Evaluate and checkpoint every N optimizer steps; default: at the end of every epoch."
    )
    save_total_limit: int = _f(
        2, "Keep at most this many checkpoints (at least 2: the best and the newest, to resume from)."
    )
    num_threads: int | None = _f(
        None,
        "CPU threads for torch (default: torch's choice). They sleep while they wait for work "
        "(OMP_WAIT_POLICY=PASSIVE unless the environment sets it), so another busy process slows training less.",
    )


@dataclass
class TrackingConfig:
    tracking: bool = _f(True, "Log the run to MLflow (disable with --no-tracking).")
    tracking_uri: str | None = _f(None, "MLflow tracking URI; default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db.")
    tracking_optional: bool = _f(
        False, "Train even when the tracking server is unreachable at start; results stay in output_dir."
    )
    experiment: str = _f("emoclf", "MLflow experiment name.")
    run_name: str | None = _f(None, "MLflow run name.")
    register_name: str | None = _f(None, "Register the logged model under this name in the model registry.")


@dataclass
class Config:
    """What a training is: sections ``data``, ``preprocess``, ``model``, ``train``, ``tracking``.

    ``Config()`` holds the defaults (``configs/default.yaml``); ``replace(epochs=2, data="x.csv")`` returns a
    validated copy with fields set by name (names are unique across sections); ``from_yaml``/``save_yaml``
    read and write the YAML form. Invalid values raise ``ConfigError`` quoting what was given.
    """

    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Reject values that would only fail deep inside a library, quoting what was given."""
        d, t = self.data, self.train
        for name in ("val_size", "test_size"):
            v = getattr(d, name)
            if not 0.0 < v < 1.0:
                raise ConfigError(f"{name} must be between 0 and 1 (exclusive), got {v}")
        if d.val_size + d.test_size >= 1.0:
            raise ConfigError(f"val_size + test_size must be below 1, got {d.val_size} + {d.test_size}")
        for name in ("epochs", "batch_size", "eval_batch_size", "learning_rate"):
            if getattr(t, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(t, name)}")
        if t.threshold is not None and not 0.0 < t.threshold < 1.0:
            raise ConfigError(f"threshold must be between 0 and 1 (exclusive), got {t.threshold}")
        if t.asl_gamma_neg < 0 or not 0.0 <= t.asl_clip < 1.0:
            raise ConfigError(
                f"asl_gamma_neg must be at least 0 and asl_clip at least 0 and below 1, got {t.asl_gamma_neg} and "
                f"{t.asl_clip}"
            )
        if not d.label_separator.strip():
            raise ConfigError(f"label_separator must be a visible character, got {d.label_separator!r}")
        if not 0.0 <= t.warmup_ratio < 1.0:
            raise ConfigError(f"warmup_ratio must be at least 0 and below 1, got {t.warmup_ratio}")
        for name in ("max_samples", "max_val_samples", "label_issues_top"):
            if getattr(d, name) is not None and getattr(d, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(d, name)}")
        if not 0.0 < t.layer_decay <= 1.0:
            raise ConfigError(f"layer_decay must be above 0 and at most 1, got {t.layer_decay}")
        if t.hierarchy_weight < 0:
            raise ConfigError(f"hierarchy_weight must be at least 0, got {t.hierarchy_weight}")
        if not 0.0 <= t.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be at least 0 and below 1, got {t.label_smoothing}")
        for name in ("max_steps", "checkpoint_steps"):
            if getattr(t, name) is not None and getattr(t, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(t, name)}")
        if t.min_steps < 0:
            raise ConfigError(f"min_steps must be at least 0, got {t.min_steps}")
        if t.save_total_limit < 2:
            # With one slot the Trainer deletes the newest checkpoint whenever it is not the best one.
            raise ConfigError(
                f"save_total_limit must be at least 2 (the best checkpoint and the newest), got {t.save_total_limit}"
            )
        if t.patience < 1:
            raise ConfigError(f"patience must be at least 1, got {t.patience}")
        name = self.model.model_name
        if name is not None and not re.fullmatch(MODEL_NAME, name):
            raise ConfigError(
                f"model_name must be 1 to 96 letters, digits, '-', '_' or '.', starting with a letter or digit "
                f"(a Hugging Face repository name), got {name!r}"
            )
        languages = (self.model.language or "en").split(",")
        if not all(re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]+)*", code.strip()) for code in languages):
            raise ConfigError(f"language must be ISO 639-1 codes, comma-separated (en,fr), got {self.model.language!r}")
        if self.model.license is not None and not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", self.model.license):
            raise ConfigError(
                f"license must be a Hugging Face license id in lower case (apache-2.0, mit, cc-by-4.0, other), "
                f"got {self.model.license!r}"
            )
        if self.model.max_length is not None and self.model.max_length < 8:
            raise ConfigError(f"max_length must be at least 8, got {self.model.max_length}")
        for section in (d, self.preprocess, t):
            for f in fields(section):
                check_choice(type(section), f.name, getattr(section, f.name))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Config:
        unknown = set(raw) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(
                f"unknown config section(s): {', '.join(sorted(unknown))}; expected {', '.join(SECTIONS)}"
            )
        return cls(**{name: _build(SECTIONS[name], raw.get(name) or {}, name) for name in SECTIONS})

    @classmethod
    def from_yaml(cls, path: str | Path) -> Config:
        path = Path(path)
        raw = read_yaml(path, "config file") or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
        return cls.from_dict(raw)

    def save_yaml(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")
        return path

    def replace(self, **overrides: Any) -> Config:
        """A copy with flat field overrides (``epochs=1``), as the CLI passes them."""
        raw = self.to_dict()
        for key, value in overrides.items():
            if key not in FIELD_SECTION:
                raise ConfigError(f"unknown setting {key!r}")
            raw[FIELD_SECTION[key]][key] = value
        return Config.from_dict(raw)


THRESHOLD_HELP = (
    "Multi-label models: one decision threshold for every label instead of the per-label thresholds saved with "
    "the model."
)
MODEL_HELP = "Model folder, ONNX export folder or MLflow model URI (runs:/..., models:/...)."
BATCH_HELP = "Prediction batch size."


@dataclass
class TrainOptions:
    resume: str | None = _f(
        None,
        "Continue the training in RUN_DIR (default: --output-dir) from its newest complete "
        "checkpoint, with its saved config and in its MLflow run; flags given now override "
        "the saved config.",
        nargs="?",
        const="",
        metavar="RUN_DIR",
    )


@dataclass
class CompareOptions:
    strategies: str | None = _f(
        None,
        "Comma-separated imbalance strategies to compare, or flat,hierarchical: the config's "
        "strategy without and with --hierarchy. Default: every strategy of the data's task (single-label: none, "
        "oversample, undersample, class-weight, focal, logit-adjust; multi-label: none, class-weight, focal, asl).",
    )
    seeds: int = _f(1, "Trainings per strategy, seeds SEED, SEED+1, ...")
    quick: bool = _f(
        False,
        "Cut-down run: at most 4000 training rows, 1 epoch in batches of 16 (at least "
        "--min-steps), stratified subsets of at most 500 validation and test rows.",
    )
    budget: Budget = _f(
        "steps",
        "steps: every strategy trains the same number of optimizer steps (the unresampled "
        "training's epochs x rows / batch size), without early stopping; epochs: the same "
        "epochs, so resampling changes the steps.",
    )


@dataclass
class TuneOptions:
    n_trials: int = _f(20, "Trials to finish (completed or pruned) in the study, counting those of earlier runs of it.")
    timeout: float | None = _f(None, "Start no new trial after this many seconds (the trial under way finishes).")
    study_name: str = _f("emoclf-tune", "Optuna study name; the same name and storage resume the study.")
    storage: str | None = _f(None, "Optuna storage URL (default: sqlite:///OUTPUT_DIR/study.db).")
    space: str | None = _f(
        None,
        "YAML search space replacing the built-in one (format in docs/tuning.md).",
        metavar="FILE.yaml",
        path="file",
    )
    pruner: Literal["median", "none"] = _f(
        "median",
        "Stop hopeless trials early: median (Optuna's MedianPruner on each evaluation's validation macro-F1) or none.",
    )
    refit: bool = _f(
        False,
        "Retrain the best config once on all the training data (no --max-samples or "
        "--max-val-samples cap) instead of keeping the best trial's model.",
    )


@dataclass
class AuditOptions:
    audit_model: Literal["linear", "tfidf", "finetune"] = _f(
        "linear",
        "What gives the out-of-fold probabilities: linear (a logistic regression on the base model's "
        "frozen mean-pooled embeddings: one pass of the model over the texts), tfidf (a logistic "
        "regression on the texts' word 1-2-gram TF-IDF: seconds, no model; strong where the labels follow "
        "words, as hashtag labels do) or finetune (one fine-tuning per fold with the train settings: about "
        "--folds trainings, sharper probabilities).",
    )
    folds: int = _f(
        5, "Folds of the out-of-fold probabilities (stratified): each row is scored by a model that never saw it."
    )
    filter_by: IssueFilter = _f(
        "prune_by_noise_rate",
        "cleanlab's method for deciding which labels are issues (cleanlab.filter.find_label_issues).",
    )
    out: str = _f("audit", "Folder for label_issues.csv, label_issues.html and audit.json.")


@dataclass
class InspectOptions:
    out: str = _f("inspect", "Folder for data_profile.json and class_distribution.png.")


@dataclass
class EvaluateOptions:
    model: str | None = _f(None, MODEL_HELP, required=True, path="model")
    out: str = _f("evaluation", "Folder for the report.")
    batch_size: int = _f(64, BATCH_HELP)
    threshold: float | None = _f(None, THRESHOLD_HELP)


@dataclass
class ReportOptions:
    runs: list[str] = _f(
        (),
        "Run folders to compare: training output folders (with report/) or report folders.",
        positional="+",
        metavar="RUN_DIR",
        path="folder",
    )
    out: str = _f("runs-report.html", "The HTML page to write.")


@dataclass
class PredictOptions:
    texts: list[str] = _f((), "Texts to classify.", positional="*", metavar="TEXT")
    model: str | None = _f(None, MODEL_HELP, required=True, path="model")
    input: str | None = _f(None, "File of texts (csv, tsv, jsonl, parquet, or txt).", path="file")
    output: str | None = _f(
        None, "Where to write predictions: .csv, .tsv, .jsonl or .parquet (default: stdout as CSV)."
    )
    text_column: str = _f("text", "Text column of --input.")
    batch_size: int = _f(64, BATCH_HELP)
    precision: PredictPrecision = _f(
        "fp32",
        "PyTorch models: bf16 weights, faster on CPUs with AMX and on GPUs "
        "(slower elsewhere), with slightly different probabilities; fp32 "
        "predicts exactly as evaluated.",
    )
    threshold: float | None = _f(None, THRESHOLD_HELP)


@dataclass
class ExportOptions:
    model: str | None = _f(
        None, "Model folder or MLflow model URI (runs:/..., models:/...).", required=True, path="model"
    )
    data: str | None = _f(
        None, "Labelled data to compare on: the test split of a folder, or a file.", required=True, path="data"
    )
    format: Literal["onnx"] = _f("onnx", "Export format.")
    quantize: Literal["int8", "fp16"] | None = _f(
        None, "int8: dynamic int8 weights, fastest on CPUs; fp16: half precision, for GPUs (default: fp32)."
    )
    portable: bool | None = _f(
        None,
        "int8: 7-bit weights, exact on every CPU. Default: 8-bit weights where this CPU "
        "has VNNI or AMX (such an export refuses to load on x86 CPUs without VNNI, whose "
        "int8 products saturate), 7-bit elsewhere.",
    )
    text_column: str = _f("text", "Text column of --data.")
    label_column: str = _f("label", "Label column of --data.")
    out: str | None = _f(None, "Export folder (default: onnx-<precision> next to the model folder).")
    max_f1_drop: float = _f(1.0, "Fail when macro-F1 drops by more than this many points.")
    batch_size: int = _f(64, BATCH_HELP)
    run_id: str | None = _f(None, "MLflow run to log the report to (default: the run that logged --model, if any).")
    tracking_uri: str | None = _f(
        None, "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)."
    )
    tracking: bool = _f(True, "Log the report to MLflow (when the run is known).")


@dataclass
class ServeOptions:
    model: str | None = _f(None, MODEL_HELP, required=True, path="model")
    host: str = _f(
        "127.0.0.1", "Address to bind (127.0.0.1: this machine only; any other warns unless a token is set)."
    )
    token: str | None = _f(
        None,
        "Require 'Authorization: Bearer TOKEN' on every endpoint but /health (the page at / asks for it). "
        "Default: $EMOCLF_TOKEN, better than this flag, which other users can see in the process list.",
    )
    port: int = _f(8000, "Port.")
    max_texts: int = _f(256, "Most texts per request; more get 413.")
    max_body_bytes: int = _f(1_000_000, "Largest request body; larger get 413.")
    batch_size: int = _f(64, BATCH_HELP)
    workers: int | None = _f(
        None,
        "Server processes, each with its own copy of the model (default: one per usable core on Linux; 1 with a GPU "
        "or elsewhere). Each runs the Python around its requests (HTTP, JSON, tokenising) on a core of its own.",
    )
    threads: int | None = _f(
        None,
        "CPU threads per model call (default: 1, and a worker runs as many calls at once as it has cores; with "
        "--batching, the worker's share of the cores). More make one large request faster, not many small ones.",
    )
    precision: PredictPrecision = _f(
        "fp32",
        "PyTorch models: bf16 weights, faster on CPUs with AMX and on GPUs "
        "(slower elsewhere); fp32 predicts exactly as evaluated.",
    )
    threshold: float | None = _f(None, THRESHOLD_HELP)
    batching: bool = _f(
        False,
        "Run each worker's concurrent requests one model call at a time, sharing a call when the model computes "
        "each text independently of its batch (fp32). Off by default: with MiniLM on 2 cores separate calls "
        "answered more texts/s under load (docs/inference-speed.md); it pays when the model is cheap next to requests.",
    )
    max_wait_ms: float = _f(
        2.0, "With batching: how long a request waits for others already on their way to share its model call."
    )


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "preprocess": PreprocessConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "tracking": TrackingConfig,
}

FIELD_SECTION: dict[str, str] = {}
for _section, _cls in SECTIONS.items():
    for _f_ in fields(_cls):
        assert _f_.name not in FIELD_SECTION, f"duplicate config field {_f_.name}"
        FIELD_SECTION[_f_.name] = _section


def check_paths(cls: type, values: dict[str, Any]) -> None:
    """Refuse a path setting of ``cls`` (a field with ``path`` metadata) that names no existing file or folder,
    in one line naming its flag. The CLI calls this before any heavy library loads, so that a typo is answered
    at once rather than after the seconds torch and transformers take to import."""
    for f in fields(cls):
        kind, value = f.metadata.get("path"), values.get(f.name)
        if not kind or value is None:
            continue
        if f.metadata.get("positional") or (cls is DataConfig and f.name == "data"):  # the CLI's DATA, RUN_DIR
            flag = f.metadata.get("metavar", "DATA")
        else:
            flag = "--" + f.name.replace("_", "-")
        for item in value if isinstance(value, (list, tuple)) else [value]:
            path = Path(item)
            if item.startswith((HF_PREFIX, *MLFLOW_SCHEMES)) or (kind == "data" and item == DEMO_DATA):
                continue
            if kind == "model" and path.with_name(f".{path.name}.old").is_dir():
                continue  # a save cut short: loading the model says where the previous one is
            if not path.exists():
                what = {"model": "model folder", "folder": "folder", "file": "file"}.get(kind, "file or folder")
                raise ConfigError(f"{flag} {item}: no such {what}")
            if kind in ("model", "folder") and not path.is_dir():
                raise ConfigError(f"{flag} {item}: a file, not a folder; give a {'model ' * (kind == 'model')}folder")


def _optional(cls: type, name: str) -> tuple[type, bool]:
    hint = typing.get_type_hints(cls)[name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def field_type(cls: type, name: str) -> type:
    """The concrete type of a field (``int | None`` -> ``int``; a ``Literal`` of strings -> ``str``)."""
    kind = _optional(cls, name)[0]
    return str if typing.get_origin(kind) is Literal else kind


def choices(cls: type, name: str) -> tuple[str, ...] | None:
    """The values a ``Literal`` field admits, or None."""
    kind = _optional(cls, name)[0]
    return typing.get_args(kind) if typing.get_origin(kind) is Literal else None


def check_choice(cls: type, name: str, value: Any) -> None:
    admitted = choices(cls, name)
    if admitted and value not in admitted and not (value is None and _optional(cls, name)[1]):
        raise ConfigError(f"{name} must be one of {', '.join(admitted)}; got {value!r}")


def _coerce(cls: type, name: str, value: Any, section: str) -> Any:
    want, optional = _optional(cls, name)
    if value is None and optional:
        return None
    want = field_type(cls, name)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    # bool is a subclass of int: `batch_size: yes` must not pass as 1.
    if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
        raise ConfigError(f"{section}.{name} must be {want.__name__}, got {value!r}")
    return value


def _build(cls: type, raw: dict[str, Any], section: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"section {section} must be a mapping, got {raw!r}")
    known = {f.name for f in fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(
            f"unknown {section} setting(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
        )
    return cls(**{k: _coerce(cls, k, v, section) for k, v in raw.items()})
