"""Registering, replacing and deleting tasks: isolation, pinning, slot reuse, input errors."""

import pytest
import torch

from engine import EmptyInput, Engine, PairMismatch, UnknownTask, WrongInputType
from tests.helpers import random_bias_set

TEXTS = ["a gorgeous, witty film", "dull and far too long", "meh"]


@pytest.fixture()
def engine(tiny_backbone):
    engine = Engine(tiny_backbone, capacity=4)
    for i in range(6):
        engine.register(random_bias_set(tiny_backbone.spec, f"t{i}", seed=i))
    return engine


def all_logits(engine, names):
    items = [(engine.get(n), row) for n in names for row in engine.encode(engine.get(n), TEXTS)]
    return {n: torch.stack(engine.logits([it for it in items if it[0].name == n])) for n in names}


def test_replacing_or_deleting_a_task_leaves_every_other_task_bit_identical(engine, tiny_backbone):
    others = ["t0", "t1", "t2", "t4", "t5"]
    before = all_logits(engine, others + ["t3"])

    engine.register(random_bias_set(tiny_backbone.spec, "t3", seed=99), version=2)
    after_replace = all_logits(engine, others + ["t3"])
    for n in others:
        assert torch.equal(before[n], after_replace[n])
    assert not torch.allclose(before["t3"], after_replace["t3"])

    engine.unregister("t3")
    after_delete = all_logits(engine, others)
    for n in others:
        assert torch.equal(before[n], after_delete[n])
    with pytest.raises(UnknownTask, match="not found; known tasks: t0, t1"):
        engine.get("t3")


def test_a_pinned_request_keeps_its_version_through_replace_and_delete(engine, tiny_backbone):
    handle = engine.acquire("t1")
    rows = engine.encode(handle, TEXTS)
    want = torch.stack(engine.logits([(handle, r) for r in rows]))

    engine.register(random_bias_set(tiny_backbone.spec, "t1", seed=123), version=2)
    for i in range(10):  # churn: freed slots would be reused by these if t1's old slot were freed
        engine.register(random_bias_set(tiny_backbone.spec, f"churn{i}", seed=200 + i))
    engine.unregister("t1")

    got = torch.stack(engine.logits([(handle, r) for r in rows]))
    assert torch.equal(got, want)
    assert handle.version == 1
    slot = handle.slot
    engine.release(handle)
    assert slot in engine.table._free  # freed once the last holder let go


def test_new_version_is_served_right_after_register(engine, tiny_backbone):
    new = random_bias_set(tiny_backbone.spec, "t0", labels=["no", "yes", "maybe"], seed=7)
    engine.register(new, version=2)
    [p] = engine.predict("t0", ["fine"])
    assert p.version == 2 and set(p.scores) == {"no", "yes", "maybe"}
    assert abs(sum(p.scores.values()) - 1) < 1e-5 and p.score == max(p.scores.values())


def test_input_errors_are_specific(engine, tiny_backbone):
    engine.register(random_bias_set(tiny_backbone.spec, "pairs", inputs="text_pair"))
    with pytest.raises(EmptyInput, match=r"inputs\[1\]: text is empty"):
        engine.predict("t0", ["ok", "   "])
    with pytest.raises(PairMismatch, match="takes single texts"):
        engine.predict("t0", [("a", "b")])
    with pytest.raises(PairMismatch, match="takes text pairs"):
        engine.predict("pairs", ["just one"])
    with pytest.raises(WrongInputType, match="got int"):
        engine.predict("t0", [3])
    with pytest.raises(WrongInputType, match="non-empty list"):
        engine.predict("t0", [])
    with pytest.raises(UnknownTask):
        engine.predict("nope", ["x"])
    [p] = engine.predict("pairs", [("is it raining?", "yes, heavily")])
    assert p.task == "pairs"


def test_truncation_is_flagged(engine):
    long_text = "word " * (engine.backbone.max_length + 50)
    short, long = engine.predict("t0", ["short text", long_text])
    assert not short.truncated and long.truncated


def test_problem_types(engine, tiny_backbone):
    engine.register(random_bias_set(tiny_backbone.spec, "multi", labels=["a", "b", "c"], problem_type="multi_label_classification"))
    engine.register(random_bias_set(tiny_backbone.spec, "reg", labels=["score"], problem_type="regression"))
    [m] = engine.predict("multi", ["x"])
    assert all(0 < s < 1 for s in m.scores.values())
    [r] = engine.predict("reg", ["x"])
    assert r.label == "score" and r.score == pytest.approx(r.logits[0])
