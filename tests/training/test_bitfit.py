"""Training changes only what its method trains, and the exported file serves the same logits."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from bias_store import FilesystemStore, dumps, validate, validate_upload
from bias_store.format import loads
from engine import Engine
from engine.inputs import encode
from training.bitfit import METHODS, trainable_keys
from training.errors import ConfigError
from training.export import export_bias_set
from training.scoring import predict_logits
from training.task import TaskSpec, run_task

WORDS_POS = ["great", "lovely", "fun", "moving", "sharp"]
WORDS_NEG = ["dull", "awful", "slow", "flat", "boring"]
TEXTS = ["a great and lovely film", "dull, slow and flat", "fun", "an awful, boring mess that goes on and on and on"]


def sentiment_csv(path, n=48, pair=False):
    rows = []
    for i in range(n):
        words = WORDS_POS if i % 2 else WORDS_NEG
        row = {"text": f"the film was {words[i % 5]} and {words[(i + 2) % 5]}", "label": "positive" if i % 2 else "negative"}
        if pair:
            row["other"] = f"i thought it {words[(i + 1) % 5]}"
        rows.append(row)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def tiny_spec(tmp_path, tiny_bert_dir, **kw):
    train = kw.pop("train", None) or sentiment_csv(tmp_path / "train.csv")
    return TaskSpec(task=kw.pop("task", "tiny"), train=str(train), text_column="text", label_column="label",
                    backbone=str(tiny_bert_dir), epochs=kw.pop("epochs", 2), batch_size=8,
                    lr=kw.pop("lr", 1e-3), **kw)  # a fixed rate keeps these tests fast; test_recipe.py covers "auto"


@pytest.mark.parametrize("method", ["bitfit", "bitfit-ln", "bitfit-qm", "head-only", "full"])
def test_only_the_methods_parameters_change(tmp_path, tiny_bert_dir, method):
    from engine.backbone import load_classifier

    spec = tiny_spec(tmp_path, tiny_bert_dir, method=method, pooling="cls", epochs=1)
    outcome = run_task(spec, progress=False)
    before = load_classifier(str(tiny_bert_dir), num_labels=2).state_dict()
    after = outcome.model.model.state_dict()
    m = METHODS[method]
    allowed = set(after) if m.bias_sites is None else set(trainable_keys(outcome.model.spec, m))
    changed = {k for k in before if "classifier" not in k and not torch.equal(before[k], after[k])}
    frozen = set(before) - allowed - {k for k in before if k.startswith("classifier")}
    assert not changed - allowed, f"{method} changed frozen tensors: {sorted(changed - allowed)[:5]}"
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    if method == "bitfit":
        # Every site that the forward uses moved (the CLS head reads the pooler, so all of them do).
        assert changed == {k for k in allowed if not k.startswith("classifier")}
    if method == "bitfit-ln":  # the biases and every LayerNorm gain moved
        assert changed == {k for k in allowed if not k.startswith("classifier")}
        assert {k for k in changed if k.endswith("LayerNorm.weight")} == set(outcome.model.spec.gain_keys("all_ln"))
    if method == "bitfit-qm":
        assert changed and all(k.endswith(("query.bias", "intermediate.dense.bias")) for k in changed)
    if method == "head-only":
        assert not changed
    assert outcome.report["trainable_params"] == (sum(p.numel() for p in outcome.model.model.parameters())
                                                  if method == "full" else sum(after[k].numel() for k in allowed))
    assert (outcome.bias_set is None) == (method == "full")


@pytest.mark.parametrize("pooling, pair", [("cls", False), ("mean", False), ("mean", True)])
def test_exported_file_loads_through_the_store_and_serves_the_training_logits(tmp_path, tiny_bert_dir, tiny_backbone, pooling, pair):
    train = sentiment_csv(tmp_path / "train.csv", pair=pair)
    spec = tiny_spec(tmp_path, tiny_bert_dir, train=train, pooling=pooling, text_pair_column="other" if pair else None)
    outcome = run_task(spec, progress=False)
    bias_set = outcome.bias_set
    assert bias_set.meta.inputs == ("text_pair" if pair else "text") and bias_set.meta.pooling == pooling
    assert bias_set.meta.backbone_fingerprint == tiny_backbone.spec.fingerprint  # training never moved the backbone
    assert bias_set.meta.training["method"] == "bitfit-ln" and "validation" in bias_set.meta.training  # the default

    store = FilesystemStore(tmp_path / "store")
    store.put(validate_upload(dumps(bias_set), tiny_backbone.spec))
    record, data = store.get("tiny")
    served = loads(data)
    validate(served, tiny_backbone.spec)

    texts = [(t, "a second text") for t in TEXTS] if pair else TEXTS
    engine = Engine(tiny_backbone)
    engine.register(served, record.version, record.sha256)
    got = torch.stack([torch.tensor(p.logits) for p in engine.predict("tiny", [list(t) if pair else t for t in texts])])
    tm = outcome.model
    want = predict_logits(tm, encode(tm.tokenizer, texts, 128), pooling, torch.device("cpu"), batch_size=2)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_regression_task_exports_one_output(tmp_path, tiny_bert_dir, tiny_backbone):
    rows = [{"text": f"score {i % 7} of {WORDS_POS[i % 5]}", "label": (i % 7) / 3.0} for i in range(40)]
    pd.DataFrame(rows).to_csv(tmp_path / "reg.csv", index=False)
    outcome = run_task(tiny_spec(tmp_path, tiny_bert_dir, train=tmp_path / "reg.csv", epochs=1), progress=False)
    assert outcome.bias_set.meta.problem_type == "regression" and outcome.bias_set.meta.labels == ["label"]
    assert set(outcome.report["validation"]) == {"pearson", "spearman", "mse"}
    validate(outcome.bias_set, tiny_backbone.spec)


def test_run_folder_has_report_and_plot(tmp_path, tiny_bert_dir):
    import json

    outcome = run_task(tiny_spec(tmp_path, tiny_bert_dir, epochs=3, patience=1, lr=1e-9), tmp_path / "run", progress=False)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert (tmp_path / "run" / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert report["best_epoch"] == outcome.report["best_epoch"] >= 1
    assert len(report["history"]) == len(outcome.report["history"]) <= 3
    assert report["history"][0]["validation"].keys() == {"accuracy", "macro_f1", "mcc"}
    assert report["split"]["sizes"]["validation"] > 0 and report["split"]["rows"]["test"]
    assert report["trainable_params"] == outcome.bias_set.num_params


def test_bad_options_fail_before_training(tmp_path, tiny_bert_dir):
    with pytest.raises(ConfigError, match="unknown method"):
        run_task(tiny_spec(tmp_path, tiny_bert_dir, method="lora"), progress=False)
    with pytest.raises(ConfigError, match="task name"):
        run_task(tiny_spec(tmp_path, tiny_bert_dir, task="Bad Name!"), progress=False)
    with pytest.raises(ConfigError, match="epochs"):
        run_task(tiny_spec(tmp_path, tiny_bert_dir, epochs=0), progress=False)
    outcome = run_task(tiny_spec(tmp_path, tiny_bert_dir, method="full", epochs=1), progress=False)
    with pytest.raises(ConfigError, match="no bias set"):
        export_bias_set(outcome.model, METHODS["full"], task="x", labels=["a", "b"], problem_type="single_label_classification",
                        inputs="text", pooling="cls", training={})


@pytest.mark.minilm
def test_a_few_real_minilm_steps_export_a_set_the_engine_accepts(tmp_path, minilm_backbone):
    train = sentiment_csv(tmp_path / "train.csv", n=24)
    spec = TaskSpec(task="minilm-few", train=str(train), text_column="text", label_column="label", epochs=1, batch_size=8)
    outcome = run_task(spec, progress=False)
    assert outcome.bias_set.meta.pooling == "mean"  # the packaged MiniLM's default
    assert outcome.model.spec.fingerprint == minilm_backbone.spec.fingerprint
    # The default method, bitfit-ln: every bias, every LayerNorm gain, and the head.
    gains = sum(minilm_backbone.spec.gain_sites.values())
    assert outcome.bias_set.meta.bias_sites == "all_ln" and gains == 13 * 384
    assert outcome.bias_set.num_params == minilm_backbone.spec.bias_params_per_task + gains + 2 * 384 + 2
    validate(outcome.bias_set, minilm_backbone.spec)
    engine = Engine(minilm_backbone)
    engine.register(outcome.bias_set)
    got = torch.tensor([p.logits for p in engine.predict("minilm-few", TEXTS)])
    tm = outcome.model
    want = predict_logits(tm, encode(tm.tokenizer, TEXTS, 128), "mean", torch.device("cpu"), batch_size=4)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_a_bitfit_ln_set_is_the_task_model_in_the_engine_and_in_plain_transformers(tmp_path, tiny_bert_dir, tiny_backbone):
    from tests.helpers import reference_logits

    outcome = run_task(tiny_spec(tmp_path, tiny_bert_dir, method="bitfit-ln", pooling="cls", epochs=1, lr=1e-2), progress=False)
    bias_set = validate_upload(dumps(outcome.bias_set), tiny_backbone.spec).bias_set
    assert bias_set.meta.bias_sites == "all_ln" and set(tiny_backbone.spec.gain_keys("all_ln")) <= set(bias_set.tensors)
    tm = outcome.model
    want = predict_logits(tm, encode(tm.tokenizer, TEXTS, 128), "cls", torch.device("cpu"), batch_size=2)
    engine = Engine(tiny_backbone)
    engine.register(bias_set)
    got = torch.tensor([p.logits for p in engine.predict("tiny", TEXTS)])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # load_state_dict(set, strict=False) on the base model IS the task model.
    torch.testing.assert_close(reference_logits(tiny_bert_dir, bias_set, TEXTS), want, atol=1e-5, rtol=0)
