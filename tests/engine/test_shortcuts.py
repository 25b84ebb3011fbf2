"""The exact shortcuts: no per-row key or value add, and still the stock model's logits."""

import json

import pytest
import torch

from bias_store.sites import architecture
from engine import Engine, load_backbone
from tests.helpers import random_bias_set, reference_logits, save_tiny_backbone

# Different lengths in one forward, so every row but the longest is padded.
TEXTS = ["meh", "a gorgeous, witty film", "the plot twists kept me guessing until the very last scene of the movie"]


def drop(bias_set, spec, suffix: str):
    """The bias set without the sites ending in ``suffix`` (a task may train any subset)."""
    keep = {k: v for k, v in bias_set.tensors.items() if not any(k == spec.site_key(s) for s in spec.sites if s.endswith(suffix))}
    return type(bias_set)(bias_set.meta, keep)


def engine_logits(engine: Engine, sets) -> list[torch.Tensor]:
    rows = []
    for bs in sets:
        handle = engine.get(bs.meta.task)
        rows += [(handle, row) for row in engine.encode(handle, TEXTS)]
    assert len(engine.split(rows)) == 1  # one padded forward
    return engine.logits(rows)


def assert_equal_to_stock(base, engine: Engine, sets) -> None:
    want = [logits for bs in sets for logits in reference_logits(base, bs, TEXTS)]
    for got, expected in zip(engine_logits(engine, sets), want, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert"])
def test_shortcut_logits_equal_the_stock_model_with_padding(tmp_path, model_type):
    base = save_tiny_backbone(tmp_path / model_type, model_type, seed=3)
    backbone = load_backbone(str(base), device="cpu")
    engine = Engine(backbone, split_overhead_tokens="off")
    roles = architecture(model_type).attention
    # Both shortcuts are in force: the key and value sites are not per-row sites any more.
    assert not any(s.endswith((roles.key, roles.value)) for s in engine.table.layout.modules)
    assert engine.table.width < backbone.spec.bias_params_per_task
    full = random_bias_set(backbone.spec, "full", ["a", "b", "c"], seed=1)
    no_output = drop(random_bias_set(backbone.spec, "no-output", ["a", "b"], seed=2), backbone.spec, roles.output)
    no_value = drop(random_bias_set(backbone.spec, "no-value", ["a", "b"], seed=3), backbone.spec, roles.value)
    sets = [full, no_output, no_value]
    for bs in sets:
        engine.register(bs)
    assert_equal_to_stock(base, engine, sets)


def test_general_path_where_positions_are_not_absolute(tmp_path):
    """A config that names another position scheme keeps every per-row site and still matches."""
    base = save_tiny_backbone(tmp_path / "bert", "bert", seed=4)
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "position_embedding_type": "relative_key"}))
    backbone = load_backbone(str(base), device="cpu")
    engine = Engine(backbone, split_overhead_tokens="off")
    assert engine.table.shortcuts is None
    assert engine.table.width == backbone.spec.bias_params_per_task
    sets = [random_bias_set(backbone.spec, f"t{i}", seed=i) for i in range(2)]
    for bs in sets:
        engine.register(bs)
    assert_equal_to_stock(base, engine, sets)


def test_shortcuts_off_keeps_every_site(tiny_backbone):
    engine = Engine(tiny_backbone, shortcuts=False)
    assert engine.table.shortcuts is None and engine.table.width == tiny_backbone.spec.bias_params_per_task
