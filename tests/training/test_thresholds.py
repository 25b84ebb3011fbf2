"""Multi-label thresholds: chosen per label on validation, stored in the bias set, applied by the engine and the server."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from bias_store import dumps, validate
from bias_store.errors import InvalidBiasSet
from bias_store.format import loads
from engine import Engine
from tests.helpers import random_bias_set
from tests.server_support import serving, upload
from training.task import TaskSpec, run_task
from training.thresholds import choose_thresholds, scores_at

TOPICS = {"sport": ["match", "goal", "team"], "money": ["stocks", "bank", "price"], "food": ["pasta", "soup", "bread"]}


def topics_frame(n: int = 60) -> pd.DataFrame:
    names = list(TOPICS)
    rows = []
    for i in range(n):
        active = [names[i % 3]] + ([names[(i + 1) % 3]] if i % 4 == 0 else [])
        words = [TOPICS[t][i % 3] for t in active]
        rows.append({"text": "news about " + " and ".join(words), "tags": "|".join(active)})
    return pd.DataFrame(rows)


def test_thresholds_maximise_each_labels_validation_f1():
    probs = torch.tensor([[0.9, 0.30], [0.8, 0.20], [0.2, 0.15], [0.1, 0.05]])
    gold = torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]])  # label 1 is true where its score is 0.2-0.3
    cuts = choose_thresholds(probs, gold)
    assert cuts[0] == 0.5 and cuts[1] == 0.2  # label 0: 0.5 already perfect (ties go to 0.5); label 1: the one exact cut
    assert scores_at(probs, gold, cuts) == {"micro_f1": 1.0, "macro_f1": 1.0, "exact_match": 1.0}
    assert scores_at(probs, gold, [0.5, 0.5])["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 0 + 2))


def test_trained_thresholds_are_stored_and_the_server_applies_them(tmp_path, tiny_bert_dir, tiny_backbone):
    topics_frame().to_csv(tmp_path / "train.csv", index=False)
    spec = TaskSpec(task="topics", train=str(tmp_path / "train.csv"), text_column="text", label_column="tags",
                    problem_type="multi-label", backbone=str(tiny_bert_dir),
                    epochs=2, batch_size=8, lr=1e-2)
    outcome = run_task(spec, tmp_path / "run", progress=False)
    meta = loads(dumps(outcome.bias_set)).meta
    assert meta.problem_type == "multi_label_classification" and meta.labels == ["food", "money", "sport"]
    assert meta.thresholds == outcome.report["per_class"]["thresholds"] and len(meta.thresholds) == 3
    assert set(outcome.report["test"]) >= {"micro_f1", "macro_f1", "exact_match", "at_0.5"}
    assert outcome.report["selection_metric"] == "micro_f1"
    validate(outcome.bias_set, tiny_backbone.spec)
    engine = Engine(tiny_backbone)
    engine.register(outcome.bias_set)
    [p] = engine.predict("topics", ["news about goal and stocks"])
    assert p.labels == tuple(label for label, cut in zip(meta.labels, meta.thresholds) if p.scores[label] >= cut)
    # The server answers with the labels over their thresholds; set the cuts so that exactly one passes.
    scores = [p.scores[label] for label in meta.labels]
    keep = max(range(3), key=lambda k: scores[k])
    outcome.bias_set.meta.thresholds = [max(1e-6, s - 1e-4) if k == keep else min(1 - 1e-6, s + 1e-4) for k, s in enumerate(scores)]
    with serving(tmp_path / "store", tiny_backbone) as client:
        assert upload(client, outcome.bias_set).status_code == 201
        got = client.post("/predict/topics", json={"inputs": "news about goal and stocks"}).json()["predictions"][0]
    assert got["labels"] == [meta.labels[keep]]


def test_thresholds_must_fit_the_labels(tiny_backbone):
    bias_set = random_bias_set(tiny_backbone.spec, "m", labels=["a", "b"], problem_type="multi_label_classification")
    bias_set.meta.thresholds = [0.3, 0.7]
    assert loads(dumps(bias_set)).meta.thresholds == [0.3, 0.7]
    for bad in ([0.3], [0.3, 1.0]):
        bias_set.meta.thresholds = bad
        with pytest.raises(InvalidBiasSet, match="thresholds must be"):
            loads(dumps(bias_set))
    single = random_bias_set(tiny_backbone.spec, "s")
    single.meta.thresholds = [0.5, 0.5]
    with pytest.raises(InvalidBiasSet, match="multi_label_classification tasks only"):
        loads(dumps(single))
