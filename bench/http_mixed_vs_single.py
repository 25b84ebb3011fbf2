"""Mixed vs single: does serving 100 tasks at once cost throughput over HTTP?

One ``bitfit serve`` (packaged MiniLM, CPU) with 100 random-but-valid tasks in its store.
The same closed-loop load (concurrency 32, one short text per request, the same texts in
the same order) runs in two modes, interleaved round by round (single, mixed, mixed,
single, ...) so that other load on the machine hits both alike:

- **single**: every request is ``POST /predict/task-0000``;
- **mixed**: every request picks one of the 100 tasks uniformly at random.

Target: mixed / single throughput >= 0.97. Every answer is checked to be for the task
asked. One JSON line per phase, then a summary line::

    .venv/bin/python -m bench.http_mixed_vs_single            # the real run
    .venv/bin/python -m bench.http_mixed_vs_single --requests 300 --rounds 1   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.http_load import (
    batch_means, batch_metrics, bitfit_server, build_store, emit, minilm_spec, predict_factory, run,
    run_load, short_texts, task_check, task_name,
)

TARGET = 0.97


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="HTTP throughput, 100 mixed tasks vs one task.")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=4000, help="per phase")
    parser.add_argument("--seconds", type=float, default=90.0, help="cap per phase")
    parser.add_argument("--rounds", type=int, default=3, help="each round runs both modes")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--server-arg", action="append", default=[], help="extra `bitfit serve` flag (repeatable)")
    args = parser.parse_args(argv)

    spec = minilm_spec()
    store = build_store(spec, args.tasks)
    texts = short_texts()
    every = [task_name(i) for i in range(args.tasks)]
    modes = {"single": every[:1], "mixed": every}
    totals = {mode: [0, 0.0] for mode in modes}  # ok requests, seconds

    server = bitfit_server(store, extra=args.server_arg)
    with server:
        server.wait_ready()
        run(run_load(server.url, predict_factory(texts, every, seed=99), concurrency=args.concurrency,
                     max_requests=args.warmup, max_seconds=60))
        for r in range(args.rounds):
            order = ("single", "mixed") if r % 2 == 0 else ("mixed", "single")
            for mode in order:
                make = predict_factory(texts, modes[mode], seed=r)  # same texts in both modes
                before = batch_metrics(server.url)
                result = run(run_load(server.url, make, concurrency=args.concurrency, max_requests=args.requests,
                                      max_seconds=args.seconds, check=task_check(make)))
                totals[mode][0] += result.ok
                totals[mode][1] += result.seconds
                emit({"bench": "http_mixed_vs_single", "round": r, "mode": mode, "tasks": len(modes[mode]),
                      "concurrency": args.concurrency, **result.summary(),
                      **batch_means(before, batch_metrics(server.url))})
        rss = server.rss_mb()

    rps = {mode: ok / seconds for mode, (ok, seconds) in totals.items()}
    ratio = rps["mixed"] / rps["single"]
    emit({"bench": "http_mixed_vs_single", "summary": True, "tasks": args.tasks, "concurrency": args.concurrency,
          "rounds": args.rounds, "single_rps": round(rps["single"], 2), "mixed_rps": round(rps["mixed"], 2),
          "mixed_over_single": round(ratio, 4), "target": TARGET, "met": ratio >= TARGET,
          "server_rss_mb": rss, "cpus": os.cpu_count()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
