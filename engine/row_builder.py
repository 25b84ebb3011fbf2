"""A task's absolute bias row built with a few tensor ops, not a loop over its sites.

A cold load builds one row per task (~50 sites for MiniLM, ~100 for BERT-base). Written
site by site, with the value-bias fold converting each output projection's weight to fp64
on every call, that cost ~1 ms of interpreter time a load, holding the GIL the event loop
needs. Here a row is:

- one ``torch.cat`` of the task's site tensors in the layout's column order (a plan per
  combination of sites present, cached: a set that leaves sites out is scattered into a
  copy of the base row with one indexed write);
- with the exact shortcuts (``engine.shortcuts``), one batched fp64 product (numpy's, which releases the GIL) for every
  block's ``W_o (b_v - b_v0)`` (the weights converted once, here) and one ``index_add_``
  into the output columns.

The result equals ``Shortcuts.fold`` followed by the per-site writes bit for bit (the same
fp32 subtraction, fp64 product, fp32 addition; ``tests/engine/test_row_builder.py``).
The fp64 weights cost ``blocks x hidden^2 x 8`` bytes of host memory (MiniLM 7 MB,
BERT-base 57 MB).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engine.layout import SiteLayout
from engine.shortcuts import Shortcuts


@dataclass(frozen=True)
class _Plan:
    sites: tuple[str, ...]  # the bias sites present, in column order
    gain_sites: tuple[str, ...]  # the LayerNorm gains present, in column order
    columns: torch.Tensor | None  # where their values go; None: every column, in order
    value_blocks: tuple[int, ...]  # the attention blocks whose value bias the task sets
    fold_columns: torch.Tensor | None  # those blocks' output columns, flat


class RowBuilder:
    def __init__(self, layout: SiteLayout, base: torch.Tensor, shortcuts: Shortcuts | None) -> None:
        """``base``: the layout's base row (``layout.base()``)."""
        self.layout = layout
        self.base = base.detach().to("cpu", torch.float32)  # [width], the value of every site left out
        self.sites = tuple(layout.modules)
        self.gain_sites = tuple(layout.gain_modules)
        self.blocks = shortcuts.blocks if shortcuts is not None else ()
        self._plans: dict[tuple, _Plan] = {}
        if self.blocks:
            self.value_sites = tuple(b.value for b in self.blocks)
            self.value_base = torch.stack([shortcuts.value_base[v] for v in self.value_sites]).to("cpu", torch.float32)
            self.weight64 = np.stack(  # [blocks, out, in]; numpy's batched product is ~10x torch's bmm in fp64 here
                [shortcuts.output_weight[b.output].detach().to("cpu", torch.float64).numpy() for b in self.blocks]
            )

    def build(self, biases: dict[str, torch.Tensor], gains: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The absolute row ``[width]`` (fp32, CPU) of ``site -> absolute bias`` (and gains)."""
        with torch.no_grad():  # values may come from a model being trained: the row is data, not a graph
            return self._build(biases, gains or {})

    def _build(self, biases: dict[str, torch.Tensor], gains: dict[str, torch.Tensor]) -> torch.Tensor:
        key = (tuple(s in biases for s in self.sites), tuple(s in gains for s in self.gain_sites),
               tuple(v in biases for v in self.value_sites) if self.blocks else ())
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._plan(key)
        values = [biases[s] for s in plan.sites] + [gains[s] for s in plan.gain_sites]
        if plan.columns is None:
            row = torch.cat(values).to("cpu", torch.float32)
        else:
            row = self.base.clone()
            if values:
                row[plan.columns] = torch.cat(values).to("cpu", torch.float32)
        if plan.value_blocks:
            index = list(plan.value_blocks)
            every = len(index) == len(self.blocks)
            shift = torch.stack([biases[self.value_sites[i]] for i in index]).to("cpu", torch.float32)
            shift -= self.value_base if every else self.value_base[index]
            weight = self.weight64 if every else self.weight64[index]
            moved = np.matmul(weight, shift.double().numpy()[..., None])[..., 0]  # [blocks, out], fp64
            row.index_add_(0, plan.fold_columns, torch.from_numpy(moved).float().reshape(-1))
        return row

    def _plan(self, key: tuple) -> _Plan:
        present, gains_present, values_present = key
        sites = tuple(s for s, p in zip(self.sites, present) if p)
        gain_sites = tuple(s for s, p in zip(self.gain_sites, gains_present) if p)
        columns = None
        if len(sites) < len(self.sites) or len(gain_sites) < len(self.gain_sites):
            spans = [self.layout.offsets[s] for s in sites] + [self.layout.gain_offsets[s] for s in gain_sites]
            columns = torch.cat([torch.arange(a, b) for a, b in spans]) if spans else torch.empty(0, dtype=torch.long)
        blocks = tuple(i for i, p in enumerate(values_present) if p)
        fold_columns = None
        if blocks:
            fold_columns = torch.cat([torch.arange(*self.layout.offsets[self.blocks[i].output]) for i in blocks])
        return _Plan(sites, gain_sites, columns, blocks, fold_columns)
