"""Time to register a task: ``validate_bytes`` on the file's bytes, then ``Engine.register``.

The files are serialized up front (the store hands the engine bytes), then registered one
after another into an engine that starts empty at its default capacity, so the figures
include the table's occasional growth. Per-call times of both steps and their sum are
reported as p50/p90/p99/max.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import common
import torch

from bias_store import dumps, validate_bytes
from engine import Engine, load_backbone
from tests.helpers import random_bias_set


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=common.MODELS, default="minilm")
    p.add_argument("--tasks", type=int, default=1000, help="tasks registered (and timed), one after another")
    p.add_argument("--warmup", type=int, default=20, help="untimed registrations first (into a throwaway engine)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="also append the JSON lines to this file")
    return p.parse_args(argv)


def stats_ms(values: list[float]) -> dict:
    return {
        "p50_ms": round(common.percentile(values, 50) * 1e3, 3),
        "p90_ms": round(common.percentile(values, 90) * 1e3, 3),
        "p99_ms": round(common.percentile(values, 99) * 1e3, 3),
        "max_ms": round(max(values) * 1e3, 3),
        "n": len(values),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    common.setup(args.threads, args.out)
    torch.set_grad_enabled(False)
    path = common.backbone_dir(args.model, Path(tempfile.mkdtemp(prefix="bench-register-")))
    backbone = load_backbone(path, device=args.device)
    files = [dumps(random_bias_set(backbone.spec, f"task-{i}", seed=i)) for i in range(args.tasks)]
    sync = common.synchronizer(backbone.device)

    warm = Engine(backbone)
    for data in files[: args.warmup]:
        warm.register(validate_bytes(data, backbone.spec))

    engine = Engine(backbone)
    validate_s, register_s, total_s = [], [], []
    for data in files:
        t0 = time.perf_counter()
        bias_set = validate_bytes(data, backbone.spec)
        t1 = time.perf_counter()
        engine.register(bias_set)
        sync()  # on a GPU the row copy is asynchronous: count it
        t2 = time.perf_counter()
        validate_s.append(t1 - t0)
        register_s.append(t2 - t1)
        total_s.append(t2 - t0)

    common.emit("env", **common.environment(), script="engine_register")
    shape = dict(model=args.model, device=str(backbone.device), file_bytes=len(files[0]), tasks=args.tasks)
    for step, values in (("validate_bytes", validate_s), ("engine_register", register_s), ("total", total_s)):
        common.emit("register_time", step=step, **shape, **stats_ms(values))


if __name__ == "__main__":
    main()
