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
from emoclf.data.labels import from_indicators, holds_several, indicator_columns
from emoclf.data.validate import check_types, names_of_ids, refuse_unnamed_ids
from emoclf.errors import ConfigError, DataError
from emoclf.network import unreachable

log = logging.getLogger(__name__)

OUTPUT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".txt": "txt"}
SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "val", "valid", "dev"), "test": ("test",)}
LABEL_NAMES_FILE = "labels.txt"  # in a data folder: the names of integer labels, line k for id k (as GoEmotions)


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
    per line: a label must never be read as part of a text, and a ``;`` inside a text never cuts it. Every line
    is a row, a blank one too (it gets no prediction, marked ``skipped``), so that output row k is input line k."""
    every = text.splitlines()
    rows = pd.Index(range(1, len(every) + 1), name="row")
    lines = [(line, n) for n, line in enumerate(every, start=1) if line.strip()]
    known = set(labels)
    labelled = [line.rpartition(";")[2].strip() in known and ";" in line for line, _ in lines]
    if lines and all(labelled):
        df = _read_txt(text, path).set_index("row").reindex(rows)
        df["text"] = df["text"].fillna("")
        log.info("%s: read as 'text;label' lines (every line ends in one of the model's labels)", path)
        return df
    if any(labelled):
        first = next(n for (_, n), ok in zip(lines, labelled) if not ok)
        example = next(n for (_, n), ok in zip(lines, labelled) if ok)
        raise DataError(
            f"{path}: line {first}: some lines end in ';<label>' (line {example}) and some do not; a .txt file to "
            "predict is either 'text;label' on every line or one text per line: fix the file, or use a CSV with a "
            "text column"
        )
    return pd.DataFrame({"text": every}, index=rows)


def read_table(
    path: str | Path, cfg: DataConfig, txt_labels: list[str] | None = None, header: bool = True
) -> pd.DataFrame:
    """Every column of one file, as read, in file order; the index (``row``) is each record's row or line number.

    A ``txt`` file is ``text;label`` lines (split on the last ``;``). With ``txt_labels`` (texts to
    predict), it may also be one text per line: see ``_read_txt_to_predict``. ``header=False``: a CSV or TSV
    whose first line is data; its columns are numbered from 0.
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
                    header=0 if header else None,
                )
            except pd.errors.ParserError as e:
                raise DataError(f"{path}: malformed {fmt.upper()}: {e}") from None
            except pd.errors.EmptyDataError:
                raise DataError(f"{path}: the file is empty") from None
            # Header is row 1, so data rows start at 2: the number an editor shows for one-line records.
            first = 2 if header else 1
            df.index = pd.RangeIndex(first, len(df) + first, name="row")
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


def read_label_names(spec: str) -> list[str]:
    """``--label-names``: a file with one name per line (line k names label k), or a comma-separated list."""
    path = Path(spec)
    if path.is_file():
        names = _decode(path, "utf-8").splitlines()
        while names and not names[-1].strip():
            names.pop()  # a trailing blank line names nothing
        where = f"--label-names {spec}: line"
    elif "," in spec:
        names, where = spec.split(","), f"--label-names {spec!r}: name"
    else:
        raise DataError(
            f"--label-names {spec}: no such file; give a file with one name per line, or the names separated by commas"
        )
    names = [n.strip() for n in names]
    blank = next((i for i, n in enumerate(names) if not n), None)
    if blank is not None:
        raise DataError(f"{where} {blank + 1} is empty; every id from 0 on needs a name")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(
            f"--label-names {spec}: {', '.join(map(repr, repeated))} named twice; each id needs its own name"
        )
    return names


def _name_labels(df: pd.DataFrame, cfg: DataConfig, names: list[str] | None) -> pd.DataFrame:
    """Integer labels as ``--label-names`` names them; every id must have a name. Cells holding several labels
    (multi-label) are named with their other labels (``emoclf.data.labels.label_sets``)."""
    if names is None:
        return df
    # Cells holding several labels are named with them; cells holding a name already keep it.
    one = ~df["label"].map(lambda v: holds_several(v, cfg.label_separator) or (isinstance(v, str) and v in names))
    named = names_of_ids(df["label"], names).astype(object).where(one, None)
    refuse_unnamed_ids(df.loc[one], named.loc[one], names, cfg.label_column, cfg.label_names or "")
    df["label"] = named.where(named.notna(), df["label"])
    return df


def _headerless(path: Path, df: pd.DataFrame, cfg: DataConfig) -> pd.DataFrame | None:
    """A CSV or TSV without a header row (GoEmotions' published files: text, label ids, comment id), read again
    with the first line as data; None when the first line is a header. Told by its second field, which is
    label ids (``27`` or ``8,20``) where a header would name a column."""
    columns = [str(c) for c in df.columns]
    if cfg.text_column in columns or len(columns) < 2 or detect_format(path, cfg.format) not in ("csv", "tsv"):
        return None
    if not re.fullmatch(r"\s*\d+(\s*,\s*\d+)*\s*", columns[1]):
        return None
    log.info("%s: no header row: column 1 read as the text, column 2 as the label(s)", path)
    raw = read_table(path, cfg, header=False)
    return raw.rename(columns={0: cfg.text_column, 1: cfg.label_column})


def _indicator_labels(path: Path, df: pd.DataFrame, cfg: DataConfig) -> pd.DataFrame | None:
    """Multi-label data given as one 0/1 column per label (and no label column), as text/label/row with a tuple
    of label names per text; None when the file is not of that form."""
    if cfg.task == "single-label" or cfg.label_column in df.columns or cfg.text_column not in df.columns:
        return None
    columns = indicator_columns(df, cfg.text_column)
    if len(columns) < 2:
        return None
    log.info("%s: no %r column; %d 0/1 columns read as one label each", path, cfg.label_column, len(columns))
    out = pd.DataFrame(
        {"text": df[cfg.text_column].to_numpy(), "label": from_indicators(df, columns, str(path)).to_numpy()}
    )
    out["row"] = df.index.to_numpy()
    out.attrs["source"] = str(path)
    check_types(out, cfg.text_column, None)
    return out


def read_file(path: str | Path, cfg: DataConfig, names: list[str] | None = None) -> pd.DataFrame:
    """Read one labelled file into ``text``/``label``/``row`` columns, naming the file in every error; with
    ``names`` (``--label-names``), integer labels become those names."""
    df = read_table(path, cfg)
    if cfg.label_column not in df.columns:
        unheaded = _headerless(Path(path), df, cfg)
        df = df if unheaded is None else unheaded
    indicators = _indicator_labels(Path(path), df, cfg)
    if indicators is not None:
        return indicators
    error = missing_columns_error(path, df, {cfg.text_column: "--text-column", cfg.label_column: "--label-column"})
    if error:
        raise error
    out = pd.DataFrame(
        {"text": df[cfg.text_column].to_numpy(), "label": df[cfg.label_column].to_numpy(), "row": df.index.to_numpy()}
    )
    out.attrs["source"] = str(path)
    check_types(out, cfg.text_column, cfg.label_column)
    return _name_labels(out, cfg, names)


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


def _class_names(value, names: list[str]):
    """A ClassLabel id as its name (None for -1, the datasets convention for no label), or a list of ids as names."""
    if isinstance(value, (list, tuple)) or getattr(value, "ndim", 0):  # a list, or an array of ids
        return [names[int(i)] for i in value]
    return names[value] if value is not None and value >= 0 else None


def read_hf(
    spec: str, cfg: DataConfig, given: list[str] | None = None
) -> tuple[dict[str, pd.DataFrame], list[str] | None]:
    """Load ``hf:<id>`` from the hub, or ``hf:<folder>`` saved with ``save_to_disk``; keep ClassLabel names,
    unless ``given`` (``--label-names``) names the ids."""
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
        # A ClassLabel, or a list of them (multi-label: GoEmotions on the hub is a Sequence of ClassLabel).
        classes = feature if isinstance(feature, datasets.ClassLabel) else getattr(feature, "feature", None)
        if isinstance(classes, datasets.ClassLabel) and given is None:
            names = list(classes.names)
        df = part.select_columns([cfg.text_column, cfg.label_column]).to_pandas()
        df.columns = ["text", "label"]
        if names is not None:
            df["label"] = [_class_names(v, names) for v in df["label"]]
        df["row"] = range(1, len(df) + 1)
        df.attrs["source"] = f"{spec} [{split}]"
        check_types(df, cfg.text_column, cfg.label_column)
        splits[canonical] = _name_labels(df, cfg, given)
    if "train" not in splits:
        raise DataError(f"{spec}: no train split (found {', '.join(ds.keys())})")
    return splits, given or names


def with_label_names(cfg: DataConfig) -> DataConfig:
    """``cfg``, naming integer labels by the ``labels.txt`` of the data folder, or of the data file's folder (as
    GoEmotions is published: ``train.tsv`` beside ``labels.txt``), when ``--label-names`` is not given."""
    path = Path(cfg.data) if cfg.data and not cfg.data.startswith(HF_PREFIX) else None
    folder = None if path is None else path if path.is_dir() else path.parent
    if cfg.label_names or folder is None or not (folder / LABEL_NAMES_FILE).is_file():
        return cfg
    log.info("names of integer labels: %s", folder / LABEL_NAMES_FILE)
    return DataConfig(**{**cfg.__dict__, "label_names": str(folder / LABEL_NAMES_FILE)})


def read_source(cfg: DataConfig) -> tuple[dict[str, pd.DataFrame], list[str] | None]:
    """Read whatever splits the source provides; returns them and the label names if it defines them."""
    spec = cfg.data
    names = read_label_names(cfg.label_names) if cfg.label_names else None
    if spec is None or spec == DEMO_DATA:
        demo = read_file(demo_path(), DataConfig())
        demo.attrs["source"] = DEMO_SOURCE
        return {"train": demo}, None
    if spec.startswith(HF_PREFIX):
        return read_hf(spec, cfg, names)
    path = Path(spec)
    if path.is_dir():
        return {split: read_file(p, cfg, names) for split, p in _find_split_files(path).items()}, names
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    return {"train": read_file(path, cfg, names)}, names


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
    """Write ``df`` in the format its path names, or as CSV on stdout.

    The file is written beside the target under a temporary name and renamed over it once complete: a full
    disk or a kill leaves the previous file (or none), never a truncated one that still parses.
    """
    fmt = output_format(path)
    if path is None:
        df.to_csv(sys.stdout, index=False)
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        if fmt == "parquet":
            df.to_parquet(tmp, index=False)
        elif fmt == "jsonl":
            df.to_json(tmp, orient="records", lines=True, force_ascii=False)
        else:
            df.to_csv(tmp, index=False, sep="\t" if fmt == "tsv" else ",")
        os.replace(tmp, target)
    except OSError as e:
        raise DataError(
            f"--output {path}: cannot write it ({e.strerror or e}); "
            + ("the previous file is unchanged" if target.exists() else "nothing was written")
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
