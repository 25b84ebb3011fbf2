"""bitfit-ln sets: biases + LayerNorm gains as state-dict keys, validated, served per row beside plain sets."""

from __future__ import annotations

import pytest
import torch

from bias_store import dumps, validate_bytes
from bias_store.errors import InvalidBiasSet
from engine import Engine
from tests.helpers import random_bias_set, reference_logits

TEXTS = ["a gorgeous, witty film", "dull and far too long", "meh", "the plot twists kept me guessing until the end"]


def gain_set(spec, name: str, seed: int, pooling: str = "cls"):
    """A random bias set that also carries every LayerNorm gain (around 1, as trained gains are)."""
    bias_set = random_bias_set(spec, name, seed=seed, pooling=pooling, scale=0.2)
    g = torch.Generator().manual_seed(seed + 100)
    for key, dim in zip(spec.gain_keys("all_ln"), spec.gain_sites.values()):
        bias_set.tensors[key] = 1 + 0.3 * torch.randn(dim, generator=g)
    bias_set.meta.bias_sites = "all_ln"
    return bias_set


def test_gain_keys_are_the_layernorm_weights_of_the_state_dict(tiny_backbone):
    spec = tiny_backbone.spec
    keys = spec.gain_keys("all_ln")
    assert keys and all(k.endswith("LayerNorm.weight") for k in keys) and spec.gain_keys("all") == []
    assert len(keys) == 1 + 2 * tiny_backbone.encoder.config.num_hidden_layers  # embeddings + 2 per layer


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_mixed_batch_with_gain_sets_equals_each_tasks_own_model(tmp_path, tiny_bert_dir, tiny_backbone, pooling):
    engine = Engine(tiny_backbone)
    plain = random_bias_set(tiny_backbone.spec, "plain", seed=1, pooling=pooling, scale=0.2)
    engine.register(validate_bytes(dumps(plain), tiny_backbone.spec))
    before = torch.tensor([p.logits for p in engine.predict("plain", TEXTS)])
    sets = {"plain": plain}
    for k in range(2):
        sets[f"ln{k}"] = gain_set(tiny_backbone.spec, f"ln{k}", seed=10 + k, pooling=pooling)
        engine.register(validate_bytes(dumps(sets[f"ln{k}"]), tiny_backbone.spec))
    assert engine.table.has_gains
    # One mixed batch: rows of the plain set and of both gain sets share each forward.
    names = ["plain", "ln0", "ln1", "ln0"]
    with engine.pinned("plain") as a, engine.pinned("ln0") as b, engine.pinned("ln1") as c:
        handles = {"plain": a, "ln0": b, "ln1": c}
        rows = [(handles[n], engine.encode(handles[n], [t])[0]) for n, t in zip(names, TEXTS)]
        got = torch.tensor([p.logits for p in engine.run(rows)])
    want = torch.stack([reference_logits(tiny_bert_dir, sets[n], [t])[0] for n, t in zip(names, TEXTS)])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    # The plain task registered before the table widened answers exactly as before.
    torch.testing.assert_close(torch.tensor([p.logits for p in engine.predict("plain", TEXTS)]), before, atol=1e-6, rtol=0)


def test_validation_wants_exactly_the_subsets_keys(tiny_backbone):
    spec = tiny_backbone.spec
    full = gain_set(spec, "ln", seed=3)
    missing = gain_set(spec, "ln", seed=3)
    del missing.tensors[spec.gain_keys("all_ln")[0]]
    with pytest.raises(InvalidBiasSet, match="missing"):
        validate_bytes(dumps(missing), spec)
    stray = random_bias_set(spec, "plain")
    stray.tensors[spec.gain_keys("all_ln")[0]] = torch.ones(spec.hidden_size)
    with pytest.raises(InvalidBiasSet, match="not part of it"):
        validate_bytes(dumps(stray), spec)
    wrong = gain_set(spec, "ln", seed=3)
    wrong.tensors[spec.gain_keys("all_ln")[1]] = torch.ones(spec.hidden_size + 1)
    with pytest.raises(InvalidBiasSet, match="shape"):
        validate_bytes(dumps(wrong), spec)
    assert validate_bytes(dumps(full), spec).meta.bias_sites == "all_ln"


def test_plain_sets_registered_while_the_table_widens_keep_their_rows(tiny_bert_dir, tiny_backbone):
    """The first gain set widens every row while another thread registers plain sets: each
    row is built for the layout it is written into, so every task still answers as its model."""
    import threading

    spec = tiny_backbone.spec
    engine = Engine(tiny_backbone)
    sets = {f"p{i}": random_bias_set(spec, f"p{i}", seed=i, scale=0.2) for i in range(30)}
    errors: list[Exception] = []

    def register_plain() -> None:
        try:
            for bias_set in sets.values():
                engine.register(bias_set)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=register_plain)
    thread.start()
    engine.register(gain_set(spec, "ln", seed=5))
    thread.join()
    assert not errors and engine.table.has_gains and len(engine.tasks()) == 31
    for name in ("p0", "p15", "p29"):
        got = torch.tensor([p.logits for p in engine.predict(name, TEXTS[:2])])
        torch.testing.assert_close(got, reference_logits(tiny_bert_dir, sets[name], TEXTS[:2]), atol=1e-4, rtol=0)
