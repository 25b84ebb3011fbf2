"""Packing a padded batch: several short rows side by side in one sequence, no padding between them.

A padded batch runs every row at the length of its longest one; with short texts of mixed
lengths a third of the tokens are padding (``short_texts()``: 36% at 32 rows), and a forward's
cost follows its tokens. Packed, the rows go first-fit, longest first, into bins of
``width`` tokens, and each bin is one sequence of the forward:

- ``attention_mask`` ``[bins, 1, width, width]``: a token attends to the tokens of its own row
  only (padding at a bin's end attends to padding, so no softmax row is empty);
- ``position_ids`` restart at 0 for each row; ``token_type_ids`` are the row's own;
- ``segment`` ``[bins, width]``: which batch row each token belongs to, so the graph adds
  each token its own row's biases (``runners.pytorch.per_row_biases(segment=)``);
- ``first`` ``[rows]``: where each row's first token sits, flat, for the pooler.

Each row's hidden states are exactly the padded forward's, to float rounding: what a row
sees through the block mask and its own positions is what it saw alone
(``tests/engine/test_packing.py``). ``unpack`` lays them back out as ``[rows, seq, hidden]``.

When bins would not hold fewer token slots than the padded batch (one long row among short
ones, say), every row gets a bin of its own: the padded batch, in the packed graph's form.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

# Bin width in tokens, unless a row is longer (then the longest row's). Batches of 16 and
# 32 short texts (~8 and ~11 tokens) ran fastest at 32-64 under ONNX Runtime, and attention
# grows with the square of the width (docs/benchmarks/request_path.md, section 7).
PACK_WIDTH = 32


@dataclass(frozen=True)
class Packed:
    feeds: dict[str, np.ndarray]  # input_ids, attention_mask, position_ids, segment, first[, token_type_ids]
    index: np.ndarray  # [rows, seq]: each padded position's flat place in [bins * width] (padding: the row's first)

    @property
    def bins(self) -> int:
        return self.feeds["input_ids"].shape[0]


def bins_for(lengths: list[int], width: int) -> list[list[int]]:
    """First-fit decreasing: row indices per bin of at most ``max(width, longest)`` tokens."""
    width = max(width, max(lengths))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for b, free in enumerate(room):
            if lengths[i] <= free:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(width - lengths[i])
    return bins


def plan(lengths: list[int], width: int = PACK_WIDTH) -> tuple[tuple[tuple[int, ...], ...], int]:
    """The bins (row indices) and the tokens each sequence spans; a bin per row, as long as the
    longest, when packing would not compute fewer token slots than padding. Remembered for the
    last few batches: the runner packs a batch and the batcher's padding metric asks again."""
    return _plan(tuple(lengths), width)


@functools.lru_cache(maxsize=32)
def _plan(lengths: tuple[int, ...], width: int) -> tuple[tuple[tuple[int, ...], ...], int]:
    bins = bins_for(list(lengths), width)
    span = max(sum(lengths[i] for i in b) for b in bins)
    longest = max(lengths)
    if len(bins) * span >= len(lengths) * longest:
        return tuple((i,) for i in range(len(lengths))), longest
    return tuple(tuple(b) for b in bins), span


def computed_tokens(lengths: list[int], packed: bool) -> int:
    """Token slots one forward over rows of these lengths computes, padding included."""
    if not packed:
        return len(lengths) * max(lengths)
    bins, span = plan(lengths)
    return len(bins) * span


def pack(input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray | None = None,
         pad_id: int = 0, width: int = PACK_WIDTH) -> Packed:
    """The packed feeds of a padded batch (rows left-aligned, as ``inputs.collate`` pads them)."""
    rows, seq = input_ids.shape
    lengths = attention_mask.sum(axis=1).astype(np.int64).tolist()
    bins, span = plan(lengths, width)
    ids = np.full((len(bins), span), pad_id, dtype=np.int64)
    types = np.zeros((len(bins), span), dtype=np.int64)
    positions = np.zeros((len(bins), span), dtype=np.int64)
    segment = np.full((len(bins), span), -1, dtype=np.int64)
    index = np.zeros((rows, seq), dtype=np.int64)
    first = np.zeros(rows, dtype=np.int64)
    for b, members in enumerate(bins):
        at = 0
        for i in members:
            n = lengths[i]
            ids[b, at : at + n] = input_ids[i, :n]
            if token_type_ids is not None:
                types[b, at : at + n] = token_type_ids[i, :n]
            positions[b, at : at + n] = np.arange(n)
            segment[b, at : at + n] = i
            first[i] = b * span + at
            index[i, :] = first[i]
            index[i, :n] += np.arange(n)
            at += n
    mask = (segment[:, :, None] == segment[:, None, :])[:, None]  # [bins, 1, span, span]
    feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": positions,
             "segment": np.maximum(segment, 0), "first": first}
    if token_type_ids is not None:
        feeds["token_type_ids"] = types
    return Packed(feeds, index)


def unpack(hidden: np.ndarray, packed: Packed) -> np.ndarray:
    """``[bins, width, hidden]`` -> ``[rows, seq, hidden]`` in the padded batch's layout
    (padding positions hold a copy of the row's first token; the mask hides them)."""
    return hidden.reshape(-1, hidden.shape[-1])[packed.index]
