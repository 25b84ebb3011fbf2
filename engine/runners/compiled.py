"""The per-row forward under ``torch.compile``: one graph per length bucket serves every task mix.

``RowBiasedEncoder`` takes the batch's bias rows as an input, so the compiled graph reads
them like the token ids: a new task mix is new data, never a new graph. Inductor fuses
each per-row add into its neighbouring pointwise kernels (GELU, residual + LayerNorm).

Shapes are bounded so that compiling stays a start-up cost:
- the sequence is padded to a *length bucket* (powers of two from 16, the last one the
  backbone's maximum length); each bucket is one graph, compiled at warm-up;
- the batch dimension is dynamic (``mark_dynamic``), so any batch size reuses its length
  bucket's graph. A dynamic dimension cannot be 1 (dynamo specialises 0 and 1), so a
  single row is padded to two;
- on CUDA, ``mode="reduce-overhead"`` replays each shape as a CUDA graph; graphs are
  recorded per concrete shape, so there the batch is padded to a power of two as well,
  which bounds the graphs at (length buckets) x log2(max batch).

Padding is exact: padded keys are masked, and a padded row (one unmasked token, a copy
of row 0's biases) is sliced off the outputs.
"""

from __future__ import annotations

import inspect
import logging
import time

import torch

from engine.layout import SiteLayout
from engine.runners.pytorch import RowBiasedEncoder

log = logging.getLogger(__name__)

COMPILE_MODES = ("off", "default", "max-autotune")
SMALLEST_BUCKET = 16
MAX_BUCKETS = 8  # dynamo's default recompile limit: one graph per bucket must fit under it


def length_buckets(max_length: int) -> tuple[int, ...]:
    """Padded lengths: powers of two from 16 below ``max_length``, then ``max_length``;
    at most ``MAX_BUCKETS``, dropping the shortest ones first."""
    buckets, n = [], SMALLEST_BUCKET
    while n < max_length:
        buckets.append(n)
        n *= 2
    buckets.append(max_length)
    return tuple(buckets[-MAX_BUCKETS:])


def torch_mode(mode: str, device: torch.device) -> str | None:
    """The ``torch.compile`` mode for a ``--compile`` setting on ``device``."""
    if mode not in COMPILE_MODES or mode == "off":
        raise ValueError(f"compile mode {mode!r}: choose one of {COMPILE_MODES[1:]} (or 'off' for no compilation)")
    if device.type == "cuda":
        return "reduce-overhead" if mode == "default" else "max-autotune"  # both capture CUDA graphs
    return None if mode == "default" else "max-autotune-no-cudagraphs"


class CompiledEncoder:
    """``RowBiasedEncoder`` compiled; called like it, on inputs of any batch and length.
    As the engine's runner (``engine.runners``) it reports the "torch" backend."""

    backend = "torch"
    thread_safe = False  # it runs RowBiasedEncoder's forward
    packs = False

    def __init__(self, encoder: RowBiasedEncoder, mode: str, max_length: int, backend: str = "inductor") -> None:
        """``backend``: "inductor" to serve; tests use "aot_eager" to count graphs cheaply."""
        self.encoder = encoder
        self.max_length, self.compile_backend = max_length, backend
        self.device = next(encoder.parameters()).device
        self.cuda_graphs = self.device.type == "cuda" and backend == "inductor"
        self.buckets = length_buckets(max_length)
        # token_type_ids is always passed where the model takes it (zeros = its default), so
        # plain and pair inputs share one graph.
        self.uses_types = "token_type_ids" in inspect.signature(encoder.encoder.forward).parameters
        self.mode = mode
        options = {"mode": torch_mode(mode, self.device)} if backend == "inductor" else {}  # modes are inductor's
        self._fn = torch.compile(encoder, fullgraph=True, dynamic=False, backend=backend, **options)

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, length = input_ids.shape
        padded = self._pad(input_ids, attention_mask, rows, token_type_ids)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # the previous replay's outputs are consumed
        hidden, pooler = self._fn(*padded)
        hidden = hidden[:batch, :length]  # [batch, length, hidden]
        pooler = pooler[:batch] if pooler is not None else None  # [batch, hidden]
        if self.cuda_graphs:  # a replay overwrites its outputs: hand out copies
            hidden = hidden.clone()
            pooler = pooler.clone() if pooler is not None else None
        return hidden, pooler

    @property
    def layout(self) -> SiteLayout:
        return self.encoder.layout

    def for_layout(self, layout: SiteLayout) -> "CompiledEncoder":
        """A compiled forward for rows laid out as ``layout``: this one's graphs were traced for
        its own width (compiled on first use or at the next ``warm_up``)."""
        return CompiledEncoder(self.encoder.for_layout(layout), self.mode, self.max_length, self.compile_backend)

    def bucket(self, length: int) -> int:
        return next(b for b in self.buckets if b >= length)

    def padded_batch(self, batch: int) -> int:
        if self.cuda_graphs:
            return max(2, 1 << (batch - 1).bit_length())
        return max(2, batch)

    def _pad(self, input_ids, attention_mask, rows, token_type_ids) -> tuple[torch.Tensor, ...]:
        """Inputs padded to (``padded_batch``, ``bucket``), batch dimension marked dynamic."""
        batch, length = input_ids.shape
        b, n = self.padded_batch(batch), self.bucket(length)
        ids = input_ids.new_zeros(b, n)
        mask = attention_mask.new_zeros(b, n)
        ids[:batch, :length] = input_ids
        mask[:batch, :length] = attention_mask
        mask[batch:, 0] = 1  # a padded row attends to one token, so its softmax stays finite
        padded_rows = rows if b == batch else torch.cat([rows, rows[:1].expand(b - batch, -1)])  # [b, width]
        out = [ids, mask, padded_rows]
        if self.uses_types:
            types = input_ids.new_zeros(b, n)
            if token_type_ids is not None:
                types[:batch, :length] = token_type_ids
            out.append(types)
        for t in out:
            torch._dynamo.mark_dynamic(t, 0)
        return tuple(out)

    def warm_up(self, max_batch: int, max_length: int | None = None) -> None:
        """Pick the Linear form (CUDA), then compile every length bucket (and on CUDA record
        each batch bucket's graph) now, so no request waits for a compilation."""
        self.encoder.warm_up(max_batch, max_length or self.max_length)
        width = self.layout.width
        sizes = {self.padded_batch(1)}
        if self.cuda_graphs:
            sizes |= {self.padded_batch(b) for b in range(1, max_batch + 1)}
        start = time.perf_counter()
        with torch.inference_mode():  # as the engine serves: guards tell inference tensors apart
            rows = torch.zeros(max(sizes), width, device=self.device, dtype=next(self.encoder.parameters()).dtype)
            for n in self.buckets:
                for b in sorted(sizes):
                    ids = torch.zeros(b, n, dtype=torch.long, device=self.device)
                    self(ids, torch.ones_like(ids), rows[:b])
        log.info(
            "compiled the forward (%s): %d length buckets %s, batch sizes %s, in %.1f s",
            self.mode, len(self.buckets), self.buckets, sorted(sizes), time.perf_counter() - start,
        )
