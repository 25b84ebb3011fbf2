"""A forward's fixed cost and its cost per token, fitted over batch shapes.

Times ``Engine.logits`` (one forward: collate, encoder, heads, logits to the CPU) on rows
of exactly L tokens for several (rows, L) shapes, then fits

    time = fixed + per_token x tokens + per_token_len x tokens x L

by least squares (the last term is attention's quadratic part). ``fixed / per_token`` is
a forward's fixed cost in tokens: ``engine/length_split.py`` splits a batch by length
only when that saves more padded tokens than this. Prints one JSON line per shape and one
with the fit.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import common
import numpy as np

from engine import Engine, load_backbone

SHAPES = [(1, 8), (1, 32), (2, 8), (4, 16), (8, 8), (8, 32), (16, 16), (16, 24), (16, 48), (32, 16), (32, 64)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=common.MODELS, default="minilm")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    common.setup(args.threads, args.out)
    backbone = load_backbone(common.backbone_dir(args.model, Path(tempfile.mkdtemp(prefix="bench-cost-"))), device=args.device)
    engine = Engine(backbone, split_overhead_tokens="off")
    handles = common.register_random_tasks(engine, 16)
    sync = common.synchronizer(backbone.device)
    common.emit("env", **common.environment(), script="engine_forward_cost")
    fits = []
    for rows, length in SHAPES:
        items = [(handles[i % len(handles)], row) for i, row in enumerate(
            common.synthetic_rows(backbone.tokenizer.vocab_size, rows, length, seed=rows * 1000 + length))]
        for _ in range(2):
            engine.logits(items)
        times = []
        for _ in range(args.repeats):  # CPU time on the CPU (less noisy on a shared box), wall time on a GPU
            sync()
            c0, t0 = time.process_time(), time.perf_counter()
            engine.logits(items)
            sync()
            times.append(time.process_time() - c0 if backbone.device.type == "cpu" else time.perf_counter() - t0)
        ms = statistics.median(times) * 1e3
        fits.append((rows, length, ms))
        common.emit("forward_cost", model=args.model, rows=rows, length=length, tokens=rows * length, median_ms=round(ms, 3))
    design = np.array([[1.0, r * n, r * n * n] for r, n, _ in fits])
    (fixed, per_token, per_token_len), *_ = np.linalg.lstsq(design, np.array([ms for *_, ms in fits]), rcond=None)
    common.emit("forward_cost_fit", model=args.model, hidden_size=backbone.spec.hidden_size, fixed_ms=round(fixed, 3),
                per_token_ms=round(per_token, 5), per_token_len_ms=round(per_token_len, 7),
                overhead_tokens=round(fixed / per_token, 1), engine_auto_overhead_tokens=Engine(backbone).split_overhead_tokens)


if __name__ == "__main__":
    main()
