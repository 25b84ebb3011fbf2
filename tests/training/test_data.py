"""Data loading: every bad input fails before training, naming file, row and column."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from training.data import load_task_data, seeded_split
from training.errors import DataError
from training.readers import read_table

GOOD = [("a fine film", "pos"), ("awful", "neg"), ("great fun", "pos"), ("boring", "neg")] * 5


def write_csv(path, rows, columns=("text", "label")):
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return path


def load(train, **kw):
    return load_task_data(train, "text", "label", **kw)


@pytest.mark.parametrize(
    "case, expect",
    [
        ("missing_column", ["train.csv", "column 'label'", "is missing", "columns ['text', 'score']"]),
        ("one_class", ["train.csv", "column 'label'", "only one class"]),
        ("nan_label", ["train.csv", "row 3", "column 'label'", "NaN"]),
        ("unseen_label", ["val.csv", "row 2", "column 'label'", "'maybe' never occurs"]),
        ("non_utf8", ["train.csv", "row 2", "column 'text'", "UTF-8"]),
        ("partial_pair", ["train.csv", "row 4", "column 'hypothesis'", "pair column is empty in 1 of 20"]),
        ("empty_text", ["train.csv", "row 1", "column 'text'", "empty"]),
        ("no_rows", ["train.csv", "no data rows"]),
        ("empty_file", ["train.csv", "empty"]),
        ("missing_file", ["nope.csv", "no such file"]),
    ],
)
def test_bad_input_names_file_row_and_column(tmp_path, case, expect):
    train, kw = tmp_path / "train.csv", {}
    if case == "missing_column":
        write_csv(train, [("x", 1)], ("text", "score"))
    elif case == "one_class":
        write_csv(train, [("x", "pos"), ("y", "pos")])
    elif case == "nan_label":
        write_csv(train, [("a", "pos"), ("b", "neg"), ("c", None), ("d", "neg")])
    elif case == "unseen_label":
        write_csv(train, GOOD)
        kw["validation"] = write_csv(tmp_path / "val.csv", [("x", "pos"), ("y", "maybe")])
    elif case == "non_utf8":
        train.write_bytes(b"text,label\nfine,pos\ncaf\xe9 noir,neg\n")
    elif case == "partial_pair":
        rows = [(t, f"h{i}" if i != 3 else None, lab) for i, (t, lab) in enumerate(GOOD)]
        write_csv(train, rows, ("text", "hypothesis", "label"))
        kw["pair_column"] = "hypothesis"
    elif case == "empty_text":
        write_csv(train, [("", "pos")] + GOOD)
    elif case == "no_rows":
        train.write_text("text,label\n")
    elif case == "empty_file":
        train.write_text("")
    elif case == "missing_file":
        train = tmp_path / "nope.csv"
    with pytest.raises(DataError) as err:
        load(train, **kw)
    for fragment in expect:
        assert fragment in str(err.value), (fragment, str(err.value))


def test_seeded_split_is_recorded_and_reproducible(tmp_path):
    train = write_csv(tmp_path / "train.csv", [(f"text {i}", "pos" if i % 2 else "neg") for i in range(50)])
    a, b, c = load(train, seed=3), load(train, seed=3), load(train, seed=4)
    assert (len(a.train), len(a.validation), len(a.test)) == (40, 5, 5)
    assert a.split["rows"] == b.split["rows"] and a.split["rows"] != c.split["rows"]
    rows = a.split["rows"]
    assert sorted(rows["train"] + rows["validation"] + rows["test"]) == list(range(1, 51))
    assert a.validation.texts == [f"text {r - 1}" for r in rows["validation"]]
    assert a.labels == ["neg", "pos"] and a.problem_type == "single_label_classification"


def test_seeded_split_fractions():
    parts = seeded_split(10, (0.8, 0.1, 0.1), seed=0)
    assert [len(p) for p in parts] == [8, 1, 1] and sorted(sum(parts, [])) == list(range(10))


def test_formats_integer_labels_regression_and_pairs(tmp_path):
    rows = [{"premise": f"p{i}", "hypothesis": f"h{i}", "label": i % 3} for i in range(30)]
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = load_task_data(jsonl, "premise", "label", pair_column="hypothesis")
    assert data.inputs == "text_pair" and data.labels == ["0", "1", "2"]
    assert isinstance(data.train.texts[0], tuple)

    parquet = tmp_path / "scores.parquet"
    pd.DataFrame({"text": [f"t{i}" for i in range(30)], "label": [i / 7 for i in range(30)]}).to_parquet(parquet)
    data = load_task_data(parquet, "text", "label")
    assert data.problem_type == "regression" and data.labels == ["label"]
    assert isinstance(data.train.targets[0], float)


def test_saved_hf_dataset_folder_with_class_names(tmp_path):
    """A folder as ``Dataset.save_to_disk`` writes it: state.json + Arrow stream files."""
    import pyarrow as pa

    def save(folder, n):
        folder.mkdir(parents=True)
        table = pa.table({"sentence": [f"s{i}" for i in range(n)], "label": [i % 2 for i in range(n)]})
        with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
        features = {"sentence": {"dtype": "string", "_type": "Value"}, "label": {"names": ["bad", "good"], "_type": "ClassLabel"}}
        (folder / "dataset_info.json").write_text(json.dumps({"features": features}))

    save(tmp_path / "ds" / "train", 20)
    save(tmp_path / "ds" / "validation", 6)
    (tmp_path / "ds" / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "validation"]}))
    data = load_task_data(tmp_path / "ds", "sentence", "label")
    assert data.labels == ["bad", "good"]
    assert len(data.train) == 20 and len(data.validation) == 6 and data.test is None
    assert data.validation.targets == [0, 1, 0, 1, 0, 1]
    with pytest.raises(DataError, match="DatasetDict"):
        read_table(tmp_path / "ds")
