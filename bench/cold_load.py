"""What one cold load costs the serving process: read, sha256, parse and validate, row build.

The catalog's load path, step by step (``server.catalog.validation.fetch`` then
``Engine.load``), over ``--loads`` never-loaded tasks of a folder store (the capacity bench's
store: bench/capacity_store.py), the packaged MiniLM, one thread. Each step's wall time and
the thread's CPU time (``time.thread_time``: what the loader thread keeps from every other
thread, the event loop included, when the step holds the GIL) are reported as medians.

``--src DIR`` (repeatable) runs the same measurement with each tree's code in a subprocess,
rounds alternating between trees, so a before/after pair is measured side by side:

    .venv/bin/python -m bench.cold_load --store ~/.cache/bitfit-bench/capacity/store-1000000 \\
        --src /work/main --src . --rounds 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

STEPS = ("read", "sha256", "parse_validate", "engine_load", "total")


def measure(store_dir: Path, first: int, loads: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from bias_store.backends.folder import FilesystemStore
    from bias_store.validate import validate_upload
    from engine import Engine
    from engine.backbone import load_backbone

    backbone = load_backbone(None, device="cpu")
    engine = Engine(backbone, capacity=loads + 1, grow=False)
    store = FilesystemStore(store_dir)
    wall: dict[str, list[float]] = {s: [] for s in STEPS}
    cpu: dict[str, list[float]] = {s: [] for s in STEPS}
    for i in range(first, first + loads):
        marks = [(time.perf_counter(), time.thread_time())]
        data = store.read(f"task-{i:07d}", 1)
        marks.append((time.perf_counter(), time.thread_time()))
        sha = hashlib.sha256(data).hexdigest()
        marks.append((time.perf_counter(), time.thread_time()))
        bias_set = validate_upload(data, backbone.spec).bias_set
        marks.append((time.perf_counter(), time.thread_time()))
        engine.load(bias_set, 1, sha)
        marks.append((time.perf_counter(), time.thread_time()))
        for step, (a, b) in zip(STEPS, zip(marks, marks[1:])):
            wall[step].append(b[0] - a[0])
            cpu[step].append(b[1] - a[1])
        wall["total"].append(marks[-1][0] - marks[0][0])
        cpu["total"].append(marks[-1][1] - marks[0][1])
    ms = lambda v: round(1000 * statistics.median(v), 3)  # noqa: E731
    return {"wall_ms": {s: ms(wall[s]) for s in STEPS}, "cpu_ms": {s: ms(cpu[s]) for s in STEPS}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--loads", type=int, default=1000)
    p.add_argument("--first", type=int, default=300_000, help="first task index (tasks not read yet are cold in the page cache too)")
    p.add_argument("--src", action="append", default=[], help="a source tree to measure (repeatable); none: this one")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child or not args.src:
        print(json.dumps(measure(args.store, args.first, args.loads)), flush=True)
        return
    script = Path(__file__).resolve()
    for r in range(args.rounds):
        for k, src in enumerate(args.src):
            first = args.first + (r * len(args.src) + k) * args.loads  # every round reads tasks of its own
            env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
            out = subprocess.run([sys.executable, str(script), "--child", "--store", str(args.store), "--loads", str(args.loads),
                                  "--first", str(first)], env=env, check=True, capture_output=True, text=True).stdout
            print(json.dumps({"round": r, "src": src, **json.loads(out.strip().splitlines()[-1])}), flush=True)


if __name__ == "__main__":
    main()
