"""split_by_length: a batch splits by length only when the padding it saves outweighs a forward."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Engine
from engine.length_split import CPU_OVERHEAD_TOKENS, ORT_OVERHEAD_TOKENS, resolve_overhead, split_by_length
from tests.helpers import random_bias_set


def cost(lengths: list[int], groups: list[list[int]], overhead: int) -> int:
    return sum(len(g) * max(lengths[i] for i in g) + overhead for g in groups)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 512), min_size=1, max_size=64), st.integers(1, 4096))
def test_every_row_runs_once_and_the_plan_never_costs_more_than_one_forward(lengths, overhead):
    groups = split_by_length(lengths, overhead)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(groups)
    assert cost(lengths, groups, overhead) <= cost(lengths, [list(range(len(lengths)))], overhead)


def test_short_rows_leave_a_long_one_when_the_padding_saved_beats_a_forward():
    lengths = [10] * 15 + [200]
    assert split_by_length(lengths, 32) == [list(range(15)), [15]]  # saves 15 * 190 padded tokens
    assert split_by_length(lengths, 10_000) == [list(range(16))]  # a forward costs more than that
    assert split_by_length([12, 11, 12, 11], 32) == [[0, 1, 2, 3]]  # 2 tokens of padding: not worth it
    assert split_by_length(lengths, None) == [list(range(16))]


def test_overhead_setting():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert resolve_overhead("auto", cpu) == CPU_OVERHEAD_TOKENS
    assert resolve_overhead("auto", cpu, hidden_size=768) == CPU_OVERHEAD_TOKENS
    assert resolve_overhead("auto", cpu, hidden_size=32) == 12 * CPU_OVERHEAD_TOKENS  # a toy's forward is all overhead
    assert resolve_overhead("auto", gpu) is None
    assert resolve_overhead("auto", cpu, onnxruntime=True) == ORT_OVERHEAD_TOKENS > CPU_OVERHEAD_TOKENS  # its forwards cost more fixed
    assert resolve_overhead("off", cpu) is None
    assert resolve_overhead(100, gpu) == 100
    with pytest.raises(ValueError, match="positive"):
        resolve_overhead(0, cpu)


def test_a_split_batch_answers_as_one_forward_does(tiny_backbone):
    texts = ["meh", "ok", "a long review " * 30, "fine film", "bad", "the plot twists kept me guessing " * 8]
    answers = {}
    for overhead in ("off", 1):
        engine = Engine(tiny_backbone, split_overhead_tokens=overhead)
        for i in range(3):
            engine.register(random_bias_set(tiny_backbone.spec, f"t{i}", seed=i, pooling=("cls", "mean")[i % 2]))
        items = [(engine.get(f"t{i % 3}"), row) for i, text in enumerate(texts) for row in engine.encode(engine.get(f"t{i % 3}"), [text])]
        assert len(split_by_length([len(r) for _, r in items], engine.split_overhead_tokens)) == (1 if overhead == "off" else 4)
        answers[overhead] = torch.stack(engine.logits(items))
    torch.testing.assert_close(answers[1], answers["off"], atol=1e-5, rtol=0)


def test_the_setting_reads_auto_off_or_a_positive_count(monkeypatch):
    from pydantic import ValidationError

    from server.process.settings import Settings

    assert Settings().split_overhead_tokens == "auto"
    for raw, want in (("off", "off"), ("48", 48)):
        monkeypatch.setenv("BITFIT_SPLIT_OVERHEAD_TOKENS", raw)
        assert Settings().split_overhead_tokens == want
    for bad in ("0", "-3", "sometimes"):
        monkeypatch.setenv("BITFIT_SPLIT_OVERHEAD_TOKENS", bad)
        with pytest.raises(ValidationError):
            Settings()
