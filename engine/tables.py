"""Per-task bias rows beside a frozen encoder: slots in one device-resident table.

Every site's output is ``W x + b_base``. For a task we store ``b_task - b_base`` (its
*delta*), so the encoder's own tensors are never written and rows of different tasks
share every matmul. All sites' deltas sit in one ``[capacity, width]`` table, laid out
by ``engine.layout.SiteLayout``. A batch gathers its rows once and adds the base biases once
(``gather``), giving each row's absolute ``b_task`` for every site; the runner
(``engine.runners``) then adds them inside the forward.

Where the exact shortcuts apply (``engine.shortcuts``), the key and value sites are not
in the layout at all: a task's value bias is folded into its attention-output column when
it is written, and its key bias, which softmax cancels, is dropped.

Slots. A slot is written once, before any handle to it exists, and zeroed only after its
last holder lets go (``engine.registry``), so a forward never sees a row change under it.
With ``grow=False`` the table has exactly ``capacity`` slots for its whole life and never
copies itself: a write with no free slot raises ``NoFreeSlot``. With ``grow=True`` (scripts,
training, tests) a full table grows by 6.25%, so its bytes stay within ~6% of the tasks'
bias bytes. Growing allocates and copies under the writers' lock only; ``gather`` takes no
lock (it reads one reference, the table together with its layout and base rows), so
forwards keep running on the old table until the new one is swapped in whole, and no row
can be written or freed during the copy.

Memory. On the CPU the table comes from ``calloc`` (through numpy), whose large blocks are
fresh zero pages that the kernel maps only when first written: a slot never written costs
address space, not RSS. ``torch.zeros`` would write every byte (measured: +822 MiB RSS for
an 820 MiB table). Measured on the packaged MiniLM, ``Engine(capacity=100_000, grow=False)``
(21,504 fp32 columns with the shortcuts, 84 KiB a slot, 8.01 GiB of address space): built in
0.01 s, RSS +2-3 MiB before any write; 2,000 loads then added 166 MiB, 85 KiB a slot (its
row plus its head). ``tests/engine/test_slots.py`` checks the untouched case on a tiny model.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from bias_store.sites import site_modules
from engine.errors import NoFreeSlot
from engine.layout import SiteLayout
from engine.row_builder import RowBuilder
from engine.shortcuts import Shortcuts, shortcuts_for

GROWTH = 1.0625  # small growth step: the table's slack stays within ~6% of the task bytes


def zeros(rows: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``[rows, width]`` zeros; on the CPU from calloc, so pages never written cost no RSS."""
    if device.type != "cpu" or rows == 0:
        return torch.zeros(rows, width, device=device, dtype=dtype)
    nbytes = rows * width * torch.empty((), dtype=dtype).element_size()
    return torch.from_numpy(np.zeros(nbytes, dtype=np.uint8)).view(dtype).view(rows, width)


@dataclass(frozen=True)
class _Rows:
    """What a forward reads, replaced whole when the table grows or widens (rows are
    written in place: a slot no handle refers to yet, or any longer)."""

    layout: SiteLayout
    table: torch.Tensor  # [capacity, width]: each slot's delta
    base: torch.Tensor  # [width]: the encoder's own biases (then gains)
    builder: RowBuilder  # a task's absolute row for this layout (engine.row_builder)


class BiasTable:
    def __init__(self, encoder: nn.Module, capacity: int = 0, model_type: str | None = None, grow: bool = True) -> None:
        """``model_type``: apply the exact shortcuts where that architecture allows them
        (None: every site keeps its per-row add). ``grow``: False fixes the table at
        ``capacity`` slots (``write`` raises ``NoFreeSlot`` when all are taken)."""
        sites = site_modules(encoder)
        self.encoder = encoder
        self.shortcuts: Shortcuts | None = shortcuts_for(encoder, model_type, sites) if model_type else None
        layout = SiteLayout(encoder, self._dropped())
        first = next(iter(layout.modules.values())).bias
        self.device, self.dtype = first.device, first.dtype
        self.grow = grow
        self._rows = self._rows_for(layout, zeros(max(capacity, 0), layout.width, self.device, self.dtype))
        self._free = list(range(self.capacity - 1, -1, -1))  # popped from the end: lowest slot first
        self._lock = threading.Lock()  # writers only: slots, row writes, growth, widening (never gather)

    def _rows_for(self, layout: SiteLayout, table: torch.Tensor) -> _Rows:
        base = layout.base()
        return _Rows(layout, table, base, RowBuilder(layout, base, self.shortcuts))

    def _dropped(self) -> frozenset[str]:
        return self.shortcuts.dropped_sites if self.shortcuts else frozenset()

    @property
    def layout(self) -> SiteLayout:
        return self._rows.layout

    @property
    def table(self) -> torch.Tensor:
        return self._rows.table

    @property
    def width(self) -> int:
        return self._rows.layout.width

    @property
    def has_gains(self) -> bool:
        return bool(self.layout.gain_modules)

    def layout_with_gains(self) -> SiteLayout:
        """This table's layout plus every LayerNorm's gain columns (after all the biases)."""
        return SiteLayout(self.encoder, self._dropped(), gains=True)

    def enable_gains(self, layout: SiteLayout) -> None:
        """Switch to ``layout`` (from ``layout_with_gains``): every task gets zero gain deltas,
        i.e. the backbone's own gains. The capacity stays.

        Done once, when the first ``bitfit-ln`` set arrives, so that a catalog of plain bias
        sets never pays their width. The caller holds the forward lock: a running forward's
        gathered rows must match the layout it runs with. Only the slots in use are copied,
        so a large fixed table's untouched slots stay untouched.
        """
        with self._lock:
            old = self._rows
            if old.layout.gain_modules:
                return
            wider = zeros(self.capacity, layout.width, self.device, self.dtype)
            used = sorted(set(range(self.capacity)).difference(self._free))
            if used:
                index = torch.tensor(used, device=self.device)
                wider[index, : old.layout.width] = old.table.index_select(0, index)  # bias columns first in both layouts
            self._rows = self._rows_for(layout, wider)

    # -- slots -----------------------------------------------------------------------
    def task_row(self, biases: dict[str, torch.Tensor], gains: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """A task's ``site -> absolute bias`` (and ``LayerNorm site -> gain``) as its absolute
        row, ``[width]`` fp32 on the CPU: shortcuts applied, the base value wherever the task
        leaves a site out."""
        return self._absolute(self._rows, biases, gains)

    def _absolute(self, rows: _Rows, biases: dict[str, torch.Tensor], gains: dict[str, torch.Tensor] | None) -> torch.Tensor:
        return rows.builder.build(biases, gains)  # shortcuts folded, the base value wherever a site is left out

    def _delta(self, rows: _Rows, biases: dict[str, torch.Tensor], gains: dict[str, torch.Tensor] | None) -> torch.Tensor:
        # Delta in fp32, then cast: b_base + delta reproduces b_task to rounding.
        return (rows.builder.build(biases, gains) - rows.builder.base).to(self.dtype)

    def write(self, biases: dict[str, torch.Tensor], gains: dict[str, torch.Tensor] | None = None) -> int:
        """Take a free slot and fill it with ``site -> absolute bias`` (and gains, after
        ``enable_gains``); absent sites keep the base values. Raises ``NoFreeSlot`` when a
        fixed table is full."""
        rows = self._rows
        delta = self._delta(rows, biases, gains)  # built outside the lock
        with self._lock:
            if self._rows.layout is not rows.layout:  # widened meanwhile: build it for the new layout
                rows = self._rows
                delta = self._delta(rows, biases, gains)
            if not self._free:
                if not self.grow:
                    raise NoFreeSlot(self.capacity)
                self._grow()
            slot = self._free.pop()
            self._rows.table[slot].copy_(delta)
        return slot

    def free(self, slot: int) -> None:
        """Zero ``slot`` and give it back; the caller knows that no handle to it is held."""
        with self._lock:
            self._rows.table[slot].zero_()
            self._free.append(slot)

    def _grow(self) -> None:
        """The caller holds ``self._lock``: no row is written or freed during the copy, and
        ``gather`` (which takes no lock) keeps reading the old table until the swap."""
        old, before = self._rows, self.capacity
        capacity = max(before + 1, math.ceil(before * GROWTH))
        table = zeros(capacity, self.width, self.device, self.dtype)
        table[:before].copy_(old.table)
        self._rows = replace(old, table=table)  # one reference: a gather sees the old table or the new, whole
        self._free.extend(range(capacity - 1, before - 1, -1))

    @property
    def capacity(self) -> int:
        return self._rows.table.shape[0]

    @property
    def free_slots(self) -> int:
        return len(self._free)

    @property
    def slots_in_use(self) -> int:
        return self.capacity - len(self._free)

    @property
    def row_bytes(self) -> int:
        """Bytes one slot costs: ``width`` x the element size."""
        return self.width * self._rows.table.element_size()

    @property
    def nbytes(self) -> int:
        return self.capacity * self.row_bytes

    # -- forward -----------------------------------------------------------------------
    def gather(self, slots: torch.Tensor) -> torch.Tensor:
        """The absolute bias rows of task slots ``slots`` ([batch]): ``[batch, width]`` on the
        table's device, the explicit input of a per-row forward (``runners.pytorch.RowBiasedEncoder``)."""
        rows = self._rows  # one read, no lock: the table with its own base row
        return rows.table.index_select(0, slots.to(self.device)).add_(rows.base)  # one gather, one add
