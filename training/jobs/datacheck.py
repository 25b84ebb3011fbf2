"""A data file checked before its job is queued, exactly as the trainer will read it.

The bytes are parsed by training/readers.py and checked by training/data.py's own checks
(columns, empty texts, labels), so a file that passes here trains, and one that would fail
training is refused now: ``DataFileError(split, reason, row, column)``, an HTTP 422 naming
the 1-based data row (the first record under a CSV header is row 1) and the column.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

from bias_store.format import MAX_LABELS
from bias_store.kinds import ProblemType
from training import data as td
from training.errors import DataError
from training.jobs.config import JobConfig
from training.jobs.errors import DataFileError

SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq")
MAX_BYTES = 64 << 20  # one uploaded file; BiasSets are tiny, but a CSV of 200k reviews is ~60 MB
MAX_ROWS = 1_000_000
MIN_ROWS = {"train": 8, "validation": 2, "test": 2}  # fewer cannot be split / scored meaningfully
SPLITS = tuple(MIN_ROWS)


def check_file(data: bytes, filename: str, config: JobConfig, split: str,
               train_labels: list[str] | None = None, max_bytes: int = MAX_BYTES) -> dict:
    """``{"rows", "columns", "labels", "problem_type"}`` of a file that training will accept as ``split``.

    ``train_labels``: the training file's labels, so a validation/test label unknown to it is refused.
    """
    if split not in SPLITS:
        raise DataFileError(split, f"unknown split; use one of {list(SPLITS)}")
    suffix = Path(filename or "").suffix.lower()
    if suffix not in SUFFIXES:
        raise DataFileError(split, f"file {filename!r} has an unsupported type; use one of {list(SUFFIXES)}")
    if len(data) > max_bytes:
        raise DataFileError(split, f"the file is {len(data)} bytes; the limit is {max_bytes}")
    if not data.strip():
        raise DataFileError(split, "the file is empty")
    if suffix in (".parquet", ".pq") and importlib.util.find_spec("pyarrow") is None:
        raise DataFileError(split, "this server cannot read Parquet (pyarrow is not installed: "
                                   "pip install 'bitfit-serve[train]'); send CSV or JSON lines")
    try:
        return _check(data, suffix, config, split, train_labels)
    except DataError as exc:
        raise DataFileError(split, exc.reason, exc.row, exc.column) from None


def _check(data: bytes, suffix: str, config: JobConfig, split: str, train_labels: list[str] | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bitfit-check-") as tmp:
        path = Path(tmp) / f"{split}{suffix}"
        path.write_bytes(data)
        df = td.read_table(path)
    columns = [config.text_column, config.label_column] + ([config.text_pair_column] if config.text_pair_column else [])
    td._require_columns(df, split, columns)
    if len(df) > MAX_ROWS:
        raise DataError(f"the file has {len(df)} rows; the limit is {MAX_ROWS}")
    if len(df) < MIN_ROWS[split]:
        raise DataError(f"the file has {len(df)} data rows; a {split} file needs at least {MIN_ROWS[split]}")
    td._texts(df, split, config.text_column, config.text_pair_column)
    raw = td._raw_labels(df, split, config.label_column)
    kind = td.infer_problem_type(raw, config.problem_type)
    if train_labels is None:
        labels = td._label_names(raw, kind, None, split, config.label_column)
    else:
        labels = train_labels
    if kind == ProblemType.SINGLE_LABEL and len(labels) > MAX_LABELS:
        raise DataError(f"{len(labels)} distinct labels; a served task may have at most {MAX_LABELS}",
                        column=config.label_column)
    td._targets(raw, split, config.label_column, kind, labels)  # a label training never saw: its row
    return {"rows": len(df), "columns": [str(c) for c in df.columns], "labels": labels, "problem_type": str(kind)}


def check_files(files: dict[str, tuple[bytes, str]], config: JobConfig) -> dict[str, dict]:
    """Each split's check, validation and test against the training file's labels, and a
    training file alone big enough to be split (as ``bitfit train`` splits it)."""
    if "train" not in files:
        raise DataFileError("train", "a job needs a training file")
    train = check_file(*files["train"], config, "train")
    out = {"train": train}
    for split in ("validation", "test"):
        if split in files:
            out[split] = check_file(*files[split], config, split, train_labels=train["labels"])
    if "validation" not in files:
        fractions = (0.8, 0.1, 0.1) if "test" not in files else (0.9, 0.1)
        if any(len(p) == 0 for p in td.seeded_split(train["rows"], fractions, 0)):
            raise DataFileError("train", f"{train['rows']} rows are too few to cut a validation split from; "
                                "add rows or give a validation file")
    return out
