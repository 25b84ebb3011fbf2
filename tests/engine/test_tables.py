"""BiasTable: slots hold deltas, gather gives absolute rows, freed slots are reused, growth keeps rows."""

from __future__ import annotations

import torch

from engine.tables import GROWTH, BiasTable
from tests.helpers import random_bias_set


def test_write_gather_free_and_grow(tiny_backbone):
    spec = tiny_backbone.spec
    table = BiasTable(tiny_backbone.encoder, capacity=0)
    assert table.capacity == 0
    sets = [spec.site_biases(random_bias_set(spec, f"t{i}", seed=i).tensors) for i in range(3)]
    slots = [table.write(b) for b in sets]
    assert slots == [0, 1, 2] and table.capacity >= 3  # grown from empty, one step at a time
    rows = table.gather(torch.tensor(slots))  # [3, width]: absolute biases, base + delta
    for row, biases in zip(rows, sets):
        for site, bias in biases.items():
            start, stop = table.layout.offsets[site]
            torch.testing.assert_close(row[start:stop], bias.to(row.dtype), rtol=1e-6, atol=1e-6)
    before = table.gather(torch.tensor([0, 2])).clone()
    table.free(1)
    assert torch.count_nonzero(table.table[1]) == 0
    assert table.write(sets[0]) == 1  # the freed slot is taken again
    capacity = table.capacity
    while table.capacity == capacity:  # fill up, then one more: the table grows by GROWTH
        table.write(sets[1])
    assert table.capacity == max(capacity + 1, int(-(-capacity * GROWTH // 1)))
    torch.testing.assert_close(table.gather(torch.tensor([0, 2])), before)  # rows survive the growth
    assert table.nbytes == table.capacity * table.width * table.table.element_size()
