"""Per-task bias rows beside a frozen encoder: slots in one device-resident table.

Every site's output is ``W x + b_base``. For a task we store ``b_task - b_base`` (its
*delta*), so the encoder's own tensors are never written and rows of different tasks
share every matmul. All sites' deltas sit in one ``[capacity, width]`` table, laid out
by ``engine.layout.SiteLayout``. A batch gathers its rows once and adds the base biases once
(``gather``), giving each row's absolute ``b_task`` for every site; the runner (``engine.runners``) then adds
them inside the forward.

Where the exact shortcuts apply (``engine.shortcuts``), the key and value sites are not
in the layout at all: a task's value bias is folded into its attention-output column when
it is written, and its key bias, which softmax cancels, is dropped.

A slot is written once, before any request can reference it, and freed only when no
request holds it, so a forward never sees a row change under it. The table holds task
rows only (the plain backbone is the encoder's own forward), so its bytes are the
tasks' bias bytes plus at most the 6.25% growth slack.
"""

from __future__ import annotations

import math
import threading

import torch
from torch import nn

from bias_store.sites import site_modules
from engine.layout import SiteLayout
from engine.shortcuts import Shortcuts, shortcuts_for

GROWTH = 1.0625  # small growth step: the table's slack stays within ~6% of the task bytes


class BiasTable:
    def __init__(self, encoder: nn.Module, capacity: int = 0, model_type: str | None = None) -> None:
        """``model_type``: apply the exact shortcuts where that architecture allows them
        (None: every site keeps its per-row add)."""
        sites = site_modules(encoder)
        self.encoder = encoder
        self.shortcuts: Shortcuts | None = shortcuts_for(encoder, model_type, sites) if model_type else None
        self.layout = SiteLayout(encoder, self._dropped())
        first = next(iter(self.layout.modules.values())).bias
        self.device, self.dtype = first.device, first.dtype
        self.width = self.layout.width
        self.table = torch.zeros(max(capacity, 0), self.width, device=self.device, dtype=self.dtype)  # [capacity, width]
        self._free = list(range(self.table.shape[0] - 1, -1, -1))  # popped from the end: lowest slot first
        self._lock = threading.Lock()
        self._base = self.layout.base()  # [width]: a running forward turns deltas into absolute rows

    def _dropped(self) -> frozenset[str]:
        return self.shortcuts.dropped_sites if self.shortcuts else frozenset()

    @property
    def has_gains(self) -> bool:
        return bool(self.layout.gain_modules)

    def layout_with_gains(self) -> SiteLayout:
        """This table's layout plus every LayerNorm's gain columns (after all the biases)."""
        return SiteLayout(self.encoder, self._dropped(), gains=True)

    def enable_gains(self, layout: SiteLayout) -> None:
        """Switch to ``layout`` (from ``layout_with_gains``): every task gets zero gain deltas,
        i.e. the backbone's own gains.

        Done once, when the first ``bitfit-ln`` set arrives, so that a catalog of plain bias
        sets never pays their width. The caller holds the forward lock: a running forward's
        gathered rows must match the layout it runs with.
        """
        with self._lock:
            if self.has_gains:
                return
            wider = torch.zeros(self.table.shape[0], layout.width, device=self.device, dtype=self.dtype)
            wider[:, : self.width].copy_(self.table)  # bias columns first in both layouts
            self.layout, self.table, self.width, self._base = layout, wider, layout.width, layout.base()

    # -- slots -----------------------------------------------------------------------
    def task_row(self, biases: dict[str, torch.Tensor], gains: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """A task's ``site -> absolute bias`` (and ``LayerNorm site -> gain``) as its absolute
        row, ``[width]`` fp32 on the CPU: shortcuts applied, the base value wherever the task
        leaves a site out."""
        if self.shortcuts is not None:
            base = {site: module.bias for site, module in self.layout.modules.items()}
            biases = self.shortcuts.fold(biases, base)
        row = self._base.float().cpu().clone()
        for site, value in biases.items():
            start, stop = self.layout.offsets[site]
            row[start:stop] = value.float().cpu()
        for site, value in (gains or {}).items():
            start, stop = self.layout.gain_offsets[site]
            row[start:stop] = value.float().cpu()
        return row

    def write(self, biases: dict[str, torch.Tensor], gains: dict[str, torch.Tensor] | None = None) -> int:
        """Take a free slot and fill it with ``site -> absolute bias`` (and gains, after
        ``enable_gains``); absent sites keep the base values."""
        with self._lock:
            # Under the lock: ``enable_gains`` may widen the layout meanwhile, and the row must
            # be built for the layout it is written into. Delta in fp32, then cast:
            # b_base + delta reproduces b_task to rounding.
            delta = self.task_row(biases, gains) - self._base.float().cpu()
            if not self._free:
                self._grow()
            slot = self._free.pop()
            self.table[slot].copy_(delta.to(self.dtype))
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
    def gather(self, slots: torch.Tensor) -> torch.Tensor:
        """The absolute bias rows of task slots ``slots`` ([batch]): ``[batch, width]`` on the
        table's device, the explicit input of a per-row forward (``runners.pytorch.RowBiasedEncoder``)."""
        with self._lock:
            table = self.table
        return table.index_select(0, slots.to(self.device)).add_(self._base)  # one gather, one add
