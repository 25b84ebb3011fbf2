"""The encoder as a graph over packed batches (``engine.packing``), and the check that it may be one.

``PackedEncoder`` runs ``RowBiasedEncoder``'s per-row sites over bins of several rows each:
every token gets its own row's biases (``per_row_biases(segment=)``), the block mask keeps
rows apart, and positions restart at each row. The pooler (BERT's, the one site that reads
one token per row) runs after the encoder, on each row's first token with that row's bias.

Packing needs an encoder that takes ``position_ids`` and a 4-D attention mask (BERT,
RoBERTa and DistilBERT do, under transformers 5), and positions that are a row's own
offsets (RoBERTa's start after the padding index). ``packs_exactly`` does not assume any
of that: it runs a probe batch of mixed lengths both ways, eagerly, before anything is
exported, and packing is used only when every row's states and pooler output agree.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from engine.layout import SiteLayout
from engine.packing import pack
from engine.runners.pytorch import RowBiasedEncoder, per_row_biases

log = logging.getLogger(__name__)

PROBE_TOLERANCE = 1e-4  # fp32 hidden states of the same rows, packed or padded
PACKED_INPUTS = ["input_ids", "attention_mask", "rows", "segment", "position_ids", "first"]


class PackedEncoder(nn.Module):
    """``forward(input_ids, attention_mask, rows, segment, position_ids, first[, token_type_ids])``
    over packed feeds -> ``(hidden [bins, width, hidden][, pooler [rows, hidden]])``."""

    def __init__(self, encoder: nn.Module, layout: SiteLayout) -> None:
        super().__init__()
        self.encoder, self.layout = encoder, layout
        self.pooler = getattr(encoder, "pooler", None)
        # RoBERTa-style embeddings number positions from padding_idx + 1; BERT's from 0.
        padding_idx = getattr(getattr(encoder, "embeddings", None), "padding_idx", None)
        self.position_offset = int(padding_idx) + 1 if isinstance(padding_idx, int) else 0

    def forward(self, input_ids, attention_mask, rows, segment, position_ids, first, token_type_ids=None) -> tuple[torch.Tensor, ...]:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids + self.position_offset}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        with _without_pooler(self.encoder), per_row_biases(self.layout, rows, "add", segment=segment):
            hidden = self.encoder(**inputs).last_hidden_state  # [bins, width, hidden]
        if self.pooler is None:
            return (hidden,)
        heads = hidden.reshape(-1, hidden.shape[-1])[first].unsqueeze(1)  # [rows, 1, hidden]: each row's first token
        with per_row_biases(self.layout, rows, "add"):
            return hidden, self.pooler(heads)


@contextlib.contextmanager
def _without_pooler(encoder: nn.Module) -> Iterator[None]:
    """The encoder's own pooler would read the first token of each bin, not of each row."""
    pooler = getattr(encoder, "pooler", None)
    if pooler is None:
        yield
        return
    encoder.pooler = None
    try:
        yield
    finally:
        encoder.pooler = pooler


def vocab_size(encoder: nn.Module) -> int:
    return int(getattr(getattr(encoder, "config", None), "vocab_size", 0) or 1000)


def takes_packed_inputs(encoder: nn.Module) -> bool:
    params = inspect.signature(encoder.forward).parameters
    return "position_ids" in params and "attention_mask" in params


def packed_example(layout: SiteLayout, pad_id: int, with_types: bool, vocab: int, lengths=(7, 3, 5, 2)) -> dict[str, torch.Tensor]:
    """A packed batch of rows of ``lengths`` tokens (packed into fewer bins than rows), ids below ``vocab``."""
    ids = np.full((len(lengths), max(lengths)), pad_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = (100 + 7 * i + np.arange(n)) % vocab
        mask[i, :n] = 1
    types = (mask * (np.arange(ids.shape[1]) >= 2)) if with_types else None
    packed = pack(ids, mask, types, pad_id, width=max(lengths) + 3)
    feeds = {name: torch.from_numpy(a) for name, a in packed.feeds.items()}
    base = layout.base()
    rows = base + 0.05 * torch.randn(len(lengths), base.numel(), generator=torch.Generator().manual_seed(0))
    padded = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if with_types:
        padded["token_type_ids"] = torch.from_numpy(types)
    return {"feeds": feeds | {"rows": rows}, "padded": padded, "index": torch.from_numpy(packed.index), "mask": torch.from_numpy(mask)}


def packs_exactly(encoder: nn.Module, layout: SiteLayout, pad_id: int, with_types: bool) -> bool:
    """Whether ``PackedEncoder`` reproduces the padded forward on a probe batch (eagerly)."""
    if not takes_packed_inputs(encoder):
        return False
    example = packed_example(layout, pad_id, with_types, vocab_size(encoder))
    try:
        with torch.no_grad():
            packed = PackedEncoder(encoder, layout).eval()(**example["feeds"])
            hidden, pooler = RowBiasedEncoder(encoder, layout, "add")(rows=example["feeds"]["rows"], **example["padded"])
    except Exception as exc:  # noqa: BLE001 (an encoder that cannot run packed is served padded)
        log.info("this encoder cannot run packed batches (%s: %s): padded forwards", type(exc).__name__, exc)
        return False
    flat = packed[0].reshape(-1, packed[0].shape[-1])[example["index"]]  # [rows, seq, hidden]
    keep = example["mask"].bool()
    close = torch.allclose(flat[keep], hidden[keep], atol=PROBE_TOLERANCE, rtol=0)
    if pooler is not None:
        close = close and len(packed) == 2 and torch.allclose(packed[1], pooler, atol=PROBE_TOLERANCE, rtol=0)
    if not close:
        log.info("packed rows differ from padded ones for this encoder: padded forwards")
    return close
