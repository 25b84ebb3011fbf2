"""Mixed vs single: does serving 100 tasks at once cost throughput over HTTP?

One ``bitfit serve`` (packaged MiniLM, CPU) with 100 random-but-valid tasks in its store.
The same closed-loop load (concurrency 32, one short text per request, the same texts in
the same order) runs in two modes, in phases of equal length interleaved round by round
(single, mixed, mixed, single, ...) so that other load on the machine hits both alike:

- **single**: every request is ``POST /predict/task-0000``;
- **mixed**: every request picks one of the 100 tasks uniformly at random.

Target: mixed / single throughput >= 0.97, judged on the median of the per-round ratios
(each round's two phases ran back to back); the pooled ratio is reported too. Every
answer is checked to be for the task asked. One JSON line per phase, then a summary::

    .venv/bin/python -m bench.http_mixed_vs_single            # the real run
    .venv/bin/python -m bench.http_mixed_vs_single --seconds 3 --rounds 1   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.http_load import emit, predict_factory, ratio_summary, run, run_load, short_texts, task_check
from bench.http_servers import (
    add_server_options,
    bitfit_server,
    build_store,
    histogram_means,
    histograms,
    minilm_spec,
    server_env,
    task_name,
)

TARGET = 0.97


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="HTTP throughput, 100 mixed tasks vs one task.")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each phase (short: neighbours share the outside load)")
    parser.add_argument("--requests", type=int, default=100_000, help="cap per phase")
    parser.add_argument("--rounds", type=int, default=20, help="each round runs both modes")
    parser.add_argument("--warmup", type=int, default=500)
    add_server_options(parser)
    args = parser.parse_args(argv)

    spec = minilm_spec()
    store = build_store(spec, args.tasks)
    texts = short_texts()
    every = [task_name(i) for i in range(args.tasks)]
    modes = {"single": every[:1], "mixed": every}
    totals = {mode: [0, 0.0, 0.0] for mode in modes}  # ok requests, seconds, server CPU seconds
    rounds: list[dict[str, float]] = []  # per round: mode -> throughput

    server = bitfit_server(store, extra=args.server_arg, env=server_env(args.server_env))
    with server:
        server.wait_ready()
        run(run_load(server.url, predict_factory(texts, every, seed=99), concurrency=args.concurrency,
                     max_requests=args.warmup, max_seconds=60))
        for r in range(args.rounds):
            order = ("single", "mixed") if r % 2 == 0 else ("mixed", "single")
            rounds.append({})
            for mode in order:
                make = predict_factory(texts, modes[mode], seed=r)  # same texts in both modes
                before, cpu0 = histograms(server.url), server.cpu_seconds()
                result = run(run_load(server.url, make, concurrency=args.concurrency, max_requests=args.requests,
                                      max_seconds=args.seconds, check=task_check(make)))
                cpu = server.cpu_seconds() - cpu0
                totals[mode][0] += result.ok
                totals[mode][1] += result.seconds
                totals[mode][2] += cpu
                rounds[-1][mode] = result.ok / result.seconds
                emit({"bench": "http_mixed_vs_single", "round": r, "mode": mode, "tasks": len(modes[mode]),
                      "concurrency": args.concurrency, **result.summary(),
                      "server_cpu_ms_per_request": round(1000 * cpu / max(result.ok, 1), 3),
                      **histogram_means(before, histograms(server.url))})
        rss = server.rss_mb()

    rps = {mode: ok / seconds for mode, (ok, seconds, _) in totals.items()}
    cpu_ms = {mode: 1000 * cpu / ok for mode, (ok, _, cpu) in totals.items()}
    per_round = ratio_summary([(r["mixed"], r["single"]) for r in rounds])
    emit({"bench": "http_mixed_vs_single", "summary": True, "tasks": args.tasks, "concurrency": args.concurrency,
          "rounds": args.rounds, "seconds_per_phase": args.seconds,
          "single_rps": round(rps["single"], 2), "mixed_rps": round(rps["mixed"], 2),
          "pooled_ratio": round(rps["mixed"] / rps["single"], 4), **per_round,
          "single_server_cpu_ms_per_request": round(cpu_ms["single"], 3),
          "mixed_server_cpu_ms_per_request": round(cpu_ms["mixed"], 3),
          # the throughput ratio a CPU-bound server would show without outside contention
          "cpu_ratio": round(cpu_ms["single"] / cpu_ms["mixed"], 4),
          "target": TARGET, "met": per_round["median_round_ratio"] >= TARGET,
          "server_rss_mb": rss, "cpus": os.cpu_count()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
