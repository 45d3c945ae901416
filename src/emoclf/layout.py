"""The names of everything emoclf writes into a run folder and a model folder, and the version that wrote it.

One low module that every other imports, so that no module imports a higher one to learn a file name. A run
folder (``emoclf train --output-dir``)::

    model/            MODEL_DIR: the model folder below, put in place once evaluated
    report/           REPORT_DIR: METRICS_JSON, REPORT_HTML, ... and the data profile
    checkpoints/      CHECKPOINT_DIR: checkpoint-N, each renamed out of STAGING_DIR once complete
    config.yaml, environment.json, train.log, run_info.json, tracking_failures.json

A model folder (``model/`` or an export): META_FILE (``emoclf.json``), the weights (WEIGHTS_FILE or ONNX_FILE), the
tokenizer's files, CARD_FILE (the model card) and, in an export, EXPORT_REPORT_FILE.
"""

from __future__ import annotations

__version__ = "0.1.0"

# A run folder.
MODEL_DIR = "model"
STAGED_MODEL_DIR = ".model.staged"  # the new model while it is evaluated; renamed to MODEL_DIR when that passes
REPORT_DIR = "report"
CHECKPOINT_DIR = "checkpoints"
STAGING_DIR = ".staging"  # inside CHECKPOINT_DIR: checkpoints being written, renamed out when complete
ENVIRONMENT_FILE = "environment.json"
CONFIG_FILE = "config.yaml"
LOG_FILE = "train.log"  # everything logged during the training, library warnings included
RUN_INFO_FILE = "run_info.json"  # the MLflow run and store, for --resume
FAILURES_FILE = "tracking_failures.json"  # only after an MLflow outage: what could not be logged
LOCK_FILE = ".lock"  # held by the training that writes the folder, from before it is prepared to its end
OWNER_FILE = ".lock.owner"  # who holds it: process, host, since when

# A report folder (REPORT_DIR of a run, or ``emoclf evaluate --out``).
METRICS_JSON = "metrics.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
CONFUSION_PNG = "confusion_matrix.png"
COOCCURRENCE_PNG = "label_cooccurrence.png"  # multi-label
PER_CLASS_PNG = "per_class_f1.png"
CURVES_PNG = "training_curves.png"
RELIABILITY_PNG = "reliability.png"
MISCLASSIFIED_CSV = "misclassified.csv"
CONTEXT_JSON = "context.json"
HISTORY_JSON = "history.json"
PROFILE_JSON = "data_profile.json"
CLASS_PNG = "class_distribution.png"
# --hierarchy auto, in REPORT_DIR: what was found (null: flat; --resume reads it back) and its tree.
HIERARCHY_JSON = "hierarchy.json"
DENDROGRAM_PNG = "hierarchy_dendrogram.png"
HIERARCHY_FIRST_MODEL_DIR = "hierarchy-first-model"  # in the run folder; removed once its groups are read

# A model folder.
META_FILE = "emoclf.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
ONNX_FILE = "model.onnx"
EXPORT_REPORT_FILE = "export_report.json"
