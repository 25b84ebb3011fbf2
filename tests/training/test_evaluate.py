"""Per-class scores, macro-F1 as scikit-learn defines it, the confusion matrix and its PNG."""

from __future__ import annotations

import json

import pytest

from tests.training.test_bitfit import tiny_spec
from training.evaluate import classification_details, classification_metrics
from training.task import run_task

# Class 3 is predicted once and never true; scikit-learn's macro average still counts it (F1 0).
GOLD = [0, 0, 0, 1, 1, 2, 2]
PRED = [0, 0, 1, 1, 3, 2, 0]


def test_macro_f1_by_hand():
    # Per class, F1 = 2TP / (2TP + FP + FN): 0: 4/6, 1: 2/4, 2: 2/3, 3: 0/1.
    got = classification_metrics(PRED, GOLD, num_classes=5)
    assert got["macro_f1"] == pytest.approx((4 / 6 + 2 / 4 + 2 / 3 + 0) / 4)  # class 4 occurs nowhere: left out
    assert got["accuracy"] == pytest.approx(4 / 7)


def test_per_class_scores_and_confusion_matrix():
    details = classification_details(PRED, GOLD, ["a", "b", "c", "d", "e"])
    by_label = {c["label"]: c for c in details["per_class"]}
    assert by_label["a"] == {"label": "a", "precision": pytest.approx(2 / 3), "recall": pytest.approx(2 / 3),
                             "f1": pytest.approx(2 / 3), "support": 3}
    assert by_label["c"]["precision"] == 1.0 and by_label["c"]["recall"] == 0.5
    assert by_label["d"] == {"label": "d", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    counts = details["confusion_matrix"]["counts"]
    assert counts[0] == [2, 1, 0, 0, 0] and counts[1] == [0, 1, 0, 1, 0] and counts[2] == [1, 0, 1, 0, 0]
    assert sum(map(sum, counts)) == len(GOLD)


def test_run_folder_has_per_class_scores_and_both_plots(tmp_path, tiny_bert_dir):
    outcome = run_task(tiny_spec(tmp_path, tiny_bert_dir, epochs=1, lr=1e-3), tmp_path / "run", progress=False)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    test = report["per_class"]["test"]
    assert [c["label"] for c in test["per_class"]] == ["negative", "positive"]
    assert sum(map(sum, test["confusion_matrix"]["counts"])) == report["split"]["sizes"]["test"]
    assert report["per_class"]["validation"]["confusion_matrix"]["labels"] == ["negative", "positive"]
    for png in ("learning_curves.png", "confusion_matrix.png"):
        assert (tmp_path / "run" / png).read_bytes()[:4] == b"\x89PNG"
    assert len(report["steps"]) >= 2 and report["steps"][-1]["epoch"] == 1.0  # a 1-epoch run still has a curve
    assert outcome.report["test"]["macro_f1"] == pytest.approx(sum(c["f1"] for c in test["per_class"]) / 2, rel=1e-3)  # 4 digits
