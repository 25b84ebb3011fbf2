"""Labeled text in, checked splits out (files are read by training.readers).

Every check runs before any model is loaded, and every error names the file, the row
(1-based, counting data rows only: the first record under a CSV header is row 1) and the
column.
"""

from __future__ import annotations

import logging
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bias_store.kinds import InputKind, ProblemType
from training.errors import DataError
from training.readers import hf_class_names, hf_splits, read_table

log = logging.getLogger(__name__)

REQUESTED_PROBLEM_TYPES = ("auto", "classification", "multi-label", "regression")  # what --problem-type may say
# A multi-label row's labels: a list (JSONL, Parquet) or one string separated by these.
LABEL_SEPARATORS = re.compile(r"[,;|]")


@dataclass
class Split:
    """One split, ready for tokenization."""

    source: str  # file it came from (for messages and the report)
    texts: list  # str, or (text, text_pair) tuples
    targets: list  # int class indices, or floats for regression

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class TaskData:
    train: Split
    validation: Split
    test: Split | None
    labels: list[str]  # class names in index order; [label column] for regression
    problem_type: ProblemType  # SINGLE_LABEL or REGRESSION
    inputs: InputKind
    split: dict = field(default_factory=dict)  # how the splits were made (the report records it)


# -- checks ------------------------------------------------------------------------------------
def _require_columns(df: pd.DataFrame, source: str, columns: list[str]) -> None:
    for column in columns:
        if column not in df.columns:
            raise DataError(f"column {column!r} is missing; the file has columns {list(map(str, df.columns))}", file=source, column=column)
    if len(df) == 0:
        raise DataError("the file has no data rows", file=source)


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def _texts(df: pd.DataFrame, source: str, text_column: str, pair_column: str | None) -> list:
    texts = []
    for i, value in enumerate(df[text_column]):
        if _is_missing(value):
            raise DataError("text is empty or missing", source, i + 1, text_column)
        texts.append(str(value))
    if pair_column is None:
        return texts
    pairs = list(df[pair_column])
    missing = [i for i, v in enumerate(pairs) if _is_missing(v)]
    if missing and len(missing) < len(pairs):
        raise DataError(
            f"the pair column is empty in {len(missing)} of {len(pairs)} rows (first here); "
            "every row needs both texts, or drop --text-pair-column",
            source, missing[0] + 1, pair_column,
        )
    if missing:
        raise DataError("the pair column is empty in every row; drop --text-pair-column", source, 1, pair_column)
    return [(t, str(p)) for t, p in zip(texts, pairs)]


def _raw_labels(df: pd.DataFrame, source: str, label_column: str) -> list:
    values = list(df[label_column])
    for i, value in enumerate(values):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise DataError("label is NaN or missing", source, i + 1, label_column)
        if isinstance(value, str) and not value.strip():
            raise DataError("label is empty", source, i + 1, label_column)
        if isinstance(value, float) and math.isinf(value):
            raise DataError("label is infinite", source, i + 1, label_column)
    return values


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def infer_problem_type(values: list, requested: str) -> ProblemType:
    if requested == "regression":
        return ProblemType.REGRESSION
    if requested == "multi-label":
        return ProblemType.MULTI_LABEL
    if requested == "classification":
        return ProblemType.SINGLE_LABEL
    numeric = all(_is_number(v) for v in values)
    # Floats that are not whole numbers are regression targets; integers are class ids.
    if numeric and any(isinstance(v, float) and not float(v).is_integer() for v in values):
        return ProblemType.REGRESSION
    return ProblemType.SINGLE_LABEL


def _label_key(value) -> str:
    """Classes are named by their string form; 1 and 1.0 (a CSV with gaps) are the same class."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def class_names(values: list) -> list[str]:
    """Class names in index order: numeric order for numbers, sorted strings otherwise."""
    keys = {_label_key(v) for v in values}
    if all(_is_number(v) for v in values):
        return sorted(keys, key=float)
    return sorted(keys)


def label_set(value) -> list[str]:
    """A multi-label row's labels: list items, or the parts of a string split at , ; or |."""
    items = list(value) if isinstance(value, (list, tuple)) or hasattr(value, "tolist") else LABEL_SEPARATORS.split(str(value))
    return sorted({_label_key(v) for v in items if _label_key(v)})


def _targets(values: list, source: str, label_column: str, problem_type: str, labels: list[str]) -> list:
    if problem_type == ProblemType.MULTI_LABEL:  # multi-hot rows, in label order
        index = {name: k for k, name in enumerate(labels)}
        out = []
        for i, v in enumerate(values):
            row = [0.0] * len(labels)
            for name in label_set(v):
                if name not in index:
                    raise DataError(f"label {name!r} never occurs in the training data (its labels: {labels})",
                                    source, i + 1, label_column)
                row[index[name]] = 1.0
            out.append(row)
        return out
    if problem_type == ProblemType.REGRESSION:
        out = []
        for i, v in enumerate(values):
            try:
                out.append(float(v))
            except (TypeError, ValueError):
                raise DataError(f"label {v!r} is not a number (this is a regression task)", source, i + 1, label_column) from None
        return out
    index = {name: k for k, name in enumerate(labels)}
    out = []
    for i, v in enumerate(values):
        key = _label_key(v)
        if key not in index:
            raise DataError(f"label {key!r} never occurs in the training data (its labels: {labels})", source, i + 1, label_column)
        out.append(index[key])
    return out


def seeded_split(n: int, fractions: tuple[float, ...], seed: int) -> list[list[int]]:
    """Shuffle ``range(n)`` with ``seed`` and cut it into parts of the given fractions."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    cuts, acc = [], 0.0
    for f in fractions[:-1]:
        acc += f
        cuts.append(round(acc * n))
    bounds = [0, *cuts, n]
    return [sorted(order[a:b]) for a, b in zip(bounds, bounds[1:])]


# -- the whole task ----------------------------------------------------------------------------
def _read_frames(train, validation, test, columns: list[str]) -> tuple[dict[str, tuple[str, pd.DataFrame]], str | Path]:
    """role -> (source, frame) for each given file (a DatasetDict folder lends its splits), and
    the training split's path (inside such a folder: its ``train`` split)."""
    dict_splits = hf_splits(train)
    if dict_splits:  # a DatasetDict folder: use its named splits unless files are given
        if "train" not in dict_splits:
            raise DataError(f"the DatasetDict has no 'train' split (it has {sorted(dict_splits)})", file=str(train))
        validation = validation or dict_splits.get("validation")
        test = test or dict_splits.get("test")
        train = dict_splits["train"]
    frames = {}
    for role, path in (("train", train), ("validation", validation), ("test", test)):
        if path is not None:
            df = read_table(path)
            _require_columns(df, str(path), columns)
            frames[role] = (str(path), df)
    return frames, train


def _label_names(raw: list, kind: ProblemType, hf_names: list[str] | None, source: str, label_column: str) -> list[str]:
    """The task's labels in index order, checked: enough classes, something to learn."""
    if kind == ProblemType.REGRESSION:
        if len({float(v) for v in raw}) < 2:
            raise DataError("every regression target is the same value; nothing to learn", source, column=label_column)
        return [label_column]
    if kind == ProblemType.MULTI_LABEL:
        labels = sorted({name for v in raw for name in label_set(v)})
        if len(labels) < 2:
            raise DataError(f"the training data names only {labels}; a multi-label task needs at least two labels",
                            source, column=label_column)
        return labels
    if hf_names and all(_is_number(v) for v in raw):
        return hf_names  # ClassLabel ids index into the declared names
    labels = class_names(raw)
    if len(labels) < 2:
        raise DataError(f"the training data has only one class ({labels[0]!r}); a classifier needs at least two",
                        source, column=label_column)
    return labels


def _cut(whole: Split, source: str, n: int, given_test: Split | None, seed: int,
         validation_fraction: float, test_fraction: float) -> tuple[Split, Split, Split | None, dict]:
    """A seeded train/validation(/test) split of ``whole``, and how it was made (for the report)."""
    fractions = (1 - validation_fraction - (0 if given_test else test_fraction), validation_fraction)
    if given_test is None:
        fractions = (*fractions, test_fraction)
    parts = seeded_split(n, fractions, seed)
    if any(len(p) == 0 for p in parts):
        raise DataError(f"{n} rows are too few to split {fractions}; give --validation", file=source)

    def take(rows: list[int]) -> Split:
        return Split(source, [whole.texts[i] for i in rows], [whole.targets[i] for i in rows])

    test = take(parts[2]) if len(parts) == 3 else given_test
    info = {"made_from": source, "fractions": list(fractions),
            "rows": {name: [i + 1 for i in p] for name, p in zip(("train", "validation", "test"), parts)}}
    return take(parts[0]), take(parts[1]), test, info


def load_task_data(
    train: str | Path,
    text_column: str,
    label_column: str,
    validation: str | Path | None = None,
    test: str | Path | None = None,
    pair_column: str | None = None,
    problem_type: str = "auto",
    seed: int = 42,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> TaskData:
    """Read, check and split. Without validation/test files, a seeded split is made and recorded."""
    if problem_type not in REQUESTED_PROBLEM_TYPES:
        raise DataError(f"problem type {problem_type!r} is not one of {REQUESTED_PROBLEM_TYPES}")
    columns = [text_column, label_column] + ([pair_column] if pair_column else [])
    frames, train = _read_frames(train, validation, test, columns)
    source, train_df = frames["train"]
    raw = _raw_labels(train_df, source, label_column)
    kind = infer_problem_type(raw, problem_type)
    hf_names = hf_class_names(train, label_column)
    labels = _label_names(raw, kind, hf_names, source, label_column)

    def build(role: str) -> Split:
        src, df = frames[role]
        raw_values = _raw_labels(df, src, label_column)
        if hf_names and kind == ProblemType.SINGLE_LABEL and all(_is_number(v) for v in raw_values):
            raw_values = [hf_names[int(v)] if 0 <= int(v) < len(hf_names) else v for v in raw_values]
        return Split(src, _texts(df, src, text_column, pair_column), _targets(raw_values, src, label_column, kind, labels))

    split_info: dict = {"seed": seed, "files": {role: src for role, (src, _) in frames.items()}}
    # Check the given files whole (row numbers refer to the file) before any split is cut.
    checked = {role: build(role) for role in frames}
    if "validation" in frames:
        train_split, val_split, test_split = checked["train"], checked["validation"], checked.get("test")
    else:
        train_split, val_split, test_split, info = _cut(checked["train"], source, len(train_df), checked.get("test"), seed,
                                                        validation_fraction, test_fraction)
        split_info.update(info)
    split_info["sizes"] = {"train": len(train_split), "validation": len(val_split), "test": len(test_split) if test_split else 0}
    if kind == ProblemType.SINGLE_LABEL and len(set(train_split.targets)) < 2:
        raise DataError("after the split the training part holds only one class", file=source, column=label_column)
    return TaskData(train_split, val_split, test_split, labels, kind, InputKind.TEXT_PAIR if pair_column else InputKind.TEXT, split_info)
