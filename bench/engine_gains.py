"""Per-row LayerNorm gains (bitfit-ln sets) vs biases only, on a mixed-task batch.

One backbone, two engines: ``bias`` holds ``--tasks`` plain bias sets; ``gains`` holds the
same tasks as bitfit-ln sets (every LayerNorm's gain too), so its table has the gain
columns and its LayerNorms run ``addcmul(b, layer_norm(x, no affine), g)`` per row. One
batch of ``--batch`` rows of ``--length`` tokens, every row a random task, timed
interleaved in one process with the plain encoder:

    python bench/engine_gains.py --model minilm --batch 32 --length 64
    python bench/engine_gains.py --model bert-base --batch 32 --length 128

Prints JSON lines: each variant's times and the ratios mixed/plain (with and without
gains) and gains/bias.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import common
import torch

from engine import Engine, load_backbone
from engine.inputs import collate
from tests.helpers import random_bias_set


def gain_set(spec, name: str, seed: int):
    bias_set = random_bias_set(spec, name, seed=seed)
    g = torch.Generator().manual_seed(seed)
    for key, dim in zip(spec.gain_keys("all_ln"), spec.gain_sites.values()):
        bias_set.tensors[key] = 1 + 0.1 * torch.randn(dim, generator=g)
    bias_set.meta.bias_sites = "all_ln"
    return bias_set


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=common.MODELS, default="minilm")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=64)
    p.add_argument("--tasks", type=int, default=100)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    common.setup(args.threads, args.out)
    rng = random.Random(0)
    backbone = load_backbone(common.backbone_dir(args.model, Path(tempfile.mkdtemp(prefix="bench-gains-"))), device="cpu")
    engines = {"bias": Engine(backbone, capacity=args.tasks), "gains": Engine(backbone, capacity=args.tasks)}
    for i in range(args.tasks):
        engines["bias"].register(random_bias_set(backbone.spec, f"t{i}", seed=i))
        engines["gains"].register(gain_set(backbone.spec, f"t{i}", seed=i))
    assert engines["gains"].table.has_gains and not engines["bias"].table.has_gains
    rows = common.synthetic_rows(backbone.tokenizer.vocab_size, args.batch, args.length)
    batch = collate(rows, backbone.tokenizer.pad_token_id or 0, backbone.device)  # each [batch, length]
    chosen = [rng.randrange(args.tasks) for _ in range(args.batch)]
    slots = {k: torch.tensor([e.get(f"t{c}").slot for c in chosen]) for k, e in engines.items()}  # [batch]

    def plain():
        with torch.inference_mode():
            return backbone.encoder(**batch)

    def mixed(kind: str):
        def run():
            with torch.inference_mode(), engines[kind].table.rows(slots[kind]):
                return backbone.encoder(**batch)
        return run

    variants = {"encoder_plain": plain, "encoder_mixed": mixed("bias"), "encoder_mixed_gains": mixed("gains")}
    shape = dict(model=args.model, batch=args.batch, length=args.length, tasks=args.tasks, threads=torch.get_num_threads())
    common.emit("env", **common.environment(), script="engine_gains")
    for name, fn in variants.items():
        common.emit("ops_per_forward", variant=name, **shape, aten_ops=common.count_ops(fn))
    clocks = common.interleaved(variants, args.repeats, args.warmup, backbone.device)
    for clock, times in clocks.items():
        for name, values in times.items():
            common.emit("gains", variant=name, clock=clock, **shape, **common.summary_ms(values))
        for num, den in (("encoder_mixed", "encoder_plain"), ("encoder_mixed_gains", "encoder_plain"),
                         ("encoder_mixed_gains", "encoder_mixed")):
            common.emit("gains_ratio", ratio=f"{num}/{den}", clock=clock, **shape, **common.ratio(times, num, den))
    common.emit("table_bytes", **shape, bias=engines["bias"].table.nbytes, gains=engines["gains"].table.nbytes)


if __name__ == "__main__":
    main()
