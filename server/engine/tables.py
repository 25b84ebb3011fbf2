"""Per-task bias rows beside a frozen encoder, added per row inside its forward.

Every site's output is ``W x + b_base``. For a task we store ``b_task - b_base`` (its
*delta*), so the encoder's own tensors are never written and rows of different tasks
share every matmul. All sites' deltas sit in one ``[capacity, total_dim]`` table. A
batch gathers its rows once and adds the base biases once, giving each row's absolute
``b_task`` for every site; each site then uses its column slice in place of its own bias:

- ``nn.Linear``: the matmul's output starts from the per-row bias and accumulates
  ``x W^T`` into it (beta=1), the same passes over memory as ``F.linear``'s own bias;
- ``nn.LayerNorm``: normalize and scale without a bias, then add the per-row bias;
- any other module type: a forward hook adds the row's delta to its output.

Outside ``rows()`` both return exactly what the plain module computes.

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
import torch.nn.functional as F
from torch import nn

from bias_store.sites import site_modules

GROWTH = 1.0625  # small growth step: the table's slack stays within ~6% of the task bytes


class BiasTable:
    def __init__(self, encoder: nn.Module, capacity: int = 0) -> None:
        self._modules = site_modules(encoder)
        first = next(iter(self._modules.values())).bias
        self.device, self.dtype = first.device, first.dtype
        self.offsets: dict[str, tuple[int, int]] = {}  # site -> (start, stop) columns
        start = 0
        for name, module in self._modules.items():
            self.offsets[name] = (start, start + module.bias.shape[0])
            start += module.bias.shape[0]
        self.width = start
        self.table = torch.zeros(max(capacity, 0), self.width, device=self.device, dtype=self.dtype)  # [capacity, width]
        self._free = list(range(self.table.shape[0] - 1, -1, -1))  # popped from the end: lowest slot first
        self._lock = threading.Lock()
        self._rows: torch.Tensor | None = None  # [batch, width] absolute biases for the running forward
        # The base biases, copied once: a running forward turns deltas into absolute rows.
        self._base = torch.cat([m.bias.detach().reshape(-1) for m in self._modules.values()]).clone()  # [width]
        self._handles = []
        self._columns: dict[int, tuple[int, int]] = {}  # id(site with a replaced forward) -> columns
        for name, module in self._modules.items():
            if type(module) in (nn.Linear, nn.LayerNorm):
                self._columns[id(module)] = self.offsets[name]
                _attach(module, self)
            else:
                self._handles.append(module.register_forward_hook(self._hook(name)))

    # -- slots -----------------------------------------------------------------------
    def write(self, biases: dict[str, torch.Tensor]) -> int:
        """Take a free slot and fill it with ``site -> absolute bias``; absent sites keep the base bias."""
        row = torch.zeros(self.width, dtype=torch.float32)
        for site, value in biases.items():
            start, stop = self.offsets[site]
            # Delta in fp32, then cast: b_base + delta reproduces b_task to rounding.
            row[start:stop] = value.float() - self._modules[site].bias.detach().float().cpu()
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
    def rows(self, slots: torch.Tensor) -> Iterator[None]:
        """Within this block, every site adds the rows of ``slots`` ([batch] long) to its output.

        The caller runs one forward at a time (the engine's forward lock).
        """
        with self._lock:
            table = self.table
        # One gather and one add per batch; the sites then only slice.
        self._rows = table.index_select(0, slots.to(self.device)).add_(self._base)  # [batch, width]
        try:
            yield
        finally:
            self._rows = None

    def _hook(self, site: str):
        start, stop = self.offsets[site]

        def add_rows(module: nn.Module, args, output: torch.Tensor) -> torch.Tensor | None:
            rows = self._rows
            if rows is None:
                return None  # plain backbone
            delta = rows[:, start:stop] - self._base[start:stop]  # [batch, dim]
            for _ in range(output.dim() - 2):
                delta = delta.unsqueeze(1)  # [batch, 1, ..., dim]: broadcast over positions
            if torch.is_grad_enabled():
                return output + delta
            return output.add_(delta)  # the output is a fresh tensor: add in place, no copy

        return add_rows

    def site_forward(self, module: nn.Module, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``module(x)`` with each batch row's own bias; x is [batch, *positions, features]."""
        start, stop = self._columns[id(module)]
        if x.shape[0] != rows.shape[0]:
            raise RuntimeError(f"bias rows are per batch row: input has {x.shape[0]} rows, the batch {rows.shape[0]}")
        bias = rows[:, start:stop]  # [batch, out]: b_task of each row
        positions = x[0].numel() // x.shape[-1]
        if type(module) is nn.LayerNorm:
            out = F.layer_norm(x, module.normalized_shape, module.weight, None, module.eps)
            bias = bias.view(bias.shape[0], *([1] * (x.dim() - 2)), -1)  # [batch, 1, ..., out]
            return out + bias if torch.is_grad_enabled() else out.add_(bias)
        # Linear. contiguous(): a real copy per position (reshape could return a stride-0 view).
        out = bias.unsqueeze(1).expand(-1, positions, -1).contiguous().view(-1, bias.shape[1])  # [batch * positions, out]
        x2d = x.reshape(-1, x.shape[-1])  # [batch * positions, in]
        if torch.is_grad_enabled():
            out = torch.addmm(out, x2d, module.weight.t())
        else:
            out.addmm_(x2d, module.weight.t())  # a fresh tensor: accumulate in place
        return out.view(*x.shape[:-1], -1)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for module in self._modules.values():
            if id(module) in self._columns:
                _detach(module, self)
        self._columns.clear()


# Several tables may sit on one encoder (engines built on a shared backbone, e.g. in
# tests); each site then gets ONE replacement forward that asks its tables, in order,
# for active rows, and gets its class forward back when the last table closes.
def _attach(module: nn.Module, table: BiasTable) -> None:
    tables = module.__dict__.setdefault("_bias_tables", [])
    if not tables:
        module.forward = lambda x: _site_forward(module, x)
    tables.append(table)


def _detach(module: nn.Module, table: BiasTable) -> None:
    tables = module.__dict__.get("_bias_tables", [])
    if table in tables:
        tables.remove(table)
    if not tables:
        module.__dict__.pop("_bias_tables", None)
        module.__dict__.pop("forward", None)  # back to the class's forward


def _site_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    for table in module._bias_tables:
        rows = table._rows
        if rows is not None:
            return table.site_forward(module, x, rows)
    return type(module).forward(module, x)  # plain backbone
