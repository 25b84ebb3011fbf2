"""Memory per registered task, against the raw bytes of one bias set.

For each task count N, a fresh child process loads the backbone, then registers N random
bias sets the way the server does (file bytes -> ``validate_bytes`` -> ``Engine.register``,
the bytes dropped afterwards). It reports:

- ``engine_bytes``: ``Engine.memory_bytes`` (bias table, slack rows included, plus heads),
  and the marginal figure without the empty engine's table (its initial capacity, zero
  by default);
- ``rss_delta_bytes``: the process's resident-set growth across the registrations, which
  also counts Python objects, allocator slack and anything a task keeps alive by mistake;
- both per task, and each over ``raw_bytes_per_task`` (``BiasSet.num_bytes``).

One child per N, so that memory freed by a previous N cannot be reused and hide growth.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import common
import torch

from bias_store import dumps, validate_bytes
from engine import Engine, load_backbone
from tests.helpers import random_bias_set


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=common.MODELS, default="minilm")
    p.add_argument("--counts", default="1,100,1000,10000", help="comma list of task counts")
    p.add_argument("--labels", type=int, default=2, help="labels per task (head size)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="also append the JSON lines to this file")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)  # one N, in this process
    p.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def measure(args: argparse.Namespace, count: int) -> dict:
    """Register ``count`` tasks in a fresh engine; memory figures as one dict."""
    path = common.backbone_dir(args.model, Path(args.tmp))
    backbone = load_backbone(path, device="cpu")
    engine = Engine(backbone)  # default capacity: what the server starts with
    labels = [f"l{j}" for j in range(args.labels)]
    raw = random_bias_set(backbone.spec, "probe", labels).num_bytes
    gc.collect()
    rss0, empty_bytes = common.rss_bytes(), engine.memory_bytes
    for i in range(count):
        data = dumps(random_bias_set(backbone.spec, f"task-{i}", labels, seed=i))
        engine.register(validate_bytes(data, backbone.spec))
        del data
    gc.collect()
    rss_delta = common.rss_bytes() - rss0
    engine_bytes = engine.memory_bytes
    return dict(
        model=args.model, tasks=count, raw_bytes_per_task=raw,
        bias_params_per_task=backbone.spec.bias_params_per_task,
        engine_bytes=engine_bytes, engine_bytes_per_task=round(engine_bytes / count),
        engine_over_raw=round(engine_bytes / (count * raw), 4),
        engine_marginal_over_raw=round((engine_bytes - empty_bytes) / (count * raw), 4),
        table_capacity=engine.table.capacity, table_bytes=engine.table.nbytes,
        rss_delta_bytes=rss_delta, rss_delta_per_task=round(rss_delta / count),
        rss_over_raw=round(rss_delta / (count * raw), 4),
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    common.setup(args.threads, None if args.child is not None else args.out)
    if args.child is not None:
        torch.set_grad_enabled(False)
        print(json.dumps(measure(args, args.child)), flush=True)
        return
    tmp = args.tmp or tempfile.mkdtemp(prefix="bench-memory-")
    common.backbone_dir(args.model, Path(tmp))  # build once, before the children read it
    common.emit("env", **common.environment(), script="engine_memory")
    for count in [int(c) for c in args.counts.split(",") if c]:
        cmd = [sys.executable, __file__, "--model", args.model, "--labels", str(args.labels), "--threads", str(args.threads),
               "--child", str(count), "--tmp", tmp]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        common.emit("memory_per_task", **json.loads(done.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    main()
