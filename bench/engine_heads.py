"""The heads of a mixed batch: one GEMM over the stacked heads vs one head per task group.

``engine/head_batch.py`` runs single-stage heads (BERT's ``classifier``) as one
GEMM over the batch's distinct heads, and other heads per task group. This times both
ways on the same rows (BERT-base width, 2-label heads, a third of the tasks mean-pooled)
for several task counts, checks they agree, and counts the ATen ops each dispatches:
ops, not arithmetic, are what a GPU pays for in a step this small.
"""

from __future__ import annotations

import argparse
import statistics
from typing import NamedTuple

import common
import torch

from bias_store.kinds import Pooling
from engine import head_batch
from engine.heads import Head


class BenchRow(NamedTuple):
    """A row's task as the heads read it (``head_batch.RowTask``), without a registry."""

    slot: int
    pooling: Pooling
    head: Head


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=64)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--tasks", default="1,8,32,64")
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    common.setup(args.threads, args.out)
    common.emit("env", **common.environment(), script="engine_heads")
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(args.rows, 16, args.hidden, generator=g)
    pooler = torch.randn(args.rows, args.hidden, generator=g)
    mask = torch.ones(args.rows, 16, dtype=torch.long)
    for count in (int(t) for t in args.tasks.split(",")):
        heads = [Head([(torch.randn(2, args.hidden, generator=g), torch.randn(2, generator=g), None)]) for _ in range(count)]
        poolings = [Pooling.MEAN if k % 3 == 0 else Pooling.CLS for k in range(count)]
        tasks = [BenchRow(i % count, poolings[i % count], heads[i % count]) for i in range(args.rows)]

        def one_gemm(tasks=tasks):
            features = head_batch._features("bert", tasks, hidden, pooler, mask)
            return head_batch._one_gemm({t.slot: t.head for t in tasks}, tasks, features)

        def per_group(tasks=tasks):
            return head_batch._per_group("bert", tasks, hidden, pooler, mask)

        got, want = torch.stack(one_gemm()), torch.stack(per_group())
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)
        times = common.interleaved({"one_gemm": one_gemm, "per_group": per_group}, args.repeats, 10)["cpu"]
        for name, fn in (("one_gemm", one_gemm), ("per_group", per_group)):
            common.emit("heads", way=name, rows=args.rows, tasks=count, aten_ops=common.count_ops(fn),
                        cpu_median_ms=round(statistics.median(times[name]) * 1e3, 3))
        common.emit("heads_ratio", rows=args.rows, tasks=count, **common.ratio(times, "one_gemm", "per_group"))


if __name__ == "__main__":
    main()
