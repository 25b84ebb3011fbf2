"""Splitting a batch by length (``engine/length_split.py``) against one padded forward.

Workloads, each ``--batches`` random batches of ``--batch`` texts, every row a random one
of ``--tasks`` registered tasks:

- ``short``: the review-like short texts the HTTP benchmarks send (about 6 to 16 tokens);
- ``reviews``: real Rotten Tomatoes reviews (examples/data/rt_test.csv);
- ``reviews+long``: the same with one row in eight repeated to about 200 tokens, the
  mixed traffic where one long text makes every row pay for its length.

Two engines on one backbone, registered alike: ``one_forward`` (split off) and ``split``
(the device's default cost). A round runs all batches through one engine; rounds
alternate and rotate. Prints the padding share and forwards per batch of each, the
median paired time ratio split / one_forward, and checks the logits agree.
"""

from __future__ import annotations

import argparse
import csv
import random
import tempfile
from pathlib import Path

import common
import torch

from bench.http_load import short_texts
from engine import Engine, load_backbone
from engine.length_split import split_by_length
from tests.helpers import random_bias_set


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=common.MODELS, default="minilm")
    p.add_argument("--batch", type=int, default=16, help="rows per batch (the HTTP runs averaged 16 to 18)")
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--tasks", type=int, default=16)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workloads", default="short,reviews,reviews+long")
    p.add_argument("--out", default=None)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def workload(name: str, rng: random.Random) -> list[str]:
    if name == "short":
        return short_texts(2000, seed=rng.randrange(1 << 30))
    with open(common.ROOT / "examples" / "data" / "rt_test.csv", newline="") as f:
        reviews = [row["text"] for row in csv.DictReader(f)]
    if name == "reviews":
        return reviews
    if name == "reviews+long":
        return [(text + " ") * 6 if i % 8 == 0 else text for i, text in enumerate(reviews)]
    raise ValueError(f"unknown workload {name!r}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    common.setup(args.threads, args.out)
    rng = random.Random(args.seed)
    backbone = load_backbone(common.backbone_dir(args.model, Path(tempfile.mkdtemp(prefix="bench-split-"))))
    engines = {"one_forward": Engine(backbone, split_overhead_tokens="off"), "split": Engine(backbone)}
    sets = [random_bias_set(backbone.spec, f"task-{i}", seed=i) for i in range(args.tasks)]
    for engine in engines.values():
        for bias_set in sets:
            engine.register(bias_set)
    common.emit("env", **common.environment(), script="engine_split")

    for name in args.workloads.split(","):
        texts = workload(name, rng)
        batches = []
        for _ in range(args.batches):
            picks = [(f"task-{rng.randrange(args.tasks)}", rng.choice(texts)) for _ in range(args.batch)]
            engine = engines["split"]
            batches.append([(engine.get(t), engine.encode(engine.get(t), [text])[0]) for t, text in picks])

        def runner(key: str, batches: list = batches):
            engine = engines[key]

            def run():
                # Handles are per engine: look each row's task up in this engine.
                return [engine.logits([(engine.get(h.name), row) for h, row in batch]) for batch in batches]

            return run

        variants = {key: runner(key) for key in engines}
        got, want = variants["split"](), variants["one_forward"]()
        worst = max((a - b).abs().max().item() for gb, wb in zip(got, want) for a, b in zip(gb, wb))
        if worst > 1e-4:
            raise AssertionError(f"split and one forward disagree: max |diff| {worst:.3g}")

        real = sum(len(row) for batch in batches for _, row in batch)
        shape = {"workload": name, "model": args.model, "batch": args.batch, "batches": args.batches,
                 "mean_tokens": round(real / (args.batch * args.batches), 1)}
        for key, engine in engines.items():
            padded, forwards = 0, 0
            for batch in batches:
                lengths = [len(row) for _, row in batch]
                groups = split_by_length(lengths, engine.split_overhead_tokens)
                forwards += len(groups)
                padded += sum(len(g) * max(lengths[i] for i in g) for g in groups)
            common.emit("split_plan", variant=key, **shape, padding_share=round(1 - real / padded, 3),
                        forwards_per_batch=round(forwards / args.batches, 2), max_abs_logit_diff=worst)
        clocks = common.interleaved(variants, args.repeats, args.warmup, backbone.device)
        for clock, times in clocks.items():
            for key, values in times.items():
                common.emit("split_time", variant=key, clock=clock, **shape, **common.summary_ms(values))
            common.emit("split_ratio", ratio="split/one_forward", clock=clock, **shape,
                        threads=torch.get_num_threads(), **common.ratio(times, "split", "one_forward"))


if __name__ == "__main__":
    main()
