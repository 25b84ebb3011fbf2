"""The real server against the naive one a user would otherwise write (bench/naive_server.py).

Both serve the same 100 random-but-valid MiniLM tasks from the same store folder, on the
CPU, and get the same closed-loop load: concurrency 32, one short text per request, each
request a uniformly random task, the same sequence of (task, text) for both. Both servers
run side by side (an idle one costs nothing) and the phases interleave (bitfit, naive,
naive, bitfit, ...). Target: bitfit >= 2x the naive server's throughput; p50 and p99
latency reported for both::

    .venv/bin/python -m bench.http_vs_naive
    .venv/bin/python -m bench.http_vs_naive --requests 200 --rounds 1     # a smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.http_load import (
    LoadResult, bitfit_server, build_store, emit, minilm_spec, naive_server, predict_factory, run, run_load,
    short_texts, task_check, task_name,
)

TARGET = 2.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="HTTP throughput and latency: bitfit serve vs the naive server.")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=1500, help="per phase (the naive server is slow)")
    parser.add_argument("--seconds", type=float, default=60.0, help="cap per phase")
    parser.add_argument("--rounds", type=int, default=2, help="each round runs both servers")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--server-arg", action="append", default=[], help="extra `bitfit serve` flag (repeatable)")
    args = parser.parse_args(argv)

    spec = minilm_spec()
    store = build_store(spec, args.tasks)
    texts = short_texts()
    tasks = [task_name(i) for i in range(args.tasks)]
    servers = {"bitfit": bitfit_server(store, extra=args.server_arg), "naive": naive_server(store)}
    merged = {name: LoadResult() for name in servers}
    try:
        for server in servers.values():
            server.start()
        for server in servers.values():
            server.wait_ready()
            run(run_load(server.url, predict_factory(texts, tasks, seed=99), concurrency=args.concurrency,
                         max_requests=args.warmup, max_seconds=60))
        for r in range(args.rounds):
            order = ("bitfit", "naive") if r % 2 == 0 else ("naive", "bitfit")
            for name in order:
                make = predict_factory(texts, tasks, seed=r)  # the same (task, text) sequence for both
                result = run(run_load(servers[name].url, make, concurrency=args.concurrency,
                                      max_requests=args.requests, max_seconds=args.seconds, check=task_check(make)))
                emit({"bench": "http_vs_naive", "round": r, "server": name, "tasks": args.tasks,
                      "concurrency": args.concurrency, **result.summary()})
                total = merged[name]
                total.requests += result.requests
                total.ok += result.ok
                total.failures.update(result.failures)
                total.seconds += result.seconds
                total.client_cpu_s += result.client_cpu_s
                total.latencies_ms += result.latencies_ms
        rss = {name: server.rss_mb() for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.stop()

    summary = {name: result.summary() for name, result in merged.items()}
    ratio = summary["bitfit"]["throughput_rps"] / summary["naive"]["throughput_rps"]
    emit({"bench": "http_vs_naive", "summary": True, "tasks": args.tasks, "concurrency": args.concurrency,
          "rounds": args.rounds,
          **{f"{name}_{key}": summary[name][key] for name in merged
             for key in ("throughput_rps", "p50_ms", "p99_ms", "failed")},
          "bitfit_over_naive": round(ratio, 3), "target": TARGET, "met": ratio >= TARGET,
          **{f"{name}_rss_mb": mb for name, mb in rss.items()}, "cpus": os.cpu_count()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
