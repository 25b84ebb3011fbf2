"""Forwards at once: ONNX Runtime's engine runs them in parallel, each with its own answers;
PyTorch's engine (whose forward patches the encoder's site modules) runs one at a time."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from engine import Engine
from tests.helpers import random_bias_set, reference_logits

TEXTS = ["a gorgeous, witty film", "dull and far too long", "not bad at all",
         "the plot twists kept me guessing until the very last scene", "meh", "I walked out halfway"]


class Overlap:
    """Wraps a callable; records how many calls were inside it at once (each call holds ``hold_s``)."""

    def __init__(self, inner, hold_s: float) -> None:
        self.inner, self.hold_s = inner, hold_s
        self.inside = self.most = 0
        self._lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        with self._lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        try:
            time.sleep(self.hold_s)  # long enough that a second thread would get in, if allowed
            return self.inner(*args, **kwargs)
        finally:
            with self._lock:
                self.inside -= 1


def batches(engine: Engine, n: int) -> list[list]:
    """``n`` batches, each a different mix of tasks and texts."""
    out = []
    for b in range(n):
        names = [f"t{(b + i) % 3}" for i in range(len(TEXTS))]
        out.append([(engine.get(name), engine.encode(engine.get(name), [text])[0]) for name, text in zip(names, TEXTS[b:] + TEXTS[:b])])
    return out


def run_at_once(engine: Engine, work: list[list]) -> list:
    prepared = [engine.prepare(items) for items in work]
    results: list = [None] * len(work)
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, engine.complete(prepared[i]))) for i in range(len(work))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def register(engine: Engine, spec) -> dict:
    sets = {}
    for i in range(3):
        bs = random_bias_set(spec, f"t{i}", ["a", "b", "c"][: 2 + i % 2], seed=20 + i, pooling="mean" if i % 2 else "cls")
        engine.register(bs)
        sets[bs.meta.task] = bs
    return sets


def test_onnx_runtime_forwards_run_at_once_and_each_batch_gets_its_own_answers(tiny_bert_dir, tiny_backbone, onnx_cache):
    pytest.importorskip("onnxruntime")
    from engine.runners.ort import OnnxOptions

    engine = Engine(tiny_backbone, onnx=OnnxOptions(onnx_cache, threads=1))
    sets = register(engine, tiny_backbone.spec)
    assert engine.parallel_forwards
    work = batches(engine, 4)
    serial = [engine.run(items) for items in work]
    engine.runner.session.run = spy = Overlap(engine.runner.session.run, hold_s=0.2)
    together = run_at_once(engine, work)
    assert spy.most >= 2, "the forwards did not overlap"
    for items, got, want in zip(work, together, serial):
        assert [p.task for p in got] == [h.name for h, _ in items]
        for p, q in zip(got, want):
            assert p.label == q.label and p.logits == pytest.approx(q.logits, abs=1e-5)
    # and each is the model's own answer (transformers + that task's bias set)
    first = work[0]
    for (handle, _), p, text in zip(first, together[0], TEXTS):
        want = reference_logits(tiny_bert_dir, sets[handle.name], [text])[0]
        torch.testing.assert_close(torch.tensor(p.logits), want, atol=1e-4, rtol=0)


def test_pytorch_forwards_run_one_at_a_time(tiny_backbone):
    engine = Engine(tiny_backbone)
    register(engine, tiny_backbone.spec)
    assert not engine.parallel_forwards
    work = batches(engine, 3)
    serial = [engine.run(items) for items in work]
    runner = engine.runner
    spy = Overlap(runner.forward, hold_s=0.1)
    runner.forward = spy  # nn.Module.__call__ looks the instance attribute up
    together = run_at_once(engine, work)
    assert spy.most == 1
    for got, want in zip(together, serial):
        for p, q in zip(got, want):
            assert p.label == q.label and p.logits == pytest.approx(q.logits, abs=1e-5)
