"""A job's config and data files are refused before queueing, naming the field / split, row and column."""

from __future__ import annotations

import json

import pytest

from training.jobs.config import JobConfig
from training.jobs.datacheck import check_file, check_files
from training.jobs.errors import DataFileError, JobConfigError


def csv(rows: list[tuple[str, str]], header: str = "text,label") -> bytes:
    return (header + "\n" + "".join(f"{t},{lab}\n" for t, lab in rows)).encode()


GOOD = csv([(f"review {i}", "pos" if i % 2 else "neg") for i in range(12)])


@pytest.mark.parametrize("raw, field", [
    ({}, "task"),
    ({"task": "Bad Name!"}, "task"),
    ({"task": "t", "colour": 1}, "colour"),
    ({"task": "t", "publish": "sometimes"}, "publish"),
    ({"task": "t", "method": "lora"}, "method"),
    ({"task": "t", "method": "full"}, "method"),
    ({"task": "t", "problem_type": "ranking"}, "problem_type"),
    ({"task": "t", "hyperparameters": {"learning_rate": -1}}, "hyperparameters.learning_rate"),
    ({"task": "t", "hyperparameters": {"epochs": 0}}, "hyperparameters.epochs"),
    ({"task": "t", "hyperparameters": {"batch_size": "big"}}, "hyperparameters.batch_size"),
    ({"task": "t", "hyperparameters": {"momentum": 0.9}}, "hyperparameters.momentum"),
    ({"task": "t", "hyperparameters": []}, "hyperparameters"),
    ({"task": "t", "max_attempts": 0}, "max_attempts"),
    ({"task": "t", "text_column": ""}, "text_column"),
    ({"task": "t", "label_column": "text"}, "label_column"),
])
def test_a_bad_config_names_its_field(raw, field):
    with pytest.raises(JobConfigError) as caught:
        JobConfig.parse(raw)
    assert caught.value.field == field and f"config.{field}:" in str(caught.value)


def test_auto_maps_onto_the_bitfit_train_recipe():
    from training.task import TaskSpec

    config = JobConfig.parse({"task": "acme.sentiment"})
    spec = config.task_spec("train.csv")
    # "auto" is what `bitfit train` does with no options: the step budget, the method's own rate.
    assert spec.lr == TaskSpec.lr and spec.epochs == TaskSpec.epochs and spec.method == TaskSpec.method
    assert spec.lr is None and spec.epochs is None
    assert (spec.batch_size, spec.max_length, spec.seed) == (TaskSpec.batch_size, TaskSpec.max_length, 42)
    fixed = JobConfig.parse({"task": "t", "method": "bitfit", "hyperparameters": {"learning_rate": 0.01, "epochs": 2,
                                                                                  "max_length": 32}})
    spec = fixed.task_spec("train.csv", validation="val.csv")
    assert (spec.lr, spec.epochs, spec.max_length, spec.method, spec.validation) == (0.01, 2, 32, "bitfit", "val.csv")
    assert JobConfig.parse(json.loads(json.dumps(fixed.to_dict()))) == fixed  # the stored dict parses back


def test_a_good_file_is_described():
    found = check_file(GOOD, "train.csv", JobConfig.parse({"task": "t"}), "train")
    assert found == {"rows": 12, "columns": ["text", "label"], "labels": ["neg", "pos"],
                     "problem_type": "single_label_classification"}
    jsonl = b"".join(json.dumps({"sentence": f"s{i}", "y": i % 3}).encode() + b"\n" for i in range(9))
    config = JobConfig.parse({"task": "t", "text_column": "sentence", "label_column": "y"})
    assert check_file(jsonl, "d.jsonl", config, "train")["labels"] == ["0", "1", "2"]


@pytest.mark.parametrize("data, filename, split, row, column, words", [
    (csv([("a", "pos")] * 9, header="sentence,label"), "t.csv", "train", None, "text", "missing"),
    (csv([("a", "pos"), ("", "neg")] + [("b", "neg")] * 8), "t.csv", "train", 2, "text", "empty"),
    (csv([("a", "pos")] * 4 + [("b", "")] + [("c", "neg")] * 4), "t.csv", "train", 5, "label", "missing"),
    (csv([("a", "pos")] * 10), "t.csv", "train", None, "label", "one class"),
    (csv([("a", "pos"), ("b", "neg")] * 2), "t.csv", "train", None, None, "at least 8"),
    (b'{"text": "a", "label": 1}\n{"text": "b", "label": 0\n', "t.jsonl", "train", 2, None, "not valid JSON"),
    (GOOD, "t.xlsx", "train", None, None, "unsupported"),
    (b"", "t.csv", "train", None, None, "empty"),
    (b"text,label\nok,pos\n\"b,neg\n", "t.csv", "train", None, None, "CSV"),
    (b"text,label\n\xff\xfe,pos\n" + b"x,neg\n" * 9, "t.csv", "train", 1, "text", "UTF-8"),
])
def test_a_bad_file_names_split_row_and_column(data, filename, split, row, column, words):
    with pytest.raises(DataFileError) as caught:
        check_file(data, filename, JobConfig.parse({"task": "t"}), split)
    error = caught.value
    assert (error.split, error.row, error.column) == (split, row, column)
    assert words in str(error)


def test_validation_labels_must_be_known_and_a_tiny_train_file_needs_a_validation_file():
    config = JobConfig.parse({"task": "t"})
    with pytest.raises(DataFileError) as caught:
        check_files({"train": (GOOD, "t.csv"), "validation": (csv([("a", "pos"), ("b", "meh")]), "v.csv")}, config)
    assert (caught.value.split, caught.value.row, caught.value.column) == ("validation", 2, "label")
    assert "meh" in str(caught.value)
    with pytest.raises(DataFileError, match="too large|limit"):
        check_file(GOOD, "t.csv", config, "train", max_bytes=10)
    checked = check_files({"train": (GOOD, "t.csv"), "test": (csv([("a", "pos"), ("b", "neg")]), "x.csv")}, config)
    assert checked["test"]["rows"] == 2
