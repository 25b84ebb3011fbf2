"""The batcher (the queue) alone, on a recording fake engine: mixing, limits, back-pressure, drops, drain."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest

from engine.inputs import EncodedRow
from server.exceptions import NotReady, Overloaded
from server.process.metrics import Metrics
from server.process.settings import Settings
from server.serving.batcher import Batcher


class FakeEngine:
    """Records every batch; each row's 'prediction' is (task, row index) so order is checkable."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.batches: list[list[tuple[str, int]]] = []
        self.delay, self.fail_on = delay, fail_on
        self.gate = threading.Event()
        self.gate.set()

    def run(self, items, split=None):
        self.gate.wait()
        time.sleep(self.delay)
        rows = [(h.name, r.input_ids[0]) for h, r in items]
        self.batches.append(rows)
        if self.fail_on and any(name == self.fail_on for name, _ in rows):
            raise RuntimeError("boom")
        return rows

    packs = False  # padded forwards

    def split(self, items):
        return [list(range(len(items)))]  # one forward

    def prepare(self, items, split=None):
        return items, split

    def complete(self, prepared):
        return self.run(*prepared)

    def encode(self, handle, inputs):
        self.encoded_on = threading.current_thread().name
        return [EncodedRow([i] + [0] * (len(text) - 1), None, False) for i, text in enumerate(inputs)]


def handle(name: str, slot: int) -> SimpleNamespace:
    return SimpleNamespace(name=name, slot=slot)


def rows(name: str, slot: int, n: int, length: int = 4) -> list:
    return [(handle(name, slot), EncodedRow([i] + [0] * (length - 1), None, False)) for i in range(n)]


def settings(**kw) -> Settings:
    """Batch settings by their Settings names, with a short wait; small queues allowed."""
    return Settings(**{"max_wait_ms": 20, "max_inputs_per_request": 1, **kw})


def make(engine, workers: int = 1, **kw) -> Batcher:
    return Batcher(engine, Metrics(), settings(**kw), workers)


def test_requests_of_different_tasks_share_one_batch_and_answer_in_order():
    engine = FakeEngine()
    batcher = make(engine, max_batch_rows=16, max_wait_ms=200)  # generous: all four arrive within it

    async def main():
        return await asyncio.gather(*(batcher.submit(rows(f"t{k}", k + 1, 3)) for k in range(4)))

    results = asyncio.run(main())
    batcher.close()
    assert results == [[(f"t{k}", i) for i in range(3)] for k in range(4)]
    assert len(engine.batches) == 1 and len({name for name, _ in engine.batches[0]}) == 4


def test_max_rows_and_max_tokens_split_batches_and_a_big_request_spans_several():
    engine = FakeEngine()
    batcher = make(engine, max_batch_rows=4, max_batch_tokens=1000)

    async def main():
        return await batcher.submit(rows("big", 1, 10))

    assert asyncio.run(main()) == [("big", i) for i in range(10)]
    assert [len(b) for b in engine.batches] == [4, 4, 2]

    engine.batches.clear()
    tight = make(engine, max_batch_rows=32, max_batch_tokens=40)  # rows of 10 tokens: 4 per batch

    async def main2():
        return await tight.submit(rows("t", 1, 6, length=10))

    assert asyncio.run(main2()) == [("t", i) for i in range(6)]
    assert [len(b) for b in engine.batches] == [4, 2]
    batcher.close()
    tight.close()


def test_full_queue_answers_overloaded_with_retry_after():
    engine = FakeEngine()
    engine.gate.clear()  # the worker blocks inside its first forward
    batcher = make(engine, max_batch_rows=2, max_queue_rows=4, max_wait_ms=0, retry_after_s=3)

    async def main():
        first = asyncio.ensure_future(batcher.submit(rows("a", 1, 2)))
        while not engine.batches and batcher.queued_rows:  # wait until the worker took it
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(batcher.submit(rows("b", 2, 4)))  # fills the queue
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded) as info:
            await batcher.submit(rows("c", 3, 1))
        assert info.value.headers == {"Retry-After": "3"} and "BITFIT_MAX_QUEUE_ROWS" in str(info.value)
        engine.gate.set()
        return await first, await waiting

    first, waiting = asyncio.run(main())
    assert len(first) == 2 and len(waiting) == 4
    batcher.close()


def test_a_failed_forward_fails_only_its_requests():
    engine = FakeEngine(fail_on="bad")
    batcher = make(engine, max_batch_rows=1, max_wait_ms=0)

    async def main():
        bad = batcher.submit(rows("bad", 1, 1))
        good = batcher.submit(rows("good", 2, 1))
        return await asyncio.gather(bad, good, return_exceptions=True)

    bad, good = asyncio.run(main())
    assert isinstance(bad, RuntimeError) and good == [("good", 0)]
    batcher.close()


def test_close_finishes_queued_work_then_refuses():
    engine = FakeEngine(delay=0.02)
    batcher = make(engine, max_batch_rows=2, max_wait_ms=0)

    async def main():
        futures = [asyncio.ensure_future(batcher.submit(rows(f"t{k}", k + 1, 2))) for k in range(3)]
        await asyncio.sleep(0.005)
        closer = asyncio.get_running_loop().run_in_executor(None, batcher.close)
        results = await asyncio.gather(*futures)
        await closer
        with pytest.raises(NotReady):
            await batcher.submit(rows("late", 9, 1))
        return results

    assert [len(r) for r in asyncio.run(main())] == [2, 2, 2]


def test_padding_and_forwards_per_batch_are_measured_as_the_engine_splits_them():
    class SplittingEngine(FakeEngine):
        def split(self, items):  # the long row in a forward of its own
            return [[i for i, (_, r) in enumerate(items) if len(r) < 8], [i for i, (_, r) in enumerate(items) if len(r) >= 8]]

    class PackingEngine(FakeEngine):
        packs = True  # the three rows share one sequence of 14 tokens

    metrics = Metrics()
    for engine in (FakeEngine(), SplittingEngine(), PackingEngine()):
        batcher = Batcher(engine, metrics, settings(max_wait_ms=200, max_batch_rows=3))
        items = rows("t", 1, 2, length=2) + rows("t", 1, 1, length=10)  # 14 real tokens

        async def main(b=batcher, items=items):
            return await b.submit(items)

        asyncio.run(main())
        batcher.close()
        assert len(engine.batches) == 1
    registry = metrics.registry
    assert registry.get_sample_value("bitfit_batch_forwards_sum") == 1 + 2 + 1
    # one forward pads to 3 x 10 = 30 tokens (16 of padding); split: 2 x 2 + 10 = 14, none; packed: 14, none
    assert registry.get_sample_value("bitfit_batch_padding_ratio_sum") == pytest.approx(16 / 30)


def test_the_next_batch_is_prepared_before_the_answers_of_the_last_one_go_out():
    """The worker's GIL-bound steps for batch B run before it wakes the event loop with A's
    answers, so the loop's burst of work overlaps B's forward (server/serving/batcher.py)."""
    events: list[str] = []

    class Recording(FakeEngine):
        def prepare(self, items, split=None):
            events.append("prepare " + items[0][0].name)
            return super().prepare(items, split)

        def complete(self, prepared):
            events.append("complete " + prepared[0][0][0].name)
            return super().complete(prepared)

    engine = Recording()
    engine.gate.clear()  # A's forward waits until B is queued
    batcher = make(engine, max_batch_rows=4, max_wait_ms=0)

    async def main():
        a = asyncio.ensure_future(batcher.submit(rows("a", 1, 4)))
        a.add_done_callback(lambda _: events.append("answered a"))
        while "complete a" not in events:
            await asyncio.sleep(0.005)
        b = asyncio.ensure_future(batcher.submit(rows("b", 2, 4)))
        await asyncio.sleep(0.05)  # b is queued (and due) while a's forward runs
        engine.gate.set()
        return await a, await b

    a, b = asyncio.run(main())
    batcher.close()
    assert a == [("a", i) for i in range(4)] and b == [("b", i) for i in range(4)]
    assert events.index("complete a") < events.index("prepare b") < events.index("answered a")


class OneSlowTask(FakeEngine):
    """Batches with a row of task "slow" wait in their forward until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def run(self, items, split=None):
        if any(h.name == "slow" for h, _ in items):
            self.release.wait(10)
        return super().run(items, split)


@pytest.mark.parametrize("workers", [1, 2])
def test_with_two_workers_a_batch_is_answered_while_the_other_is_in_its_forward(workers):
    engine = OneSlowTask()
    batcher = make(engine, workers, max_batch_rows=2, max_wait_ms=0)

    async def main():
        slow = asyncio.ensure_future(batcher.submit(rows("slow", 1, 1)))
        await asyncio.sleep(0.05)  # a worker is inside the slow forward
        fast = asyncio.ensure_future(batcher.submit(rows("fast", 2, 2)))
        done, _ = await asyncio.wait({fast}, timeout=1.0)
        answered_first = bool(done)
        engine.release.set()
        return answered_first, await slow, await fast

    answered_first, slow, fast = asyncio.run(main())
    batcher.close()
    assert answered_first == (workers == 2)  # one worker: "fast" waits for the slow forward
    assert slow == [("slow", 0)] and fast == [("fast", 0), ("fast", 1)]
    assert batcher.workers == workers


def test_four_workers_answer_every_row_once_and_in_order_under_load():
    engine = FakeEngine(delay=0.002)
    batcher = make(engine, 4, max_batch_rows=5, max_wait_ms=1)

    async def main():
        sizes = [1 + (k * 7) % 6 for k in range(60)]
        results = await asyncio.wait_for(asyncio.gather(*(batcher.submit(rows(f"t{k}", k + 1, n)) for k, n in enumerate(sizes))), 30)
        return sizes, results

    sizes, results = asyncio.run(main())
    batcher.close()
    assert results == [[(f"t{k}", i) for i in range(n)] for k, n in enumerate(sizes)]
    assert sorted(row for batch in engine.batches for row in batch) == sorted(row for r in results for row in r)
    assert all(len(batch) <= 5 for batch in engine.batches)


def test_idle_workers_split_a_burst_evenly_instead_of_one_taking_it_all():
    engine = FakeEngine(delay=0.05)
    engine.gate.clear()  # hold the workers until the whole burst is queued
    batcher = make(engine, 2, max_batch_rows=32, max_wait_ms=30)

    async def main():
        futures = [asyncio.ensure_future(batcher.submit(rows(f"t{k}", k + 1, 1))) for k in range(24)]
        await asyncio.sleep(0.2)  # both workers took their share and wait at the gate
        engine.gate.set()
        return await asyncio.wait_for(asyncio.gather(*futures), 10)

    results = asyncio.run(main())
    batcher.close()
    assert results == [[(f"t{k}", 0)] for k in range(24)]
    assert sorted(len(b) for b in engine.batches) == [12, 12]
