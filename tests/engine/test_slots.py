"""Slots and holds: a fixed table, holds that pin a slot, reuse after the last release,
growth that loses no row under concurrent gathers, O(1) misses, the runner chosen once."""

from __future__ import annotations

import os
import threading

import pytest
import torch

from engine import Engine, NoFreeSlot, UnknownTask
from engine.tables import BiasTable
from tests.engine.test_gains import gain_set
from tests.helpers import random_bias_set

TEXTS = ["a gorgeous, witty film", "dull and far too long", "meh"]


def logits(engine: Engine, handle) -> torch.Tensor:
    return torch.stack(engine.logits([(handle, row) for row in engine.encode(handle, TEXTS)]))


@pytest.fixture(scope="module")
def sets(tiny_backbone):
    return [random_bias_set(tiny_backbone.spec, f"t{i}", seed=i) for i in range(6)]


def test_a_fixed_table_refuses_the_next_load_until_a_release(tiny_backbone, sets):
    engine = Engine(tiny_backbone, capacity=3, grow=False)
    assert (engine.capacity, engine.free_slots, engine.slots_in_use) == (3, 3, 0)
    handles = [engine.load(s) for s in sets[:3]]
    assert (engine.free_slots, engine.slots_in_use) == (0, 3)
    with pytest.raises(NoFreeSlot, match="all 3 slots") as caught:
        engine.load(sets[3])
    assert caught.value.capacity == 3
    engine.release(handles[1])
    again = engine.load(sets[3])
    assert again.slot == handles[1].slot and engine.capacity == 3 and engine.table.capacity == 3
    with pytest.raises(NoFreeSlot):  # the name-keyed API is built on the same slots
        engine.register(sets[4])


def test_a_held_slot_is_never_reused_until_its_last_release(tiny_backbone, sets):
    engine = Engine(tiny_backbone, capacity=2, grow=False)
    owner = engine.load(sets[0])
    engine.hold(owner)  # a request
    assert engine.holds(owner) == 2
    engine.release(owner)  # the owner lets go; the request still holds it
    other = engine.load(sets[1])
    with pytest.raises(NoFreeSlot):
        engine.load(sets[2])
    assert engine.holds(owner) == 1 and owner.slot != other.slot
    engine.release(owner)
    assert engine.holds(owner) == 0 and engine.load(sets[2]).slot == owner.slot
    with pytest.raises(RuntimeError, match="not held"):
        engine.hold(owner)  # its slot now serves another set
    with pytest.raises(RuntimeError, match="released more often"):
        engine.release(owner)


def test_names_hold_their_slot_and_a_request_outlives_unregister(tiny_backbone, sets):
    engine = Engine(tiny_backbone, capacity=2, grow=False)
    named = engine.register(sets[0])
    assert engine.holds(named) == 1 and engine.task_count == 1
    request = engine.acquire("t0")
    engine.unregister("t0")
    assert engine.holds(request) == 1 and engine.slots_in_use == 1 and engine.task_count == 0
    engine.release(request)
    assert engine.slots_in_use == 0 and torch.count_nonzero(engine.table.table[named.slot]) == 0


def test_answers_after_release_and_reload_are_bit_identical(tiny_backbone, sets):
    engine = Engine(tiny_backbone, capacity=2, grow=False)
    first = engine.load(sets[0])
    want = logits(engine, first)
    engine.release(first)
    other = engine.load(sets[1])  # the same slot, another set's row
    assert other.slot == first.slot
    engine.release(other)
    again = engine.load(sets[0])
    assert again.slot == first.slot and torch.equal(logits(engine, again), want)


def test_memory_bytes_and_counts_follow_the_live_handles(tiny_backbone, sets):
    engine = Engine(tiny_backbone, capacity=4, grow=False)
    assert engine.memory_bytes == engine.table.nbytes == 4 * engine.row_bytes
    assert engine.row_bytes == engine.table.width * engine.table.table.element_size()
    a, b = engine.register(sets[0]), engine.load(sets[1])
    assert engine.memory_bytes == engine.table.nbytes + a.head.nbytes + b.head.nbytes
    engine.release(b)
    assert engine.memory_bytes == engine.table.nbytes + a.head.nbytes


def test_growth_under_concurrent_gathers_loses_no_row(tiny_backbone):
    spec = tiny_backbone.spec
    table = BiasTable(tiny_backbone.encoder, capacity=1, model_type=spec.model_type)
    biases = [spec.site_biases(random_bias_set(spec, f"g{i}", seed=i).tensors) for i in range(16)]
    want: dict[int, torch.Tensor] = {}  # slot -> its absolute row, as gather computes it
    lock, done, errors = threading.Lock(), threading.Event(), []

    def writer(k: int) -> None:
        for i in range(k, 160, 4):
            b = biases[i % len(biases)]
            row = (table.task_row(b) - table.layout.base()) + table.layout.base()
            slot = table.write(b)
            with lock:
                want[slot] = row

    def gatherer() -> None:
        while not done.is_set():
            with lock:
                slots, rows = list(want), list(want.values())
            if slots and not torch.equal(table.gather(torch.tensor(slots)), torch.stack(rows)):
                errors.append("a gather saw a row that differs from what was written")

    gatherers = [threading.Thread(target=gatherer) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in gatherers + writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    for t in gatherers:
        t.join()
    assert not errors and len(want) == 160 and table.capacity >= 160  # grew many times, from 1
    assert torch.equal(table.gather(torch.tensor(list(want))), torch.stack(list(want.values())))


def test_a_miss_among_100k_names_hints_at_most_20(tiny_backbone, sets):
    engine = Engine(tiny_backbone, capacity=1, grow=False)
    handle = engine.load(sets[0])
    # 100,000 names on one slot: the name map alone is what a miss must not copy or sort.
    engine._tasks.update((f"task-{i:06d}", handle) for i in range(100_000))
    assert engine.task_count == 100_000
    for miss in (engine.get, engine.acquire, engine.unregister, lambda name: engine.predict(name, ["x"])):
        with pytest.raises(UnknownTask) as caught:
            miss("nope")
        assert len(caught.value.known) == UnknownTask.HINTS == 20
        assert caught.value.known == sorted(caught.value.known)
    assert engine.holds(handle) == 1  # no miss took a hold


def test_a_small_miss_names_the_loaded_tasks(tiny_backbone, sets):
    engine = Engine(tiny_backbone)
    with pytest.raises(UnknownTask, match="no tasks are known"):
        engine.get("x")
    for s in sets[:3][::-1]:
        engine.register(s)
    with pytest.raises(UnknownTask, match="known tasks: t0, t1, t2$"):
        engine.get("x")


def test_the_runner_is_chosen_once_and_swapped_only_by_enable_gains(tiny_backbone, sets):
    engine = Engine(tiny_backbone, capacity=3, grow=False)
    runner = engine.runner
    assert runner.layout is engine.table.layout and engine.backend == "torch"
    plain = engine.register(sets[0])
    before = logits(engine, plain)
    assert engine.runner is runner
    engine.register(gain_set(tiny_backbone.spec, "ln", seed=5))
    assert engine.runner is not runner and type(engine.runner) is type(runner)
    assert engine.runner.layout is engine.table.layout and engine.table.has_gains
    assert engine.capacity == 3 and engine.slots_in_use == 2  # a fixed table keeps its capacity when it widens
    torch.testing.assert_close(logits(engine, plain), before, atol=1e-6, rtol=0)
    widened = engine.runner
    engine.register(sets[1])
    assert engine.runner is widened
    with pytest.raises(NoFreeSlot):
        engine.register(sets[2])


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads RSS from /proc")
def test_slots_never_written_cost_no_resident_memory(tiny_backbone):
    def rss() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))

    before = rss()
    table = BiasTable(tiny_backbone.encoder, capacity=200_000, model_type=tiny_backbone.spec.model_type)
    assert table.nbytes > 128 << 20  # large enough to see
    assert rss() - before < table.nbytes // 10
