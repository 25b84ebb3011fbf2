"""Turning user inputs into token rows, and rows into one padded batch.

Tokenization happens per request (in the caller's thread), so that the single inference
worker only pads and runs the forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bias_store.kinds import InputKind
from engine.errors import EmptyInput, PairMismatch, WrongInputType

TextInput = str | tuple[str, str]  # a single text, or (text, text_pair)


@dataclass(frozen=True)
class EncodedRow:
    input_ids: list[int]
    token_type_ids: list[int] | None
    truncated: bool

    def __len__(self) -> int:
        return len(self.input_ids)


def check_inputs(inputs: list, kind: InputKind) -> list[TextInput]:
    """Validate inputs for a task whose ``inputs`` metadata is ``kind``."""
    if not isinstance(inputs, list) or not inputs:
        raise WrongInputType("inputs must be a non-empty list of texts or text pairs")
    out: list[TextInput] = []
    for i, item in enumerate(inputs):
        if isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(t, str) for t in item):
            if kind != InputKind.TEXT_PAIR:
                raise PairMismatch("this task takes single texts, not text pairs", i)
            if not item[0].strip() or not item[1].strip():
                raise EmptyInput("both texts of a pair must be non-empty", i)
            out.append((item[0], item[1]))
        elif isinstance(item, str):
            if kind == InputKind.TEXT_PAIR:
                raise PairMismatch("this task takes text pairs (text, text_pair), not single texts", i)
            if not item.strip():
                raise EmptyInput("text is empty", i)
            out.append(item)
        else:
            raise WrongInputType(f"expected a string or a [text, text_pair] pair, got {type(item).__name__}", i)
    return out


def encode(tokenizer, inputs: list[TextInput], max_length: int) -> list[EncodedRow]:
    """Tokenize with the fast tokenizer, truncating to ``max_length`` (flagged per row)."""
    if isinstance(inputs[0], tuple):
        enc = tokenizer([a for a, _ in inputs], [b for _, b in inputs], truncation=True, max_length=max_length)
    else:
        enc = tokenizer(list(inputs), truncation=True, max_length=max_length)
    types = enc.get("token_type_ids")
    return [
        EncodedRow(
            input_ids=ids,
            token_type_ids=types[i] if types is not None else None,
            truncated=bool(enc.encodings[i].overflowing),
        )
        for i, ids in enumerate(enc["input_ids"])
    ]


class RowTokenizer:
    """``encode`` without transformers' per-call work: the backbone's own Rust tokenizer (a
    copy, set once to truncate at ``max_length`` as ``truncation=True`` does, never to pad).

    ``PreTrainedTokenizerFast.__call__`` re-applies its truncation and padding settings to the
    Rust tokenizer and wraps the result in a ``BatchEncoding`` on every call: 28 us for a
    short text, on the event loop, against 13 us here (docs/benchmarks/request_path.md, §9). The rows are ``encode``'s, id for id
    (``tests/engine/test_inputs.py``); calls from many threads are safe (its settings never
    change after construction).
    """

    def __init__(self, tokenizer, max_length: int) -> None:
        from tokenizers import Tokenizer

        self.raw = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self.raw.no_padding()
        self.raw.enable_truncation(max_length, stride=0, strategy="longest_first", direction=tokenizer.truncation_side)
        self.types = "token_type_ids" in tokenizer.model_input_names  # what transformers returns by default

    def __call__(self, inputs: list[TextInput]) -> list[EncodedRow]:
        if len(inputs) > 1:
            encodings = self.raw.encode_batch(list(inputs))
        elif isinstance(inputs[0], tuple):
            encodings = [self.raw.encode(*inputs[0])]
        else:
            encodings = [self.raw.encode(inputs[0])]
        return [EncodedRow(e.ids, e.type_ids if self.types else None, bool(e.overflowing)) for e in encodings]


def collate(rows: list[EncodedRow], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Pad to the longest row: input_ids, attention_mask and (if used) token_type_ids, each [batch, seq].

    Built in numpy, then one tensor each: a torch op per row would release and retake the
    GIL each time, and the serving worker waits for the event loop at every retake
    (docs/benchmarks/request_path.md)."""
    longest = max(len(r) for r in rows)
    ids = np.full((len(rows), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), longest), dtype=np.int64)
    use_types = rows[0].token_type_ids is not None
    types = np.zeros((len(rows), longest), dtype=np.int64) if use_types else None
    for i, row in enumerate(rows):
        n = len(row)
        ids[i, :n] = row.input_ids
        mask[i, :n] = 1
        if use_types:
            types[i, :n] = row.token_type_ids
    arrays = {"input_ids": ids, "attention_mask": mask, **({"token_type_ids": types} if use_types else {})}
    if torch.device(device).type == "cpu":
        return {name: torch.from_numpy(a) for name, a in arrays.items()}
    return {name: torch.from_numpy(a).to(device) for name, a in arrays.items()}
