"""The compiled forward: one graph per length bucket for every task mix and batch size."""

import pytest
import torch
from torch._dynamo.utils import counters

from engine import Engine
from engine.runners.compiled import CompiledEncoder, length_buckets
from tests.helpers import random_bias_set

TEXTS = ["meh", "a gorgeous, witty film", "dull and far too long", "I would not watch it again, even for free"]


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def engine_with_tasks(backbone, compile_mode: str = "off", tasks: int = 4) -> Engine:
    engine = Engine(backbone, split_overhead_tokens="off", compile_mode=compile_mode)
    for i in range(tasks):
        engine.register(random_bias_set(backbone.spec, f"t{i}", ["a", "b", "c"][: 2 + i % 2], seed=i))
    return engine


def mixed_rows(engine: Engine, picks: list[tuple[int, str]]):
    return [(engine.get(f"t{t}"), engine.encode(engine.get(f"t{t}"), [text])[0]) for t, text in picks]


def test_length_buckets_are_bounded():
    assert length_buckets(128) == (16, 32, 64, 128)
    assert length_buckets(512) == (16, 32, 64, 128, 256, 512)
    assert length_buckets(100) == (16, 32, 64, 100)
    assert len(length_buckets(1 << 20)) == 8 and length_buckets(1 << 20)[-1] == 1 << 20


def test_one_graph_per_bucket_across_task_mixes_and_batches(tiny_backbone, fresh_dynamo):
    """The graph capture itself (aot_eager: no code generation, so it stays cheap)."""
    eager = engine_with_tasks(tiny_backbone)
    engine = engine_with_tasks(tiny_backbone)
    engine.runner = CompiledEncoder(engine.runner, "default", tiny_backbone.max_length, backend="aot_eager")
    mixes = [
        [(0, TEXTS[0]), (1, TEXTS[1])],
        [(2, TEXTS[2]), (2, TEXTS[3]), (3, TEXTS[0]), (0, TEXTS[1]), (1, TEXTS[2])],
        [(3, TEXTS[3])],  # a single row (padded to two)
        [(1, TEXTS[0]), (3, TEXTS[1]), (0, TEXTS[3])],
    ]
    for picks in mixes:  # every length here is within the 16-token bucket
        rows = mixed_rows(engine, picks)
        for got, want in zip(engine.logits(rows), eager.logits(mixed_rows(eager, picks)), strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["graph_break"]
    engine.logits(mixed_rows(engine, [(0, "word " * 20), (1, TEXTS[0])]))  # the 32-token bucket
    assert counters["stats"]["unique_graphs"] == 2


def test_inductor_logits_equal_eager(tiny_backbone, fresh_dynamo):
    """Generated code (inductor), one bucket only: compiling is the slow part of this suite."""
    eager = engine_with_tasks(tiny_backbone)
    engine = engine_with_tasks(tiny_backbone, "default")
    engine.runner = CompiledEncoder(engine.runner.encoder, "default", max_length=16)
    engine.warm_up(max_batch=8)
    compiled_graphs = counters["stats"]["unique_graphs"]
    assert compiled_graphs == len(engine.runner.buckets) == 1
    picks = [(0, TEXTS[0]), (1, TEXTS[1]), (2, TEXTS[2]), (3, TEXTS[3]), (1, TEXTS[3])]
    for got, want in zip(engine.logits(mixed_rows(engine, picks)), eager.logits(mixed_rows(eager, picks)), strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    assert counters["stats"]["unique_graphs"] == compiled_graphs  # warm-up compiled what serving needs


def test_a_bad_compile_mode_says_which_ones_exist(tiny_backbone):
    with pytest.raises(ValueError, match="max-autotune"):
        Engine(tiny_backbone, compile_mode="fast")
