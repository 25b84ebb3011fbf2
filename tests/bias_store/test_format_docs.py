"""The code in docs/FORMAT.md is true: it rebuilds the engine's logits and writes valid files."""

import re
from pathlib import Path

import pytest
import torch

from bias_store import dumps, validate_bytes
from engine import Engine
from tests.helpers import random_bias_set

SNIPPETS = re.findall(r"```python\n(.*?)```", (Path(__file__).parents[2] / "docs" / "FORMAT.md").read_text(), re.S)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_rebuilding_a_task_with_plain_transformers_matches_the_engine(tmp_path, tiny_bert_dir, tiny_backbone, pooling):
    bs = random_bias_set(tiny_backbone.spec, "doc", seed=5, pooling=pooling)
    path = tmp_path / "doc.safetensors"
    path.write_bytes(dumps(bs))
    scope = {"base": str(tiny_bert_dir), "path": str(path)}
    exec(SNIPPETS[0], scope)  # the cls rebuild defines model, tokenizer, logits
    if pooling == "mean":
        exec(SNIPPETS[1], scope)
    engine = Engine(tiny_backbone)
    engine.register(bs)
    [p] = engine.predict("doc", ["a gorgeous, witty film"])
    torch.testing.assert_close(torch.tensor(p.logits), scope["logits"][0], atol=1e-5, rtol=0)


def test_a_bias_set_written_by_hand_validates(tmp_path, tiny_bert_dir, tiny_backbone):
    out = tmp_path / "my-task.safetensors"
    exec(SNIPPETS[2], {"base": str(tiny_bert_dir), "out_path": str(out)})
    bs = validate_bytes(out.read_bytes(), tiny_backbone.spec)
    assert bs.meta.task == "my-task" and bs.meta.labels == ["negative", "positive"]


def test_an_all_ln_set_written_by_hand_validates_and_serves_as_the_task_model(tmp_path, tiny_bert_dir, tiny_backbone):
    from tests.helpers import reference_logits

    out = tmp_path / "my-task.safetensors"
    scope = {"base": str(tiny_bert_dir), "out_path": str(out)}
    exec(SNIPPETS[2], scope)
    exec(SNIPPETS[3], scope)  # adds the LayerNorm gains
    bs = validate_bytes(out.read_bytes(), tiny_backbone.spec)
    assert bs.meta.bias_sites == "all_ln" and set(tiny_backbone.spec.gain_keys("all_ln")) <= set(bs.tensors)
    for key in tiny_backbone.spec.gain_keys("all_ln"):  # move them, so the engine must apply them to match
        bs.tensors[key] = bs.tensors[key] * 1.5
    engine = Engine(tiny_backbone)
    engine.register(bs)
    [p] = engine.predict("my-task", ["a gorgeous, witty film"])
    torch.testing.assert_close(torch.tensor(p.logits), reference_logits(tiny_bert_dir, bs, ["a gorgeous, witty film"])[0],
                               atol=1e-5, rtol=0)
