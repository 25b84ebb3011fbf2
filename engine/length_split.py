"""Split a batch into forwards of similar lengths when its padding costs more than a forward.

A forward pads every row to its longest one, so a batch of short texts with one long text
pays for the long one in every row. ``split_by_length`` sorts the rows by length and
partitions them into groups that minimise, in tokens,

    sum over groups of (rows x longest row) + overhead_tokens per group,

where ``overhead_tokens`` is a forward's fixed cost expressed in tokens. Group boundaries
fall only between distinct lengths, so the exact optimum costs O(distinct lengths²), a few
hundred steps for a batch of short texts. The split never changes a row's result beyond
float rounding: padding is masked.
"""

from __future__ import annotations

import torch

# A CPU forward's fixed cost in tokens (bench/engine_forward_cost.py, one core): MiniLM
# (hidden 384) 7.4 ms + 0.23 ms per token = 32 tokens; BERT-base (768) 23 tokens, its fixed
# cost being mostly reading the weights, which grows with the model like the per-token
# cost does; a 2-layer toy (32) 381 tokens, all Python and dispatch, which do not shrink
# with the width. So: 32 tokens, times 384 / hidden below hidden 384.
CPU_OVERHEAD_TOKENS, REFERENCE_HIDDEN = 32, 384
# Under ONNX Runtime a forward's fixed cost is larger next to its per-token cost (~140 tokens
# fitted on MiniLM, one thread), and splitting batches of short texts at 32 cost 11-37% more
# CPU per row than one forward (docs/benchmarks/request_path.md): 128 there.
ORT_OVERHEAD_TOKENS = 128


def resolve_overhead(
    setting: int | str | None, device: torch.device, hidden_size: int = REFERENCE_HIDDEN, onnxruntime: bool = False,
) -> int | None:
    """``"auto"``: on the CPU, ``CPU_OVERHEAD_TOKENS`` (``ORT_OVERHEAD_TOKENS`` under ONNX
    Runtime), scaled up by 384 / hidden size for narrower models; no split elsewhere, where
    a forward's fixed cost is thousands of tokens. ``"off"`` or None: never split. An int: that cost."""
    if setting == "auto":
        if device.type != "cpu":
            return None
        base = ORT_OVERHEAD_TOKENS if onnxruntime else CPU_OVERHEAD_TOKENS
        return round(base * max(1.0, REFERENCE_HIDDEN / hidden_size))
    if setting in ("off", None):
        return None
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ValueError(f"split overhead must be 'auto', 'off' or a positive number of tokens, not {setting!r}")
    return setting


def split_by_length(lengths: list[int], overhead_tokens: int | None) -> list[list[int]]:
    """Row indices grouped into forwards, shortest rows' group first; ``[[0, 1, ...]]`` when
    splitting is not worth it."""
    n = len(lengths)
    if overhead_tokens is None or n < 2:
        return [list(range(n))]
    order = sorted(range(n), key=lengths.__getitem__)
    ends = [k for k in range(1, n + 1) if k == n or lengths[order[k]] != lengths[order[k - 1]]]
    best: dict[int, tuple[int, int]] = {0: (0, 0)}  # group end -> (cost of rows before it, start of its group)
    starts = [0]
    for end in ends:
        longest = lengths[order[end - 1]]
        best[end] = min((best[start][0] + (end - start) * longest + overhead_tokens, start) for start in starts)
        starts.append(end)
    groups, end = [], n
    while end:
        start = best[end][1]
        groups.append(sorted(order[start:end]))  # each group keeps the batch's order
        end = start
    return groups[::-1]
