"""The engine's mixed-task batches equal each task's standalone transformers model."""

import random

import pytest
import torch

from bias_store import validate
from engine import Engine, head_batch, load_backbone
from tests.helpers import random_bias_set, reference_logits, save_tiny_backbone

TEXTS = [
    "a gorgeous, witty film",
    "dull and far too long",
    "the plot twists kept me guessing until the very last scene of the movie",
    "meh",
    "I would not watch it again, even for free, even on a plane",
]


@pytest.mark.parametrize("heads", ["one_gemm", "per_group"])
def test_mixed_batch_of_20_tasks_matches_standalone_models(tiny_bert_dir, tiny_backbone, heads, monkeypatch):
    ran = []
    for name in ("_one_gemm", "_per_group"):  # record which way the heads ran
        real = getattr(head_batch, name)
        monkeypatch.setattr(head_batch, name, lambda *a, real=real, name=name: ran.append(name) or real(*a))
    if heads == "per_group":
        monkeypatch.setattr(head_batch, "STACKED_MAX_LABELS", 8)  # the batch's heads hold more labels than that
    engine = Engine(tiny_backbone)
    sets = {}
    for i in range(20):
        labels = [f"l{j}" for j in range(2 + i % 3)]
        bs = random_bias_set(tiny_backbone.spec, f"task-{i}", labels, seed=i, pooling="mean" if i % 4 == 0 else "cls",
                             subset="query_intermediate" if i % 5 == 1 else "all")
        validate(bs, tiny_backbone.spec)
        engine.register(bs)
        sets[bs.meta.task] = bs

    rng = random.Random(0)
    items = [(f"task-{rng.randrange(20)}", rng.choice(TEXTS)) for _ in range(48)]
    handles = {n: engine.get(n) for n in sets}
    rows = [(handles[n], engine.encode(handles[n], [t])[0]) for n, t in items]
    got = engine.logits(rows)

    assert set(ran) == {f"_{heads}"}
    for (name, text), logits in zip(items, got):
        want = reference_logits(tiny_bert_dir, sets[name], [text])[0]
        torch.testing.assert_close(logits, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_type", ["roberta", "distilbert"])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_other_architectures_match_standalone_models(tmp_path, model_type, pooling):
    base = save_tiny_backbone(tmp_path / model_type, model_type, seed=1)
    backbone = load_backbone(str(base), device="cpu")
    engine = Engine(backbone)
    sets = [random_bias_set(backbone.spec, f"t{i}", ["a", "b", "c"], seed=10 + i, pooling=pooling) for i in range(3)]
    for bs in sets:
        validate(bs, backbone.spec)
        engine.register(bs)
    rows = [(engine.get(bs.meta.task), engine.encode(engine.get(bs.meta.task), [t])[0]) for bs in sets for t in TEXTS[:3]]
    got = torch.stack(engine.logits(rows))
    want = torch.cat([reference_logits(base, bs, TEXTS[:3]) for bs in sets])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_plain_backbone_is_untouched_by_registration(tiny_backbone):
    before = {k: v.clone() for k, v in tiny_backbone.encoder.state_dict().items()}
    engine = Engine(tiny_backbone)
    for i in range(30):  # forces the table to grow several times
        engine.register(random_bias_set(tiny_backbone.spec, f"g{i}", seed=i))
    engine.predict("g3", ["hello there"])
    after = tiny_backbone.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
