"""Reading labeled data: CSV/TSV, JSONL, Parquet and saved Hugging Face `datasets` folders.

A saved dataset (``Dataset.save_to_disk``) is read with pyarrow alone: its ``state.json``
lists Arrow stream files; a ``DatasetDict`` folder holds one such folder per split.
Undecodable text is located to its row and column (training.data numbers rows from 1).
"""

from __future__ import annotations

import codecs
import io
import json
from pathlib import Path

import pandas as pd

from training.errors import DataError


def read_table(path: str | Path) -> pd.DataFrame:
    """Read one file or saved-dataset folder into a DataFrame of raw values."""
    path = Path(path)
    if not path.exists():
        raise DataError("no such file or folder", file=str(path))
    if path.is_dir():
        return _read_hf_folder(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _read_jsonl(path)
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path)
    raise DataError(f"unsupported file type {suffix!r}; use .csv, .tsv, .jsonl, .parquet or a saved datasets folder", file=str(path))


# Undecodable bytes become this private-use character, so that after parsing the cell
# holding them (row and column) can be found; pandas' parser refuses lone surrogates.
_BAD_BYTE = "\U000f0bad"
codecs.register_error("bitfit-mark", lambda err: (_BAD_BYTE, err.start + 1))


def _decode(path: Path) -> tuple[str, bool]:
    """The file as text, and whether it held invalid UTF-8 (marked with _BAD_BYTE)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig"), False
    except UnicodeDecodeError:
        return data.decode("utf-8-sig", errors="bitfit-mark"), True


def _find_bad_utf8(df: pd.DataFrame, path: Path) -> None:
    for column in df.columns:
        if isinstance(column, str) and _BAD_BYTE in column:
            raise DataError("the header is not valid UTF-8; re-save the file as UTF-8", str(path), column=column.replace(_BAD_BYTE, "?"))
        for i, value in enumerate(df[column]):
            if isinstance(value, str) and _BAD_BYTE in value:
                raise DataError("text is not valid UTF-8; re-save the file as UTF-8", str(path), i + 1, str(column))
            if isinstance(value, bytes):
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError:
                    raise DataError("text is not valid UTF-8; re-save the data as UTF-8", str(path), i + 1, str(column)) from None


def _read_csv(path: Path, sep: str) -> pd.DataFrame:
    text, bad = _decode(path)
    try:
        # Only an empty cell is missing: labels such as "null", "NA" or "None" are labels.
        df = pd.read_csv(io.StringIO(text), sep=sep, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise DataError("the file is empty", file=str(path)) from None
    except pd.errors.ParserError as exc:
        raise DataError(f"not a valid CSV file: {exc}", file=str(path)) from None
    if bad:
        _find_bad_utf8(df, path)
    return df


def _read_jsonl(path: Path) -> pd.DataFrame:
    records = []
    text, bad = _decode(path)
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"line {line_no} is not valid JSON ({exc.msg})", file=str(path), row=len(records) + 1) from None
        if not isinstance(record, dict):
            raise DataError(f"line {line_no} is not a JSON object", file=str(path), row=len(records) + 1)
        records.append(record)
    df = pd.DataFrame.from_records(records)
    if bad:
        _find_bad_utf8(df, path)
    return df


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several error types for broken files
        raise DataError(f"not a readable Parquet file: {exc}", file=str(path)) from None
    return _arrow_to_frame(table, path)


def _arrow_to_frame(table, path: Path) -> pd.DataFrame:
    import pyarrow as pa

    # Arrow validates string columns as UTF-8; binary columns are decoded here so that bad
    # bytes are reported with their row instead of failing deep inside the tokenizer.
    df = table.to_pandas()
    for name, col_type in zip(table.column_names, table.schema.types):
        if pa.types.is_binary(col_type) or pa.types.is_large_binary(col_type):
            _find_bad_utf8(df[[name]], path)
            df[name] = [v.decode("utf-8") if isinstance(v, bytes) else v for v in df[name]]
    return df


def _read_hf_folder(path: Path) -> pd.DataFrame:
    """A folder written by ``Dataset.save_to_disk`` (state.json + Arrow stream files)."""
    import pyarrow as pa

    if (path / "dataset_dict.json").exists():
        splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
        raise DataError(
            f"this is a DatasetDict folder with splits {splits}; pass the split folder, e.g. {path / 'train'}",
            file=str(path),
        )
    state_file = path / "state.json"
    if not state_file.exists():
        raise DataError("a folder must be a saved Hugging Face dataset (state.json is missing)", file=str(path))
    try:
        files = [entry["filename"] for entry in json.loads(state_file.read_text())["_data_files"]]
        tables = []
        for name in files:
            with pa.memory_map(str(path / name)) as source:
                tables.append(pa.ipc.open_stream(source).read_all())
    except (KeyError, json.JSONDecodeError, OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"could not read the saved dataset: {exc}", file=str(path)) from None
    if not tables:
        raise DataError("the saved dataset holds no data files", file=str(path))
    return _arrow_to_frame(pa.concat_tables(tables), path)


def hf_class_names(path: str | Path, column: str) -> list[str] | None:
    """ClassLabel names of ``column`` in a saved dataset folder, if it declares them."""
    info = Path(path) / "dataset_info.json"
    if not Path(path).is_dir() or not info.exists():
        return None
    try:
        feature = json.loads(info.read_text()).get("features", {}).get(column, {})
    except json.JSONDecodeError:
        return None
    names = feature.get("names") if isinstance(feature, dict) else None
    return [str(n) for n in names] if names else None


def hf_splits(path: str | Path) -> dict[str, Path]:
    """Split name -> folder, for a saved ``DatasetDict``; empty for anything else."""
    path = Path(path)
    marker = path / "dataset_dict.json"
    if not path.is_dir() or not marker.exists():
        return {}
    return {name: path / name for name in json.loads(marker.read_text()).get("splits", [])}
