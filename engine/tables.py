"""Per-task bias rows beside a frozen encoder: slots in one device-resident table.

Every site's output is ``W x + b_base``. For a task we store ``b_task - b_base`` (its
*delta*), so the encoder's own tensors are never written and rows of different tasks
share every matmul. All sites' deltas sit in one ``[capacity, width]`` table, laid out
by ``per_row.SiteLayout``. A batch gathers its rows once and adds the base biases once,
giving each row's absolute ``b_task`` for every site; ``per_row.per_row_biases`` then
adds them inside the forward.

A slot is written once, before any request can reference it, and freed only when no
request holds it, so a forward never sees a row change under it. The table holds task
rows only (the plain backbone is the forward outside ``rows()``), so its bytes are the
tasks' bias bytes plus at most the 6.25% growth slack.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator

import torch
from torch import nn

from engine.per_row import SiteLayout, per_row_biases

GROWTH = 1.0625  # small growth step: the table's slack stays within ~6% of the task bytes


class BiasTable:
    def __init__(self, encoder: nn.Module, capacity: int = 0) -> None:
        self.layout = SiteLayout(encoder)
        first = next(iter(self.layout.modules.values())).bias
        self.device, self.dtype = first.device, first.dtype
        self.width = self.layout.width
        self.table = torch.zeros(max(capacity, 0), self.width, device=self.device, dtype=self.dtype)  # [capacity, width]
        self._free = list(range(self.table.shape[0] - 1, -1, -1))  # popped from the end: lowest slot first
        self._lock = threading.Lock()
        self._base = self.layout.base()  # [width]: a running forward turns deltas into absolute rows

    # -- slots -----------------------------------------------------------------------
    def write(self, biases: dict[str, torch.Tensor]) -> int:
        """Take a free slot and fill it with ``site -> absolute bias``; absent sites keep the base bias."""
        row = torch.zeros(self.width, dtype=torch.float32)
        for site, value in biases.items():
            start, stop = self.layout.offsets[site]
            # Delta in fp32, then cast: b_base + delta reproduces b_task to rounding.
            row[start:stop] = value.float() - self.layout.modules[site].bias.detach().float().cpu()
        with self._lock:
            if not self._free:
                self._grow()
            slot = self._free.pop()
            self.table[slot].copy_(row.to(self.dtype))
        return slot

    def free(self, slot: int) -> None:
        with self._lock:
            self.table[slot].zero_()
            self._free.append(slot)

    def _grow(self) -> None:
        old = self.table
        capacity = max(old.shape[0] + 1, math.ceil(old.shape[0] * GROWTH))
        new = torch.zeros(capacity, self.width, device=self.device, dtype=self.dtype)
        new[: old.shape[0]].copy_(old)
        # A forward that already gathered from `old` keeps its rows; new writes go to `new`.
        self.table = new
        self._free.extend(range(capacity - 1, old.shape[0] - 1, -1))

    @property
    def capacity(self) -> int:
        return self.table.shape[0]

    @property
    def nbytes(self) -> int:
        return self.table.numel() * self.table.element_size()

    # -- forward -----------------------------------------------------------------------
    @contextlib.contextmanager
    def rows(self, slots: torch.Tensor, linear_form: str | None = None) -> Iterator[None]:
        """Within this block, batch row ``i`` of the encoder uses task slot ``slots[i]``'s biases.

        The caller runs one forward at a time (the engine's forward lock). ``linear_form``:
        see ``per_row.per_row_biases`` (the device's default when None).
        """
        with self._lock:
            table = self.table
        rows = table.index_select(0, slots.to(self.device)).add_(self._base)  # [batch, width]: one gather, one add
        with per_row_biases(self.layout, rows, linear_form):
            yield
