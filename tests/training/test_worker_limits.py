"""The worker's bounds (issue 22): data paths confined to the inbox, labels counted before
training, labels such as "null" kept, epochs and training time bounded."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from training.epochs import fit
from training.errors import ConfigError
from training.publish import Target
from training.readers import read_table
from training.task import TaskSpec, run_task
from training.worker import Worker, read_spec


def _spec(inbox, train, **extra):
    path = inbox / "t.json"
    path.write_text(json.dumps({"name": "t", "train": train, "text_column": "text", "label_column": "label", **extra}))
    return path


@pytest.fixture
def inbox(tmp_path):
    (tmp_path / "inbox" / "data").mkdir(parents=True)
    pd.DataFrame({"text": ["a", "b"], "label": [0, 1]}).to_csv(tmp_path / "inbox" / "data" / "ok.csv", index=False)
    pd.DataFrame({"text": ["x"], "label": ["secret"]}).to_csv(tmp_path / "secret.csv", index=False)
    return tmp_path / "inbox"


@pytest.mark.parametrize("train", ["../secret.csv", "data/../../secret.csv", "ABSOLUTE", "data/link.csv"])
def test_data_paths_outside_the_inbox_are_refused(inbox, train):
    (inbox / "data" / "link.csv").symlink_to(inbox.parent / "secret.csv")
    train = str(inbox.parent / "secret.csv") if train == "ABSOLUTE" else train
    with pytest.raises(ConfigError, match="outside the inbox"):
        read_spec(_spec(inbox, train), inbox, roots=[inbox])


def test_data_paths_inside_the_inbox_or_a_data_root_are_read(inbox, tmp_path):
    assert read_spec(_spec(inbox, "data/ok.csv"), inbox, roots=[inbox]).train == str((inbox / "data" / "ok.csv").resolve())
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "d.csv").write_text("text,label\na,0\n")
    (inbox / "data" / "shared.csv").symlink_to(shared / "d.csv")
    for train in (str(shared / "d.csv"), "data/shared.csv"):
        assert read_spec(_spec(inbox, train), inbox, roots=[inbox, shared]).train == str(shared / "d.csv")


def test_the_worker_fails_a_spec_reading_outside_its_inbox(inbox, tmp_path):
    _spec(inbox, "../secret.csv")
    worker = Worker(inbox, Target(out=str(tmp_path / "t.safetensors")), settle_seconds=0)
    [result] = worker.run_once()
    assert not result.ok and "resolves outside the inbox" in result.error


def test_epochs_are_bounded(inbox):
    with pytest.raises(ConfigError, match="at most 100"):
        read_spec(_spec(inbox, "data/ok.csv", epochs=1000), inbox, roots=[inbox], max_epochs=100)


def test_too_many_labels_fail_before_training(tmp_path):
    rows = 2 * 1001
    pd.DataFrame({"text": [f"t{i}" for i in range(rows)], "label": [f"l{i % 1001}" for i in range(rows)]}).to_csv(
        tmp_path / "d.csv", index=False)
    spec = TaskSpec(task="many", train=str(tmp_path / "d.csv"), text_column="text", label_column="label",
                    backbone=str(tmp_path / "no-such-backbone"))  # never loaded: the count fails first
    with pytest.raises(ConfigError, match="1001 distinct labels.*at most 1000"):
        run_task(spec, tmp_path / "run", progress=False)


def test_labels_like_null_and_na_are_labels(tmp_path):
    (tmp_path / "d.csv").write_text("text,label\na,null\nb,NA\nc,None\nd,n/a\n")
    assert read_table(tmp_path / "d.csv")["label"].tolist() == ["null", "NA", "None", "n/a"]


def test_no_epoch_starts_past_the_deadline():
    ran = []
    result = fit(10, 0, 1e-3, lambda e: ran.append(e) or {"train_loss": 1.0, "score": e}, lambda entry: [entry["score"]],
                 lambda part: "w", deadline=time.monotonic() - 1)
    assert ran == [1] and result.stopped_early and result.best_epochs == [1]
