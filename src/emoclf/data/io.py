"""Read labelled text from files, folders, the embedded demo set or a Hugging Face dataset.

Every reader returns a DataFrame with the columns ``text``, ``label`` and ``row`` (the 1-based
record number in its source, so that later checks can name the file and row), and stores the
source in ``df.attrs["source"]``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import sys
from importlib import resources
from pathlib import Path

import pandas as pd

from emoclf.config import DEMO_DATA, DEMO_SOURCE, HF_PREFIX, DataConfig
from emoclf.data.validate import check_types
from emoclf.errors import ConfigError, DataError
from emoclf.network import unreachable

log = logging.getLogger(__name__)

OUTPUT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".txt": "txt"}
SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "val", "valid", "dev"), "test": ("test",)}


def demo_path() -> Path:
    """The embedded demo data set (a CSV shipped inside the package)."""
    return Path(str(resources.files("emoclf") / "resources" / "demo.csv"))


def data_name(source: str) -> str:
    """A data source's short name, for a model's default name: the data set's (``emotion`` for
    ``hf:dair-ai/emotion``, a folder ``emotion/`` or its file ``emotion/train.txt``), else the file's stem."""
    if source in (DEMO_SOURCE, DEMO_DATA):
        return "emoclf-demo"
    path = Path(source.removeprefix(HF_PREFIX).rstrip("/"))
    name = path.stem if path.suffix.lower() in FORMATS else path.name
    if any(name.lower() in names for names in SPLIT_NAMES.values()) and path.parent.name:
        name = path.parent.name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "data"


def detect_format(path: Path, forced: str | None = None) -> str:
    if forced:
        fmt = forced.lower().lstrip(".")
        if fmt not in set(FORMATS.values()):
            raise DataError(f"unknown format {forced!r}; choose one of {', '.join(sorted(set(FORMATS.values())))}")
        return fmt
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise DataError(
            f"{path}: cannot tell the format from the extension {path.suffix!r}; "
            f"use one of {', '.join(sorted(FORMATS))} or pass --format"
        ) from None


def _decode(path: Path, encoding: str) -> str:
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: the file is empty")
    # utf-8-sig reads a BOM cleanly and is otherwise identical to utf-8.
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as e:
        # utf-8-sig counts positions after the BOM; report the byte offset in the file.
        pos = e.start + (3 if codec == "utf-8-sig" and raw.startswith(b"\xef\xbb\xbf") else 0)
        line = raw[:pos].count(b"\n") + 1
        raise DataError(
            f"{path}: not valid {encoding} at byte {pos} (line {line}): {raw[pos : pos + 4]!r}; "
            "pass --encoding with the file's encoding (for example --encoding latin-1)"
        ) from None
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}") from None


def _read_txt(text: str, path: Path) -> pd.DataFrame:
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue  # blank lines hold no record (the published val.txt starts with one)
        body, sep, label = line.rpartition(";")
        if not sep:
            raise DataError(f"{path}: line {lineno}: expected 'text;label' (no ';' found): {line[:60]!r}")
        rows.append((body, label.strip(), lineno))
    return pd.DataFrame(rows, columns=["text", "label", "row"])


def _read_jsonl(text: str, path: Path) -> pd.DataFrame:
    records, lines = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}: line {lineno}: expected a JSON object, got {type(obj).__name__}")
        records.append(obj)
        lines.append(lineno)
    return pd.DataFrame.from_records(records, index=pd.Index(lines, name="row"))


def _read_txt_to_predict(text: str, path: Path, labels: list[str]) -> pd.DataFrame:
    """Lines are ``text;label`` only when every one ends in ``;`` and one of the model's labels, else one text
    per line: a label must never be read as part of a text, and a ``;`` inside a text never cuts it."""
    lines = [(line, n) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    known = set(labels)
    labelled = [line.rpartition(";")[2].strip() in known and ";" in line for line, _ in lines]
    if lines and all(labelled):
        df = _read_txt(text, path)
        log.info("%s: read as 'text;label' lines (every line ends in one of the model's labels)", path)
        return df.set_index("row")
    if any(labelled):
        first = next(n for (_, n), ok in zip(lines, labelled) if not ok)
        example = next(n for (_, n), ok in zip(lines, labelled) if ok)
        raise DataError(
            f"{path}: line {first}: some lines end in ';<label>' (line {example}) and some do not; a .txt file to "
            "predict is either 'text;label' on every line or one text per line: fix the file, or use a CSV with a "
            "text column"
        )
    return pd.DataFrame({"text": [line for line, _ in lines]}, index=pd.Index([n for _, n in lines], name="row"))


def read_table(path: str | Path, cfg: DataConfig, txt_labels: list[str] | None = None) -> pd.DataFrame:
    """Every column of one file, as read, in file order; the index (``row``) is each record's row or line number.

    A ``txt`` file is ``text;label`` lines (split on the last ``;``). With ``txt_labels`` (texts to
    predict), it may also be one text per line: see ``_read_txt_to_predict``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    fmt = detect_format(path, cfg.format)
    if fmt == "parquet":
        try:
            df = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several unrelated types for corrupt files
            raise DataError(f"{path}: cannot read as Parquet: {e}") from None
        if df.empty:
            raise DataError(f"{path}: no data rows")
        df.index = pd.RangeIndex(1, len(df) + 1, name="row")
    else:
        text = _decode(path, cfg.encoding)
        if fmt == "txt":
            df = (
                _read_txt_to_predict(text, path, txt_labels)
                if txt_labels is not None
                else _read_txt(text, path).set_index("row")
            )
        elif fmt == "jsonl":
            df = _read_jsonl(text, path)
        else:
            try:
                df = pd.read_csv(
                    io.StringIO(text),
                    sep="," if fmt == "csv" else "\t",
                    dtype=str,
                    keep_default_na=False,
                    na_values=[""],
                    quoting=csv.QUOTE_MINIMAL,
                )
            except pd.errors.ParserError as e:
                raise DataError(f"{path}: malformed {fmt.upper()}: {e}") from None
            except pd.errors.EmptyDataError:
                raise DataError(f"{path}: the file is empty") from None
            # Header is row 1, so data rows start at 2: the number an editor shows for one-line records.
            df.index = pd.RangeIndex(2, len(df) + 2, name="row")
        if df.empty:
            raise DataError(f"{path}: no data rows (header only)")
    df.attrs["source"] = str(path)
    return df


def missing_columns_error(path, df: pd.DataFrame, wanted: dict[str, str]) -> DataError | None:
    """The error for columns ``wanted`` ({column: its flag}) that ``df`` lacks, naming what it has."""
    missing = [c for c in wanted if c not in df.columns]
    if not missing:
        return None
    found = ", ".join(repr(str(c)) for c in df.columns)
    flags = " / ".join(dict.fromkeys(wanted[c] for c in missing))
    expected = " and ".join(f"{kind} column {c!r}" for c, kind in zip(wanted, ("text", "label")))
    return DataError(
        f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; expected {expected}, "
        f"found {found}; use {flags}"
    )


def read_file(path: str | Path, cfg: DataConfig) -> pd.DataFrame:
    """Read one labelled file into ``text``/``label``/``row`` columns, naming the file in every error."""
    df = read_table(path, cfg)
    error = missing_columns_error(path, df, {cfg.text_column: "--text-column", cfg.label_column: "--label-column"})
    if error:
        raise error
    out = pd.DataFrame(
        {"text": df[cfg.text_column].to_numpy(), "label": df[cfg.label_column].to_numpy(), "row": df.index.to_numpy()}
    )
    out.attrs["source"] = str(path)
    check_types(out, cfg.text_column, cfg.label_column)
    return out


def _find_split_files(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for split, names in SPLIT_NAMES.items():
        for name in names:
            hits = [p for p in sorted(folder.iterdir()) if p.stem.lower() == name and p.suffix.lower() in FORMATS]
            if hits:
                found[split] = hits[0]
                break
    if "train" not in found:
        raise DataError(
            f"{folder}: no training file found; expected train.<{'|'.join(e.lstrip('.') for e in FORMATS)}> "
            "(plus optional validation/val and test files)"
        )
    return found


def read_hf(spec: str, cfg: DataConfig) -> tuple[dict[str, pd.DataFrame], list[str] | None]:
    """Load ``hf:<id>`` from the hub, or ``hf:<folder>`` saved with ``save_to_disk``; keep ClassLabel names."""
    import datasets

    name = spec[len(HF_PREFIX) :]
    if Path(name).exists():
        ds = datasets.load_from_disk(name)
    else:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        if not offline:
            endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
            why = unreachable(endpoint, timeout=3.0)
            if why:
                raise DataError(
                    f"cannot reach the Hugging Face hub at {endpoint} ({why}) to load {name!r}; connect to the "
                    "internet, or save the dataset locally (datasets' save_to_disk) and pass hf:<folder>"
                )
        try:
            ds = datasets.load_dataset(name)
        except Exception as e:  # datasets raises many types; the message is what the user needs
            raise DataError(f"cannot load Hugging Face dataset {name!r}: {e}") from None
    if isinstance(ds, datasets.Dataset):
        ds = datasets.DatasetDict({"train": ds})
    names = None
    splits: dict[str, pd.DataFrame] = {}
    for split, part in ds.items():
        canonical = next((k for k, v in SPLIT_NAMES.items() if split.lower() in v), None)
        if canonical is None:
            log.warning("ignoring split %r of %s", split, name)
            continue
        missing = [c for c in (cfg.text_column, cfg.label_column) if c not in part.column_names]
        if missing:
            raise DataError(
                f"{spec} [{split}]: missing column(s) {', '.join(map(repr, missing))}; found "
                f"{', '.join(map(repr, part.column_names))}; use --text-column / --label-column"
            )
        feature = part.features[cfg.label_column]
        if isinstance(feature, datasets.ClassLabel):
            names = list(feature.names)
        df = part.select_columns([cfg.text_column, cfg.label_column]).to_pandas()
        df.columns = ["text", "label"]
        if names is not None:
            df["label"] = [names[i] if i is not None and i >= 0 else None for i in df["label"]]
        df["row"] = range(1, len(df) + 1)
        df.attrs["source"] = f"{spec} [{split}]"
        check_types(df, cfg.text_column, cfg.label_column)
        splits[canonical] = df
    if "train" not in splits:
        raise DataError(f"{spec}: no train split (found {', '.join(ds.keys())})")
    return splits, names


def read_source(cfg: DataConfig) -> tuple[dict[str, pd.DataFrame], list[str] | None]:
    """Read whatever splits the source provides; returns them and the label names if it defines them."""
    spec = cfg.data
    if spec is None or spec == DEMO_DATA:
        demo = read_file(demo_path(), DataConfig())
        demo.attrs["source"] = DEMO_SOURCE
        return {"train": demo}, None
    if spec.startswith(HF_PREFIX):
        return read_hf(spec, cfg)
    path = Path(spec)
    if path.is_dir():
        return {split: read_file(p, cfg) for split, p in _find_split_files(path).items()}, None
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    return {"train": read_file(path, cfg)}, None


def output_format(path: str | None) -> str:
    """The format of an output file from its extension (CSV on stdout); an unknown one is refused, not guessed."""
    if path is None:
        return "csv"
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ConfigError(
            f"--output {path}: cannot write {suffix or 'a file without an extension'!r}; "
            f"use one of {', '.join(OUTPUT_FORMATS)}"
        )
    return OUTPUT_FORMATS[suffix]


def write_table(df: pd.DataFrame, path: str | None) -> None:
    """Write ``df`` in the format its path names, or as CSV on stdout."""
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
